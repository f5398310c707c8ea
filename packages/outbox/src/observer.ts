/**
 * Wraps an observer so that what it throws never reaches the work it observes, nor what an async
 * observer's promise rejects with (it would be an unhandled rejection, which ends a Node process).
 */
export function observer<E>(onEvent: ((event: E) => void) | undefined): (event: E) => void {
  if (!onEvent) return () => {};
  return (event) => {
    try {
      const result = onEvent(event) as unknown;
      if (result !== null && typeof result === 'object' && typeof (result as PromiseLike<unknown>).then === 'function') {
        (result as PromiseLike<unknown>).then(undefined, () => {});
      }
    } catch {
      // An observer's failure is its own; the work goes on.
    }
  };
}

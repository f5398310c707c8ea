/**
 * Bounds a step of a run, so a hang fails the run naming the step instead of stalling the suite
 * until vitest's timeout.
 */
export async function withDeadline<T>(what: string, ms: number, step: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`hang: ${what} did not finish within ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([step, expired]);
  } finally {
    clearTimeout(timer);
  }
}

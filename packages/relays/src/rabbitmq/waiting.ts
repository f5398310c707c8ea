import { abortable } from '@tidings/outbox/internal';

export { abortable };

/**
 * A first-come, first-served lock: sends take turns publishing, so the messages of a send that
 * started earlier are all on the wire before those of a later one.
 */
export class FifoLock {
  #tail: Promise<void> = Promise.resolve();

  /** Resolves with the function that passes the turn on; rejects if `signal` aborts while waiting. */
  async acquire(signal: AbortSignal): Promise<() => void> {
    let release!: () => void;
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const previous = this.#tail;
    this.#tail = previous.then(() => mine);
    try {
      await abortable(previous, signal);
    } catch (error) {
      // Gave up waiting: the turn passes on as soon as it would have come.
      void previous.then(release);
      throw error;
    }
    return release;
  }
}

/**
 * Waits for a growing list to reach a length: a test client pushes what arrives into `list` and
 * calls `wake()` after each arrival (and when its connection ends).
 */
export class CountWaiters<T> {
  readonly #list: T[];
  readonly #ended: () => boolean;
  readonly #waiters = new Set<() => void>();

  constructor(list: T[], ended: () => boolean) {
    this.#list = list;
    this.#ended = ended;
  }

  wake(): void {
    for (const check of this.#waiters) check();
  }

  /** Resolves with the list once it holds `count` items; rejects after `timeoutMs` saying how many it holds. */
  waitFor(count: number, timeoutMs: number): Promise<T[]> {
    return new Promise((ok, fail) => {
      const check = (): void => {
        if (this.#list.length >= count) {
          this.#waiters.delete(check);
          clearTimeout(timer);
          ok(this.#list);
        }
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        fail(new Error(`only ${this.#list.length} of ${count} events arrived within ${timeoutMs} ms (ended: ${this.#ended()})`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }
}

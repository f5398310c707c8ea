/**
 * Runs tasks one at a time per ordering key and concurrently across keys, so a consumer with a
 * prefetch above one still applies the events of a key in queue order. Tasks without a key run
 * at once.
 */
export class KeyLanes {
  readonly #tails = new Map<string, Promise<void>>();

  /** Runs `task` after every earlier task of `key`; resolves (never rejects) when it has run. */
  run(key: string | null, task: () => Promise<void>): Promise<void> {
    const safe = (): Promise<void> => task().catch(() => {});
    if (key === null) return safe();
    const previous = this.#tails.get(key) ?? Promise.resolve();
    const mine = previous.then(safe);
    this.#tails.set(key, mine);
    void mine.then(() => {
      if (this.#tails.get(key) === mine) this.#tails.delete(key);
    });
    return mine;
  }
}

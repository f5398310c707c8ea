/** Exponential backoff with full jitter between `minMs` and `maxMs`. */
export class Backoff {
  readonly #minMs: number;
  readonly #maxMs: number;
  #attempt = 0;

  constructor(minMs: number, maxMs: number) {
    this.#minMs = minMs;
    this.#maxMs = Math.max(minMs, maxMs);
  }

  /** The delay before the next attempt; grows with each call until `reset()`. */
  next(): number {
    const ceiling = Math.min(this.#maxMs, this.#minMs * 2 ** Math.min(this.#attempt++, 30));
    return Math.round(this.#minMs + Math.random() * (ceiling - this.#minMs));
  }

  /** After a success: the next delay is the shortest again. */
  reset(): void {
    this.#attempt = 0;
  }
}

export { asError, pause } from '@tidings/outbox/internal';

import { comparePositions, decodePosition, type Database, type OutboxStatus, type Position, type StatusOptions } from '@tidings/outbox';
import { eventsPassed, publishedSince, type CursorMove, type LogHeads } from '@tidings/outbox/internal';

/** One point of the dashboard's charts. Rates are null at the first reading (nothing to compare with). */
export interface Sample {
  /** Epoch ms. */
  readonly at: number;
  /** Events behind, every relay together. */
  readonly lag: number;
  /** Events committed per second since the previous reading. */
  readonly published: number | null;
  /** Events the relays' cursors passed per second since the previous reading (a relay's delivery counts once per relay). */
  readonly delivered: number | null;
}

/** What one reading counted since the one before it (null at the first). */
export interface Measurement {
  readonly lag: number;
  readonly published: number | null;
  readonly delivered: number | null;
}

export const hourMs = 3_600_000;

/**
 * Takes a measurement every `intervalMs` from `start()` until `stop()`, whether or not a page is
 * open, and keeps an hour of them in a ring buffer, turned into rates per second over the time
 * between readings. Readings never overlap. A failed reading leaves a gap; the next one counts
 * from the last reading that worked.
 */
export class Sampler {
  readonly #measure: () => Promise<Measurement>;
  readonly #intervalMs: number;
  readonly #ring: Array<Sample | undefined>;
  #next = 0;
  #lastAt: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running = false;

  readonly #onError: ((error: Error) => void) | undefined;

  /** `onError` hears each failed reading (the chart shows a gap for it). */
  constructor(measure: () => Promise<Measurement>, intervalMs: number, onError?: (error: Error) => void) {
    this.#measure = measure;
    this.#intervalMs = intervalMs;
    this.#onError = onError;
    this.#ring = new Array<Sample | undefined>(Math.ceil(hourMs / intervalMs) + 1);
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule(0);
  }

  stop(): void {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The samples of the last hour, oldest first. */
  samples(now = Date.now()): Sample[] {
    const out: Sample[] = [];
    for (let i = 0; i < this.#ring.length; i++) {
      const sample = this.#ring[(this.#next + i) % this.#ring.length];
      if (sample && sample.at >= now - hourMs) out.push(sample);
    }
    return out;
  }

  /** Adds a measurement taken at `at` (epoch ms). */
  record(measurement: Measurement, at: number): void {
    const seconds = this.#lastAt === undefined ? 0 : Math.max(at - this.#lastAt, 1) / 1000;
    const rate = (count: number | null) => (count === null || seconds === 0 ? null : count / seconds);
    this.#ring[this.#next] = { at, lag: measurement.lag, published: rate(measurement.published), delivered: rate(measurement.delivered) };
    this.#next = (this.#next + 1) % this.#ring.length;
    this.#lastAt = at;
  }

  #schedule(delayMs: number): void {
    this.#timer = setTimeout(() => void this.#tick(), delayMs);
    this.#timer.unref();
  }

  async #tick(): Promise<void> {
    try {
      const measurement = await this.#measure();
      if (this.#running) this.record(measurement, Date.now());
    } catch (error) {
      // A gap in the chart; the page's live stream reports failed readings to the people watching.
      try {
        this.#onError?.(error instanceof Error ? error : new Error(String(error)));
      } catch {
        // The observer's failure is its own; sampling goes on.
      }
    }
    if (this.#running) this.#schedule(this.#intervalMs);
  }
}

/**
 * The measurement of the dashboard's charts: total lag from `status()`, events published since
 * the last reading (`publishedSince`), and events every relay's cursors passed since then
 * (`eventsPassed`, through the same filters as the lag).
 */
export function throughputMeasure(
  db: Database,
  schema: string | undefined,
  read: () => Promise<{ readonly report: OutboxStatus; readonly filters: StatusOptions['filters'] }>,
): () => Promise<Measurement> {
  let heads: LogHeads | undefined;
  let cursors: Map<string, Position> | undefined;
  return async () => {
    const [{ report, filters }, published] = await Promise.all([read(), publishedSince(db, { schema, since: heads })]);
    const now = new Map<string, Position>();
    const moves: CursorMove[] = [];
    for (const relay of report.relays) {
      for (const p of relay.partitions) {
        const key = `${p.partition}:${relay.relay}`;
        const to = decodePosition(p.cursor);
        now.set(key, to);
        const from = cursors?.get(key);
        if (from && comparePositions(from, to) < 0) moves.push({ relay: relay.relay, partition: p.partition, from, to });
      }
    }
    const delivered = cursors === undefined ? null : await eventsPassed(db, moves, { schema, filters });
    const first = heads === undefined;
    heads = published.heads;
    cursors = now;
    return { lag: report.relays.reduce((sum, r) => sum + r.lagEvents, 0), published: first ? null : published.events, delivered };
  };
}

import type { OutboxStatus, RelayStatusReport } from '@tidings/outbox';

/** One reading of `status()` for every open live stream, or why there is none this time. */
export type Reading = { readonly report: OutboxStatus; readonly at: Date } | { readonly failed: true; readonly at: Date };

/**
 * Reads status once per interval, only while at least one page listens, and hands the same
 * reading to every listener: a thousand relays or ten open tabs still cost one `status()` call
 * per interval. Readings never overlap: the next one is scheduled when the last one ended.
 */
export class LiveStatus {
  readonly #read: () => Promise<OutboxStatus>;
  readonly #intervalMs: number;
  readonly #listeners = new Set<(reading: Reading) => void>();
  #timer: NodeJS.Timeout | undefined;
  /** Events behind, summed over every relay, at each reading of the last hour. */
  readonly #history: LagSample[] = [];

  constructor(read: () => Promise<OutboxStatus>, intervalMs: number) {
    this.#read = read;
    this.#intervalMs = intervalMs;
  }

  /** Starts listening; the returned function stops. */
  subscribe(listener: (reading: Reading) => void): () => void {
    this.#listeners.add(listener);
    if (this.#listeners.size === 1) this.#schedule();
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.stop();
    };
  }

  /** The readings of the last hour, oldest first (only taken while a page was open). */
  history(): readonly LagSample[] {
    const from = Date.now() - hourMs;
    while (this.#history.length > 0 && this.#history[0]!.at < from) this.#history.shift();
    return this.#history;
  }

  /** Adds a reading taken elsewhere (a page rendered from a fresh status()). */
  record(report: OutboxStatus, at = new Date()): void {
    this.#history.push({ at: at.getTime(), lag: report.relays.reduce((sum, r) => sum + r.lagEvents, 0) });
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    this.#timer = setTimeout(() => void this.#tick(), this.#intervalMs);
  }

  async #tick(): Promise<void> {
    let reading: Reading;
    try {
      reading = { report: await this.#read(), at: new Date() };
    } catch {
      reading = { failed: true, at: new Date() };
    }
    if ('report' in reading) this.record(reading.report, reading.at);
    if (this.#listeners.size === 0) return;
    for (const listener of this.#listeners) listener(reading);
    this.#schedule();
  }
}

export interface LagSample {
  readonly at: number;
  readonly lag: number;
}

const hourMs = 3_600_000;
export const chartWidth = 600;
export const chartHeight = 120;

/**
 * The lag chart's line: SVG polyline points over the last hour (x: time, y: events behind, scaled
 * to the largest), and that largest value for the axis label. Drawn on the server only, so that
 * the page and its live updates draw it the same way.
 */
export function lagChart(samples: readonly LagSample[], now = Date.now()): { points: string; max: number } {
  const max = Math.max(1, ...samples.map((s) => s.lag));
  const points = samples
    .map((s) => `${(((s.at - (now - hourMs)) / hourMs) * chartWidth).toFixed(1)},${(chartHeight - 10 - (s.lag / max) * (chartHeight - 20)).toFixed(1)}`)
    .join(' ');
  return { points, max };
}

/** A relay's state in one word, as the pages and the live stream show it. */
export function relayState(relay: RelayStatusReport): string {
  if (relay.abandoned) return 'abandoned';
  if (relay.stalled) return 'stalled';
  if (relay.unavailableSince) return 'destination unavailable';
  return relay.lagEvents === 0 ? 'caught up' : 'relaying';
}

/** The overview's live message: per relay one short row (no partitions), plus what holds the feeds. */
export function overviewMessage(report: OutboxStatus, at: Date, history: readonly LagSample[] = []): string {
  return JSON.stringify({
    at: at.toISOString(),
    chart: lagChart(history, at.getTime()),
    feeds: { events: report.feeds.events, seconds: report.feeds.seconds, stalled: report.feeds.stalled },
    relays: report.relays.map((r) => [r.relay, relayState(r), r.lagEvents, r.lagSeconds, r.deadLetters, r.parkedKeys, r.workers.length]),
  });
}

/** One relay's live message: its totals and each partition (null when the relay is gone). */
export function relayMessage(report: OutboxStatus, at: Date, name: string): string {
  const relay = report.relays.find((r) => r.relay === name);
  return JSON.stringify({
    at: at.toISOString(),
    relay: relay && {
      state: relayState(relay),
      lagEvents: relay.lagEvents,
      lagSeconds: relay.lagSeconds,
      partitions: relay.partitions.map((p) => [p.partition, p.owner ?? '', p.lagEvents, p.lagSeconds]),
    },
  });
}

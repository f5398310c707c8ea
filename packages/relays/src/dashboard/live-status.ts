import type { OutboxStatus, RelayStatusReport } from '@tidings/outbox';
import { chartData } from './charts.ts';
import type { Sample } from './sampler.ts';

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
    if (this.#listeners.size === 0) return;
    for (const listener of this.#listeners) listener(reading);
    this.#schedule();
  }
}

/** A relay's state in one word, as the pages and the live stream show it. */
export function relayState(relay: RelayStatusReport): string {
  if (relay.abandoned) return 'abandoned';
  if (relay.stalled) return 'stalled';
  if (relay.unavailableSince) return 'destination unavailable';
  return relay.lagEvents === 0 ? 'caught up' : 'relaying';
}

/** The overview's live message: per relay one short row (no partitions), plus what holds the feeds. */
export function overviewMessage(report: OutboxStatus, at: Date, samples: readonly Sample[] = []): string {
  return JSON.stringify({
    at: at.toISOString(),
    charts: { throughput: chartData('throughput', samples, at.getTime()), lag: chartData('lag', samples, at.getTime()) },
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

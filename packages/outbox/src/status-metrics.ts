import { metrics, type BatchObservableResult, type Observable } from '@opentelemetry/api';
import type { Executor } from './executor.ts';
import { status, type OutboxStatus, type StatusOptions } from './status.ts';
import { instrumentationScope } from './telemetry.ts';

export interface StatusMetricsOptions extends Omit<StatusOptions, 'filters'> {
  /** Each relay's topic and tenant filter (see `status()`), or a function that reads them at each collection. */
  readonly filters?: StatusOptions['filters'] | (() => Promise<StatusOptions['filters']>);
  /**
   * Extra gauges read at the same time as the status, e.g. the CLI's count of disabled webhook
   * endpoints: their names and a function that returns their current value.
   */
  readonly extra?: Readonly<Record<string, { readonly description: string; read(): Promise<number> }>>;
  /** Hears a failed collection (the database is down); the gauges are left out of that scrape. */
  readonly onError?: (error: Error) => void;
}

/** Stops observing: the gauges report nothing more. */
export interface StatusMetrics {
  stop(): void;
}

/**
 * Reports `status()` as OpenTelemetry gauges on meter `tidings`, read when the metrics are
 * collected (a Prometheus scrape), by the same statements as `tidings status`: per relay and
 * partition the lag in events and seconds; per relay the dead letters, parked keys, live workers
 * and whether it is stalled or abandoned; what holds the feeds back (the watermark lag). Call it once per
 * process, after the application registered its meter provider: each collection runs the status
 * statements once.
 *
 * @example
 * metrics.setGlobalMeterProvider(new MeterProvider({ readers: [new PrometheusExporter({ port: 9464 })] }));
 * const gauges = observeStatus(db);
 * process.on('SIGTERM', () => gauges.stop());
 */
export function observeStatus(db: Executor, options: StatusMetricsOptions = {}): StatusMetrics {
  const meter = metrics.getMeterProvider().getMeter(instrumentationScope);
  const gauge = (name: string, description: string, unit?: string) => meter.createObservableGauge(name, unit ? { description, unit } : { description });
  const lagEvents = gauge('tidings.relay.lag.events', 'Committed events after the relay cursor of a partition (what the relay still has to deliver)', '{event}');
  const lagSeconds = gauge('tidings.relay.lag.seconds', 'Age of the oldest event after the relay cursor of a partition; 0 when caught up', 's');
  const deadLetters = gauge('tidings.relay.dead_letters', "Dead letters kept for the relay", '{event}');
  const parkedKeys = gauge('tidings.relay.parked_keys', 'Keys whose events wait behind a dead letter', '{key}');
  const workers = gauge('tidings.relay.workers', 'Live workers of the relay', '{worker}');
  const stalled = gauge('tidings.relay.stalled', '1 when the relay is behind and has no live worker or has not moved for stalledAfterSeconds');
  const abandoned = gauge('tidings.relay.abandoned', '1 when the relay is behind, has no live worker and has not moved for abandonedAfterSeconds: it holds retention back until dropped');
  const watermarkEvents = gauge('tidings.watermark.lag.events', 'Committed events the feeds cannot hand out yet, held back by a transaction holding a commit lock', '{event}');
  const watermarkSeconds = gauge('tidings.watermark.lag.seconds', 'Age of the oldest event held back from the feeds', 's');
  const extras = Object.entries(options.extra ?? {}).map(([name, { description, read }]) => ({ gauge: gauge(name, description), read }));
  const observables: Observable[] = [lagEvents, lagSeconds, deadLetters, parkedKeys, workers, stalled, abandoned, watermarkEvents, watermarkSeconds, ...extras.map((e) => e.gauge)];
  const { filters, extra: _extra, onError, ...statusOptions } = options;

  const observe = async (result: BatchObservableResult): Promise<void> => {
    let report: OutboxStatus;
    let extraValues: number[];
    try {
      const resolved = typeof filters === 'function' ? await filters() : filters;
      [report, extraValues] = await Promise.all([status(db, { ...statusOptions, ...(resolved ? { filters: resolved } : {}) }), Promise.all(extras.map((e) => e.read()))]);
    } catch (error) {
      onError?.(error instanceof Error ? error : new Error(String(error)));
      return;
    }
    for (const relay of report.relays) {
      const labels = { relay: relay.relay };
      for (const partition of relay.partitions) {
        const at = { relay: relay.relay, partition: partition.partition };
        result.observe(lagEvents, partition.lagEvents, at);
        result.observe(lagSeconds, partition.lagSeconds, at);
      }
      result.observe(deadLetters, relay.deadLetters, labels);
      result.observe(parkedKeys, relay.parkedKeys, labels);
      result.observe(workers, relay.workers.length, labels);
      result.observe(stalled, relay.stalled ? 1 : 0, labels);
      result.observe(abandoned, relay.abandoned ? 1 : 0, labels);
    }
    result.observe(watermarkEvents, report.feeds.events);
    result.observe(watermarkSeconds, report.feeds.seconds);
    extras.forEach((e, i) => result.observe(e.gauge, extraValues[i]!));
  };
  meter.addBatchObservableCallback(observe, observables);
  return { stop: () => meter.removeBatchObservableCallback(observe, observables) };
}

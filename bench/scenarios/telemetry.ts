import { context, metrics, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, AggregationTemporality } from '@opentelemetry/sdk-metrics';
import { BatchSpanProcessor, InMemorySpanExporter, TracerProvider } from '@opentelemetry/sdk-trace';
import { publish } from '@tidings/outbox';
import { memoryTransport, MemoryBroker } from '@tidings/relays/testing';
import pg from 'pg';
import { relayDrain } from '../relay-drain.ts';
import { benchOutbox, databaseUrl, median, medianRatio, orderPayload, seedBacklog, sideBySide, topic, transactionRate } from '../support.ts';
import type { DrainMemoryPlan } from './drain-memory.ts';
import type { WritePlan } from './write.ts';

export interface TracedDrainResult {
  /** Drain with an OpenTelemetry SDK and exporters registered over the same drain without (median of per-round ratios). */
  readonly traced_ratio: number;
  readonly plain_per_s: number;
  readonly traced_per_s: number;
}

export interface TracedWriteResult {
  /** Transactions per second publishing one event without an SDK over the same with an SDK and a request span around each (the cost of tracing, like write.overhead_ratio). */
  readonly traced_overhead_ratio: number;
  readonly plain_tx_per_s: number;
  readonly traced_tx_per_s: number;
}

/**
 * What an application that exports telemetry runs: an async-hooks context manager, a tracer
 * provider whose batch processor exports every span, a meter provider read every second. The
 * exporters keep what they get in memory and are emptied after each run.
 */
function registerSdk(): () => Promise<void> {
  const spans = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({ spanProcessors: [new BatchSpanProcessor({ exporter: spans })] });
  const meterProvider = new MeterProvider({
    readers: [new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 1_000 })],
  });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);
  return async () => {
    await tracerProvider.forceFlush();
    trace.disable();
    context.disable();
    metrics.disable();
    await Promise.all([tracerProvider.shutdown(), meterProvider.shutdown()]);
  };
}

async function withSdk<T>(run: () => Promise<T>): Promise<T> {
  const unregister = registerSdk();
  try {
    return await run();
  } finally {
    await unregister();
  }
}

/**
 * `drain.memory.traced_ratio`: the drain of `drain.memory` (every event carries a traceparent, so
 * the send spans link to each), with an SDK registered against the same drain without one, side
 * by side in each round.
 */
export async function tracedDrain(plan: DrainMemoryPlan): Promise<TracedDrainResult> {
  const outbox = await benchOutbox('drain_traced');
  try {
    await seedBacklog(outbox, plan.events);
    const drain = (name: string) =>
      relayDrain(outbox, { name, transport: memoryTransport({ broker: new MemoryBroker({ retain: 1 }) }), events: plan.events, batchSize: plan.batchSize });
    const samples = await sideBySide('drain.memory traced', plan.rounds, {
      plain: (round) => drain(`plain-${round}`),
      traced: (round) => withSdk(() => drain(`traced-${round}`)),
    });
    return { traced_ratio: medianRatio(samples.traced, samples.plain), plain_per_s: median(samples.plain), traced_per_s: median(samples.traced) };
  } finally {
    await outbox.close();
  }
}

/**
 * `write.traced_overhead_ratio`: the business transaction of `write` with its event, without an
 * SDK, against the same with an SDK registered and each transaction inside a request span, so
 * publish() writes the span's traceparent into the event.
 */
export async function tracedWrite(plan: WritePlan): Promise<TracedWriteResult> {
  const outbox = await benchOutbox('write_traced');
  const pool = new pg.Pool({ connectionString: databaseUrl, max: plan.concurrency });
  try {
    const write = (round: number, traced: boolean) =>
      transactionRate(pool, plan.transactions, plan.concurrency, async (client, i) => {
        const order = orderPayload(round * plan.transactions + i);
        const inTransaction = () => publish(client, { topic, key: order.customer as string, payload: order }, { schema: outbox.schema });
        if (!traced) return void (await inTransaction());
        await trace.getTracer('bench').startActiveSpan('POST /orders', async (span) => {
          await inTransaction();
          span.end();
        });
      });
    const samples = await sideBySide('write traced', plan.rounds, {
      plain: (round) => write(round, false),
      traced: (round) => withSdk(() => write(round, true)),
    });
    return { traced_overhead_ratio: medianRatio(samples.plain, samples.traced), plain_tx_per_s: median(samples.plain), traced_tx_per_s: median(samples.traced) };
  } finally {
    await pool.end();
    await outbox.close();
  }
}

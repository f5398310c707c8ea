import { context, metrics, trace, type SpanContext } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { AggregationTemporality, MeterProvider, MetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';

/** A metric reader that collects when asked, for tests that read the counters after a run. */
class OnDemandReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

export interface TestTelemetry {
  readonly spans: InMemorySpanExporter;
  /** Every metric recorded so far (cumulative). */
  collect(): Promise<ResourceMetrics>;
  /** Unregisters the SDK: the OpenTelemetry API is global to the process, and other files share it. */
  close(): Promise<void>;
}

/** Registers an OpenTelemetry SDK for the process: an async-hooks context manager, a tracer provider exporting to memory, a meter provider read on demand. */
export function registerTelemetry(): TestTelemetry {
  trace.disable();
  context.disable();
  metrics.disable();
  const spans = new InMemorySpanExporter();
  const tracerProvider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] });
  const reader = new OnDemandReader({ aggregationTemporalitySelector: () => AggregationTemporality.CUMULATIVE });
  const meterProvider = new MeterProvider({ readers: [reader] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(tracerProvider);
  metrics.setGlobalMeterProvider(meterProvider);
  return {
    spans,
    async collect() {
      const { resourceMetrics, errors } = await reader.collect();
      if (errors.length > 0) throw errors[0];
      return resourceMetrics;
    },
    async close() {
      trace.disable();
      context.disable();
      metrics.disable();
      await tracerProvider.shutdown();
      await meterProvider.shutdown();
    },
  };
}

type Where = Readonly<Record<string, string | number>>;

/** The data points of metric `name` whose attributes include `where`. */
function points(collected: ResourceMetrics, name: string, where: Where): Array<{ attributes: Record<string, unknown>; value: unknown }> {
  return collected.scopeMetrics
    .flatMap((scope) => scope.metrics)
    .filter((metric) => metric.descriptor.name === name)
    .flatMap((metric) => metric.dataPoints as Array<{ attributes: Record<string, unknown>; value: unknown }>)
    .filter((point) => Object.entries(where).every(([k, v]) => point.attributes[k] === v));
}

/** The sum of a counter's data points whose attributes include `where`. */
export function counterValue(collected: ResourceMetrics, name: string, where: Where = {}): number {
  return points(collected, name, where).reduce((sum, point) => sum + (point.value as number), 0);
}

/** How many values a histogram recorded, over the data points whose attributes include `where`. */
export function histogramCount(collected: ResourceMetrics, name: string, where: Where = {}): number {
  return points(collected, name, where).reduce((sum, point) => sum + (point.value as { count: number }).count, 0);
}

/** A gauge's data points (attributes and value) whose attributes include `where`. */
export function gaugeValues(collected: ResourceMetrics, name: string, where: Where = {}): Array<{ attributes: Record<string, unknown>; value: number }> {
  return points(collected, name, where) as Array<{ attributes: Record<string, unknown>; value: number }>;
}

export const sameSpan = (a: SpanContext | undefined, b: SpanContext): boolean => a?.traceId === b.traceId && a.spanId === b.spanId;

export type { ReadableSpan };

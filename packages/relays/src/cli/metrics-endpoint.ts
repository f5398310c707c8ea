import { metrics } from '@opentelemetry/api';
import { observeStatus, type Database } from '@tidings/outbox';
import type { Logger } from 'pino';
import { importPackage } from '../shared/optional-package.ts';
import { allEndpoints, webhookFilters } from '../webhook/status-filters.ts';
import { UsageError } from './usage-error.ts';

export interface MetricsEndpoint {
  readonly url: string;
  stop(): Promise<void>;
}

/**
 * Serves meter `tidings` in Prometheus text format at `http://host:port/metrics`: the counters and
 * histograms the relays record as they work, and the gauges of `observeStatus()`, read from the
 * database at each scrape (with the webhook endpoints' filters, and how many endpoints are
 * disabled). The exporter is OpenTelemetry's own; the command registers the process's meter
 * provider, so a config file that registered one first is told so.
 */
export async function serveMetrics(options: { port: number; host: string | undefined; db: Database; schema: string | undefined; log: Logger }): Promise<MetricsEndpoint> {
  const { port, db, schema, log } = options;
  const host = options.host ?? 'localhost';
  const feature = 'the metrics endpoint of tidings relay (--metrics-port, metricsPort)';
  const both = ['@opentelemetry/exporter-prometheus', '@opentelemetry/sdk-metrics'] as const;
  const { PrometheusExporter } = await importPackage<typeof import('@opentelemetry/exporter-prometheus')>(both[0], feature, both);
  const { MeterProvider } = await importPackage<typeof import('@opentelemetry/sdk-metrics')>(both[1], feature, both);
  const exporter = new PrometheusExporter({ port, host, preventServerStart: true });
  try {
    await exporter.startServer();
  } catch (error) {
    throw new UsageError(`the metrics endpoint cannot listen on ${host}:${port} (${(error as Error).message}); choose another --metrics-port or metricsPort`);
  }
  const provider = new MeterProvider({ readers: [exporter] });
  if (!metrics.setGlobalMeterProvider(provider)) {
    log.warn('a meter provider was registered before tidings relay started; the metrics endpoint serves only what tidings records through its own');
  }
  const gauges = observeStatus(db, {
    schema,
    filters: () => webhookFilters(db, schema),
    extra: {
      'tidings.webhook.endpoints.disabled': { description: 'Webhook endpoints disabled (410 Gone, failing too long, or by hand)', read: () => disabledEndpoints(db, schema) },
    },
    onError: (error) => log.warn({ err: error.message }, 'metrics: status could not be read for this scrape'),
  });
  return {
    url: `http://${host}:${port}/metrics`,
    async stop() {
      gauges.stop();
      await provider.shutdown();
    },
  };
}

async function disabledEndpoints(db: Database, schema: string | undefined): Promise<number> {
  return (await allEndpoints(db, schema)).filter((endpoint) => !endpoint.enabled).length;
}

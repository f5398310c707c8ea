import { SchemaMissingError, type Database, type StatusOptions } from '@tidings/outbox';
import type { WebhookEndpoint } from './endpoint.ts';

/**
 * Each webhook endpoint's relay delivers only its topics and tenant: its lag counts only those.
 * For `status()`'s `filters`, as `tidings status`, the metrics endpoint and the dashboard pass them.
 */
export async function webhookFilters(db: Database, schema: string | undefined): Promise<NonNullable<StatusOptions['filters']>> {
  const { webhookRelayName } = await import('./endpoint.ts');
  const filters: Record<string, { topics: readonly string[] | null; tenant: string | null }> = {};
  for (const endpoint of await allEndpoints(db, schema)) filters[webhookRelayName(endpoint.id)] = { topics: endpoint.topics, tenant: endpoint.tenant };
  return filters;
}

/** Every registered webhook endpoint, page by page; none when the webhook registry was never migrated. */
export async function allEndpoints(db: Database, schema: string | undefined): Promise<WebhookEndpoint[]> {
  const { webhookEndpoints } = await import('./endpoints.ts');
  const endpoints = webhookEndpoints({ schema });
  const all: WebhookEndpoint[] = [];
  try {
    for (let page = await endpoints.list(db, { limit: 1000 }); page.length > 0; page = await endpoints.list(db, { limit: 1000, after: page.at(-1)!.id })) {
      all.push(...page);
    }
  } catch (error) {
    if (!(error instanceof SchemaMissingError)) throw error; // no webhook registry: no webhook relays
  }
  return all;
}

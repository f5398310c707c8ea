import { ClusterChangedError, type Database } from '@tidings/outbox';
import { migrateWebhooks, startWebhookDispatcher, webhookEndpoints, type WebhookDispatcher, type WebhookDispatcherEvent, type WebhookEndpoints } from '@tidings/relays/webhook';
import { loopbackOnly, waitUntil } from '@tidings/relays/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { countingStatements } from '../../../test/support/counting-database.ts';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';
import { explainingStatements, jitAboveCost } from '../../../test/support/explaining-database.ts';
import { testKeyring } from '../../../test/support/secret-key.ts';

/** Text only the cluster check has (see `inspectCluster`). */
const clusterCheckMark = 'AS recorded_system';

describe('a webhook dispatcher starting many endpoints', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function registryWith(label: string, count: number): Promise<{ outbox: TestOutbox; endpoints: WebhookEndpoints }> {
    const outbox = await freshOutbox(label, { partitions: 4 });
    cleanups.push(() => outbox.close());
    await migrateWebhooks(outbox.db, { schema: outbox.schema });
    const endpoints = webhookEndpoints({ schema: outbox.schema, addressPolicy: loopbackOnly, keyring: testKeyring });
    for (let i = 0; i < count; i++) await endpoints.create(outbox.db, { url: `http://127.0.0.1:9/hooks/${i}`, topics: ['orders.*'] });
    return { outbox, endpoints };
  }

  async function dispatch(outbox: TestOutbox, database: Database, onEvent?: (event: WebhookDispatcherEvent) => void): Promise<WebhookDispatcher> {
    const dispatcher = await startWebhookDispatcher({
      database,
      schema: outbox.schema,
      addressPolicy: loopbackOnly,
      keyring: testKeyring,
      refreshIntervalMs: 600_000,
      relay: { pollIntervalMs: 60_000 },
      onEvent,
    });
    cleanups.push(() => dispatcher.stop());
    return dispatcher;
  }

  it('checks the cluster once for all the endpoints it starts together, and once more for an endpoint added later', async () => {
    const count = 40;
    const { outbox, endpoints } = await registryWith('start_check', count);
    const checks = countingStatements(outbox.db, (text) => text.includes(clusterCheckMark));
    const dispatcher = await dispatch(outbox, checks.db);
    expect(dispatcher.endpoints).toHaveLength(count);
    expect(checks.statements, 'cluster checks for 40 endpoints started together').toBe(1);

    await endpoints.create(outbox.db, { url: 'http://127.0.0.1:9/hooks/later', topics: ['orders.*'] });
    await dispatcher.refresh();
    expect(dispatcher.endpoints).toHaveLength(count + 1);
    expect(checks.statements, 'cluster checks after one more endpoint started').toBe(2);
  });

  it('starts none of its endpoints on a cluster that changed, each refused at each pass by one shared check', async () => {
    const count = 10;
    const { outbox } = await registryWith('start_changed', count);
    // What a dump restored elsewhere looks like: the settings row names another events table.
    await outbox.db.query(`UPDATE "${outbox.schema}".settings SET events_oid = 1`);
    const checks = countingStatements(outbox.db, (text) => text.includes(clusterCheckMark));
    const refusals: Error[] = [];
    const refused = new Set<string>();
    const dispatcher = await dispatch(outbox, checks.db, (event) => {
      if (event.type !== 'error' || event.endpointId === undefined) return;
      refusals.push(event.error);
      refused.add(event.endpointId);
    });
    await waitUntil(`${count} endpoints refused`, async () => refused.size === count, 10_000);
    // Every pass over the registry tries the endpoints again (a new listening connection also
    // starts one); the passes in flight end before this one does.
    await dispatcher.refresh();
    expect(dispatcher.endpoints).toEqual([]);
    expect(refusals.filter((error) => !(error instanceof ClusterChangedError)), 'errors other than ClusterChangedError').toEqual([]);
    expect(checks.statements).toBeGreaterThan(0);
    expect(refusals.length, `refusals after ${checks.statements} cluster checks`).toBe(count * checks.statements);
  });

  it('creates an endpoint with statements each costed below jit_above_cost', async () => {
    const { outbox, endpoints } = await registryWith('create_cost', 200);
    const explaining = explainingStatements(outbox.db);
    await endpoints.create(explaining.db, { url: 'http://127.0.0.1:9/hooks/costed', topics: ['orders.*'] });
    const registration = explaining.statements.filter((s) => s.text.includes('relay_partitions (relay, partition, cursor_seq)'));
    expect(registration, 'the statement that places the endpoint relay cursors').toHaveLength(1);
    const limit = await jitAboveCost(outbox.db);
    expect(explaining.statements.filter((s) => s.cost >= limit), `statements costed at or above jit_above_cost ${limit}`).toEqual([]);
  });
});

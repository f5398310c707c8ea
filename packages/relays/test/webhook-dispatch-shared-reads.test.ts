import { migrateInbox } from '@tidings/inbox';
import { pgDatabase, publish, type Database, type OutboxEvent } from '@tidings/outbox';
import { migrateWebhooks, startWebhookDispatcher, webhookEndpoints, type WebhookDispatcher, type WebhookEndpoints } from '@tidings/relays/webhook';
import { createFaultProxy, loopbackOnly } from '@tidings/relays/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { judge, waitUntil } from '../../../test/support/check.ts';
import { countingStatements } from '../../../test/support/counting-database.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { testKeyring } from '../../../test/support/secret-key.ts';
import { startInboxReceiver, type InboxReceiver } from '../../../test/support/webhook-inbox-receiver.ts';

/** Text only the log read of a partition has (see `partitionReadStatement`). */
const readMark = 'max(seq) AS head';

describe('a webhook dispatcher reading the log once for all its endpoints', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  async function outboxWithRegistry(label: string, partitions: number): Promise<{ outbox: TestOutbox; endpoints: WebhookEndpoints }> {
    const outbox = await freshOutbox(label, { partitions });
    cleanups.push(() => outbox.close());
    await migrateWebhooks(outbox.db, { schema: outbox.schema });
    await migrateInbox(outbox.db, { schema: outbox.schema });
    return { outbox, endpoints: webhookEndpoints({ schema: outbox.schema, addressPolicy: loopbackOnly, keyring: testKeyring }) };
  }

  async function dispatch(
    outbox: TestOutbox,
    database: Database,
    options: { pollIntervalMs: number; sendTimeoutMs?: number; heartbeatIntervalMs?: number; leaseTtlMs?: number },
  ): Promise<WebhookDispatcher> {
    const dispatcher = await startWebhookDispatcher({
      database,
      schema: outbox.schema,
      addressPolicy: loopbackOnly,
      keyring: testKeyring,
      retry: { retries: 1_000, minDelayMs: 50, maxDelayMs: 400, factor: 2 },
      sendTimeoutMs: options.sendTimeoutMs ?? 5_000,
      refreshIntervalMs: 60_000,
      relay: { pollIntervalMs: options.pollIntervalMs, heartbeatIntervalMs: options.heartbeatIntervalMs, leaseTtlMs: options.leaseTtlMs },
    });
    cleanups.push(() => dispatcher.stop());
    return dispatcher;
  }

  it('keeps delivering every event, in order per key, to healthy endpoints while one stalls and one fails, and brings both up to date from far behind', async () => {
    // One partition and more events than the shared tail keeps (1 000), so the endpoints that
    // were held up fall behind it and catch up by reading on their own.
    const { outbox, endpoints } = await outboxWithRegistry('shared_isolation', 1);
    const receivers: InboxReceiver[] = [];
    for (const name of ['healthy-a', 'healthy-b', 'stalled', 'failing']) {
      const receiver = await startInboxReceiver(outbox, name, []);
      cleanups.push(() => receiver.close());
      receiver.secrets = [(await endpoints.create(outbox.db, { url: receiver.server.url, topics: ['orders.*'], description: name })).secret];
      receivers.push(receiver);
    }
    const [healthyA, healthyB, stalled, failing] = receivers as [InboxReceiver, InboxReceiver, InboxReceiver, InboxReceiver];
    await stalled.server.takeDown('slow'); // holds every request without an answer
    await failing.server.takeDown('error'); // answers 500
    await dispatch(outbox, outbox.db, { pollIntervalMs: 200, sendTimeoutMs: 120_000 });

    const committed: OutboxEvent[] = [];
    for (let t = 0; t < 11; t++) {
      committed.push(
        ...(await inTransaction(outbox.pool, (client) =>
          publish(client, Array.from({ length: 100 }, (_, i) => ({ topic: 'orders.created', key: `order-${(t * 100 + i) % 23}`, payload: { t, i } })), { schema: outbox.schema }),
        )),
      );
    }
    for (const healthy of [healthyA, healthyB]) {
      await waitUntil(`${healthy.name} applied all ${committed.length} events`, async () => healthy.appliedAt.size === committed.length, 180_000);
    }
    expect({ stalled: stalled.appliedAt.size, failing: failing.appliedAt.size }, 'the held-up endpoints delivered nothing meanwhile').toEqual({ stalled: 0, failing: 0 });
    expect(failing.server.isDown && stalled.server.isDown).toBe(true);

    await stalled.server.recover();
    await failing.server.recover();
    for (const receiver of [stalled, failing]) {
      await waitUntil(`${receiver.name} caught up`, async () => receiver.appliedAt.size === committed.length, 180_000);
    }
    for (const receiver of receivers) {
      const report = judge(committed, await receiver.applied());
      expect({ receiver: receiver.name, ...report }).toEqual({ receiver: receiver.name, lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
    }
  }, 400_000);

  it("delivers every event in order per key to every endpoint while the dispatcher's database connections are cut again and again and one endpoint fails at random", async () => {
    const { outbox, endpoints } = await outboxWithRegistry('shared_cuts', 4);
    const target = new URL(services.postgres);
    const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || 5432) } });
    cleanups.push(() => proxy.close());
    const url = new URL(services.postgres);
    url.host = `${proxy.host}:${proxy.port}`;
    const database = pgDatabase(url.toString(), { max: 4, queryTimeoutMs: 2_000, listenHeartbeatMs: 500 });
    cleanups.push(() => database.close());
    let roll = 7;
    const flakyAnswer = () => ((roll = (roll * 48_271) % 2_147_483_647) % 4 === 0 ? 'fail-before' : undefined);
    const receivers: InboxReceiver[] = [];
    for (const name of ['steady', 'also-steady', 'flaky']) {
      const receiver = await startInboxReceiver(outbox, name, [], name === 'flaky' ? flakyAnswer : undefined);
      cleanups.push(() => receiver.close());
      receiver.secrets = [(await endpoints.create(outbox.db, { url: receiver.server.url, topics: ['orders.*'], description: name })).secret];
      receivers.push(receiver);
    }
    await dispatch(outbox, database, { pollIntervalMs: 200 });

    const committed: OutboxEvent[] = [];
    for (let t = 0; t < 24; t++) {
      committed.push(
        ...(await inTransaction(outbox.pool, (client) =>
          publish(client, Array.from({ length: 10 }, (_, i) => ({ topic: 'orders.created', key: `order-${(t * 10 + i) % 13}`, payload: { t, i } })), { schema: outbox.schema }),
        )),
      );
      // Every fourth transaction, the dispatcher loses every connection: reads, cursor writes, LISTEN.
      if (t % 4 === 3) proxy.cutAll();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    for (const receiver of receivers) {
      await waitUntil(`${receiver.name} applied all ${committed.length} events`, async () => receiver.appliedAt.size === committed.length, 120_000);
    }
    for (const receiver of receivers) {
      const report = judge(committed, await receiver.applied());
      expect({ receiver: receiver.name, ...report }).toEqual({ receiver: receiver.name, lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
    }
    expect(proxy.acceptedConnections, 'the dispatcher opened new connections after the cuts').toBeGreaterThan(4);
    expect(receivers[2]!.stats.failedBefore, 'requests the flaky endpoint answered 500').toBeGreaterThan(0);
  }, 400_000);

  it('sends as many statements with 50 idle endpoints as with 5: a read per partition and poll interval, the heartbeats of all together', async () => {
    const partitions = 4;
    const pollIntervalMs = 100;
    const heartbeatIntervalMs = 250;
    const windowMs = 1_500;
    const measured: Record<number, { reads: number; statements: number; elapsedMs: number }> = {};
    for (const count of [5, 50]) {
      const { outbox, endpoints } = await outboxWithRegistry(`shared_idle_${count}`, partitions);
      for (let i = 0; i < count; i++) await endpoints.create(outbox.db, { url: `http://127.0.0.1:9/hooks/${i}`, topics: ['orders.*'] });
      const every = countingStatements(outbox.db);
      const reads = countingStatements(every.db, (text) => text.includes(readMark));
      const dispatcher = await dispatch(outbox, reads.db, { pollIntervalMs, heartbeatIntervalMs, leaseTtlMs: 5_000 });
      await waitUntil(`${count} endpoints hold their partitions`, async () => {
        const { rows } = await outbox.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${outbox.schema}".relay_partitions WHERE owner IS NOT NULL`);
        return dispatcher.endpoints.length === count && rows[0]!.n === count * partitions;
      }, 60_000);
      // Every runner has read once since it started: from here on, nothing is announced.
      await new Promise((resolve) => setTimeout(resolve, 3 * pollIntervalMs));
      reads.statements = 0;
      every.statements = 0;
      const started = performance.now();
      await new Promise((resolve) => setTimeout(resolve, windowMs));
      // A loaded machine wakes this timer late: the window is what actually elapsed.
      measured[count] = { reads: reads.statements, statements: every.statements, elapsedMs: performance.now() - started };
    }
    // A timer fires at most once per interval. Reads: per partition, at most windowMs /
    // pollIntervalMs, and one in flight at each end of the window. Heartbeats: one statement per
    // kind (heartbeat, lease renewal, dead letters to retry) per 100 ms gathering window. Relays
    // on their own would read count × partitions × 15 times, and send 3 × count × 6 heartbeat statements.
    console.info(`idle endpoints in ${windowMs} ms: ${JSON.stringify(measured)}`);
    for (const count of [5, 50]) {
      const { reads: readCount, statements, elapsedMs } = measured[count]!;
      const readBound = partitions * (Math.ceil(elapsedMs / pollIntervalMs) + 2);
      const bound = readBound + 3 * (Math.ceil(elapsedMs / 100) + 2);
      expect(readCount, `reads by ${count} idle endpoints in ${Math.round(elapsedMs)} ms`).toBeLessThanOrEqual(readBound);
      expect(statements, `statements of ${count} idle endpoints in ${Math.round(elapsedMs)} ms`).toBeLessThanOrEqual(bound);
    }
    expect(measured[50]!.reads).toBeGreaterThan(0);
    expect(measured[50]!.statements).toBeGreaterThan(measured[50]!.reads);
  }, 400_000);
});

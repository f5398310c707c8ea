import { migrateInbox } from '@tidings/inbox';
import { listDeadLetters, publish, retryDeadLetters, type OutboxEvent } from '@tidings/outbox';
import {
  migrateWebhooks,
  startWebhookDispatcher,
  webhookEndpoints,
  webhookRelayName,
  type WebhookDispatcher,
  type WebhookDispatcherEvent,
  type WebhookDispatcherOptions,
  type WebhookEndpoints,
} from '@tidings/relays/webhook';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loopbackOnly, startWebhookServer, type TestWebhookServer, type WebhookServerHandler } from '@tidings/relays/testing';
import { judge, waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { startInboxReceiver, type InboxReceiver } from '../../../test/support/webhook-inbox-receiver.ts';
import { testKeyring } from '../../../test/support/secret-key.ts';

describe('webhook dispatcher', () => {
  let outbox: TestOutbox;
  let endpoints: WebhookEndpoints;
  const cleanups: Array<() => Promise<void>> = [];

  beforeAll(async () => {
    outbox = await freshOutbox('webhook_dispatch');
    await migrateWebhooks(outbox.db, { schema: outbox.schema });
    await migrateInbox(outbox.db, { schema: outbox.schema });
    endpoints = webhookEndpoints({ schema: outbox.schema, addressPolicy: loopbackOnly, keyring: testKeyring });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    // Each test starts from an empty registry; the next dispatcher drops the removed relays' state.
    for (const endpoint of await endpoints.list(outbox.db, { limit: 1000 })) await endpoints.remove(outbox.db, endpoint.id);
  });
  afterAll(() => outbox.close());

  async function dispatcher(options: Partial<WebhookDispatcherOptions> = {}): Promise<{ dispatcher: WebhookDispatcher; events: WebhookDispatcherEvent[] }> {
    const events: WebhookDispatcherEvent[] = [];
    const started = await startWebhookDispatcher({
      database: outbox.db,
      schema: outbox.schema,
      addressPolicy: loopbackOnly,
      keyring: testKeyring,
      retry: { retries: 1_000, minDelayMs: 50, maxDelayMs: 400, factor: 2 },
      sendTimeoutMs: 2_000,
      refreshIntervalMs: 500,
      relay: { pollIntervalMs: 200 },
      onEvent: (event) => events.push(event),
      ...options,
    });
    cleanups.push(() => started.stop());
    return { dispatcher: started, events };
  }
  async function receiver(name: string, secrets: string[], misbehave?: Parameters<typeof startInboxReceiver>[3]): Promise<InboxReceiver> {
    const started = await startInboxReceiver(outbox, name, secrets, misbehave);
    cleanups.push(() => started.close());
    return started;
  }
  async function publishOrders(count: number, options: { keys?: number; tenant?: string; topic?: string } = {}): Promise<Array<OutboxEvent & { committedAt: number }>> {
    const events = await inTransaction(outbox.pool, (client) =>
      publish(
        client,
        Array.from({ length: count }, (_, i) => ({ topic: options.topic ?? 'orders.created', key: `order-${i % (options.keys ?? 10)}`, payload: { i }, tenant: options.tenant })),
        { schema: outbox.schema },
      ),
    );
    const committedAt = Date.now();
    return events.map((event) => ({ ...event, committedAt }));
  }
  async function server(handler: WebhookServerHandler): Promise<TestWebhookServer> {
    const started = await startWebhookServer(handler);
    cleanups.push(() => started.close());
    return started;
  }
  function percentile(values: number[], p: number): number {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
  }

  it('delivers every event exactly once to three endpoints, one down for a while and one failing at random, without delaying the healthy one', async () => {
    const random = mulberry32(20250131);
    const healthy = await receiver('healthy', []);
    const down = await receiver('down', []);
    const flaky = await receiver('flaky', [], () => {
      const roll = random();
      return roll < 0.25 ? 'fail-before' : roll < 0.4 ? 'fail-after-commit' : undefined;
    });
    for (const target of [healthy, down, flaky]) {
      target.secrets = [(await endpoints.create(outbox.db, { url: target.server.url, topics: ['orders.*'], description: target.name })).secret];
    }
    await down.server.takeDown('refuse');
    await dispatcher();

    // Phase 1: 300 events in 30 transactions over about 3 s, while "down" refuses connections.
    const phase1: Array<OutboxEvent & { committedAt: number }> = [];
    for (let t = 0; t < 30; t++) {
      phase1.push(...(await publishOrders(10)));
      await new Promise((r) => setTimeout(r, 100));
    }
    await waitUntil('the healthy endpoint applied every event', async () => healthy.appliedAt.size === phase1.length, 30_000);
    // Isolation without a clock: "down" never recovers until the healthy endpoint has everything, so
    // anything that made the healthy one wait for it would hang here. Latency is the bench's business.
    expect(down.server.isDown, 'the healthy endpoint got everything while the other one was still down').toBe(true);
    expect(down.appliedAt.size).toBe(0);
    const whileFailing = phase1.map((e) => healthy.appliedAt.get(e.eventId)! - e.committedAt);

    // Phase 2: the same load with every endpoint up, for comparison.
    await down.server.recover();
    await waitUntil('the recovered endpoint caught up', async () => down.appliedAt.size === phase1.length, 60_000);
    const phase2: Array<OutboxEvent & { committedAt: number }> = [];
    for (let t = 0; t < 30; t++) {
      phase2.push(...(await publishOrders(10)));
      await new Promise((r) => setTimeout(r, 100));
    }
    const all = [...phase1, ...phase2];
    for (const target of [healthy, down, flaky]) {
      await waitUntil(`${target.name} applied every event`, async () => target.appliedAt.size === all.length, 60_000);
    }
    const allHealthy = phase2.map((e) => healthy.appliedAt.get(e.eventId)! - e.committedAt);
    const summary = (values: number[]) => `p50 ${percentile(values, 50)} ms, p95 ${percentile(values, 95)} ms, max ${Math.max(...values)} ms`;
    console.info(`healthy endpoint latency, commit to applied: while the others fail: ${summary(whileFailing)}; all healthy: ${summary(allHealthy)}`);
    console.info(`flaky endpoint: ${flaky.stats.failedBefore} answered 500 before applying, ${flaky.stats.failedAfterCommit} after committing, ${flaky.stats.duplicates} redeliveries skipped by the inbox`);

    for (const target of [healthy, down, flaky]) {
      const applied = await target.applied();
      const report = judge(all, applied);
      expect({ receiver: target.name, ...report }).toEqual({ receiver: target.name, lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
    }
    expect(flaky.stats.failedAfterCommit).toBeGreaterThan(0);
    // An event whose 500 came after its effects committed is sent again (at least once): the last
    // such answer may still be waiting out its retry delay when every event has been applied.
    await waitUntil('every event answered 500 after its commit came again', async () => flaky.stats.duplicates >= flaky.stats.failedAfterCommit, 30_000);
    expect(flaky.stats.duplicates).toBeGreaterThanOrEqual(flaky.stats.failedAfterCommit);
  });

  it('disables an endpoint that answers 410 Gone, keeps its event, and delivers it once the endpoint is re-enabled', async () => {
    const target = await receiver('gone', []);
    let goneAnswers = 0;
    const gone = await server((_req, res) => {
      goneAnswers++;
      res.writeHead(410).end();
    });
    const { id, secret } = await endpoints.create(outbox.db, { url: gone.url, topics: ['gone.*'] });
    target.secrets = [secret];
    const { dispatcher: running, events } = await dispatcher();
    const [event] = await publishOrders(1, { topic: 'gone.created' });
    await waitUntil('the endpoint is disabled', async () => (await endpoints.get(outbox.db, id))!.enabled === false, 10_000);
    const disabled = (await endpoints.get(outbox.db, id))!;
    expect(disabled.disabled).toMatchObject({ reason: 'gone' });
    expect(disabled.disabled!.detail).toContain('410 Gone');
    await waitUntil('its relay stopped', async () => !running.endpoints.includes(id), 10_000);
    expect(events).toContainEqual({ type: 'endpoint-disabled', endpointId: id, reason: 'gone', detail: expect.stringContaining('410') });
    expect(goneAnswers).toBe(1);
    expect(await listDeadLetters(outbox.db, { schema: outbox.schema, relay: webhookRelayName(id) })).toEqual([]);

    // The receiver comes back at a new address; re-enabling resumes where delivery stopped.
    await endpoints.update(outbox.db, id, { url: target.server.url });
    await endpoints.enable(outbox.db, id);
    await waitUntil('the held event arrived', async () => target.appliedAt.has(event!.eventId), 10_000);
  });

  it('waits as long as Retry-After asks before trying again', async () => {
    const attempts: number[] = [];
    const throttling = await server((_req, res) => {
      attempts.push(Date.now());
      if (attempts.length === 1) res.writeHead(503, { 'retry-after': '2' }).end();
      else if (attempts.length === 2) res.writeHead(429, { 'retry-after': new Date(Date.now() + 2_000).toUTCString() }).end();
      else res.writeHead(204).end();
    });
    await endpoints.create(outbox.db, { url: throttling.url, topics: ['throttled.*'] });
    await dispatcher();
    await publishOrders(1, { topic: 'throttled.created' });
    await waitUntil('the third attempt', async () => attempts.length >= 3, 15_000);
    const gaps = [attempts[1]! - attempts[0]!, attempts[2]! - attempts[1]!];
    console.info(`gaps after Retry-After 2 s (seconds form, then HTTP date): ${gaps.join(' ms, ')} ms (retry policy alone: 50-400 ms)`);
    expect(gaps[0]).toBeGreaterThanOrEqual(1_950);
    expect(gaps[1]).toBeGreaterThanOrEqual(900); // an HTTP date has whole-second precision
  });

  it('disables an endpoint that keeps failing for longer than disableAfterMs, recording the last error', async () => {
    const failing = await server((_req, res) => res.writeHead(500).end('database unavailable'));
    const { id } = await endpoints.create(outbox.db, { url: failing.url, topics: ['failing.*'] });
    const { dispatcher: running } = await dispatcher({ disableAfterMs: 1_500 });
    await publishOrders(1, { topic: 'failing.created' });
    await waitUntil('the endpoint is disabled', async () => (await endpoints.get(outbox.db, id))!.enabled === false, 15_000);
    const endpoint = (await endpoints.get(outbox.db, id))!;
    expect(endpoint.disabled).toMatchObject({ reason: 'failing' });
    expect(endpoint.disabled!.detail).toMatch(/^no delivery succeeded since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ; last error: webhook \w+ to http:\/\/127\.0\.0\.1:\d+\/hooks: the receiver answered 500: database unavailable$/);
    expect(endpoint.lastError!.message).toContain('database unavailable');
    await waitUntil('its relay stopped', async () => !running.endpoints.includes(id), 10_000);
  });

  it("dead-letters a refused event once its retries are spent, with every attempt's answer, parks its key's next event, and sends both in order when asked", async () => {
    let broken = true;
    const target = await receiver('dead', [], () => (broken ? 'refuse' : undefined));
    const { id, secret } = await endpoints.create(outbox.db, { url: target.server.url, topics: ['dead.*'] });
    target.secrets = [secret];
    await dispatcher({ retry: { retries: 2, minDelayMs: 50, maxDelayMs: 100, factor: 2 } });
    const [event, next] = await publishOrders(2, { topic: 'dead.created', keys: 1 });
    const relay = webhookRelayName(id);
    await waitUntil('the first is a dead letter with the second parked behind it', async () => {
      const letters = await listDeadLetters(outbox.db, { schema: outbox.schema, relay });
      return letters.length === 1 && letters[0]!.parkedEvents === 1;
    }, 10_000);
    const [letter] = await listDeadLetters(outbox.db, { schema: outbox.schema, relay });
    expect(letter!.eventId).toBe(event!.eventId);
    expect(letter!.errors.map((e) => e.message)).toEqual(Array(3).fill(expect.stringMatching(/the receiver answered 422: unprocessable$/)));

    broken = false;
    expect(await retryDeadLetters(outbox.db, { schema: outbox.schema, relay })).toBe(1);
    await waitUntil('the dead letter and its parked event were delivered', async () => target.appliedAt.size === 2, 10_000);
    expect((await target.applied()).map((row) => row.event_id)).toEqual([event!.eventId, next!.eventId]);
    // A dead letter is removed once its delivery is acknowledged, which is after the receiver applied it.
    await waitUntil('the delivered dead letter is removed', async () => (await listDeadLetters(outbox.db, { schema: outbox.schema, relay })).length === 0, 10_000);
  });

  it("sends a tenant's endpoint only that tenant's events on its topics, from the moment it was created", async () => {
    const target = await receiver('tenant', []);
    await publishOrders(3, { tenant: 'acme', topic: 'scoped.before' });
    const { secret } = await endpoints.forTenant('acme').create(outbox.db, { url: target.server.url, topics: ['scoped.*'] });
    target.secrets = [secret];
    const expected = await publishOrders(5, { tenant: 'acme', topic: 'scoped.after' });
    await publishOrders(5, { tenant: 'globex', topic: 'scoped.after' });
    await publishOrders(5, { topic: 'scoped.after' });
    await publishOrders(5, { tenant: 'acme', topic: 'unscoped.after' });
    await dispatcher();
    await waitUntil('the five events arrived', async () => target.appliedAt.size >= 5, 10_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(judge(expected, await target.applied())).toEqual({ lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
  });

  it('signs with both secrets during a rotation, so a receiver can switch to the new secret without losing anything', async () => {
    const target = await receiver('rotation', []);
    const { id, secret: oldSecret } = await endpoints.create(outbox.db, { url: target.server.url, topics: ['rotation.*'] });
    target.secrets = [oldSecret];
    await dispatcher();
    const before = await publishOrders(3, { topic: 'rotation.created' });
    await waitUntil('deliveries under the old secret', async () => target.appliedAt.size === 3, 10_000);

    const { secret: newSecret } = await endpoints.rotateSecret(outbox.db, id, { gracePeriodMs: 3_600_000 });
    await new Promise((r) => setTimeout(r, 1_000)); // the dispatcher restarts the relay with both secrets
    const during = await publishOrders(3, { topic: 'rotation.created' });
    await waitUntil('deliveries still accepted by a receiver holding only the old secret', async () => target.appliedAt.size === 6, 10_000);
    target.secrets = [newSecret]; // the receiver switches
    const after = await publishOrders(3, { topic: 'rotation.created' });
    await waitUntil('deliveries accepted with only the new secret', async () => target.appliedAt.size === 9, 10_000);

    await endpoints.rotateSecret(outbox.db, id, { gracePeriodMs: 0 });
    await new Promise((r) => setTimeout(r, 1_000));
    await publishOrders(1, { topic: 'rotation.created' });
    await waitUntil('a delivery signed only with a secret the receiver does not hold is rejected', async () => target.stats.rejected > 0, 10_000);
    expect(judge([...before, ...during, ...after], (await target.applied()).slice(0, 9)).lost).toEqual([]);
  });

  it('starts, restarts and stops relays as endpoints are added, changed, disabled and removed, and forgets removed ones', async () => {
    const { dispatcher: running, events } = await dispatcher();
    const a = await receiver('lifecycle-a', []);
    const b = await receiver('lifecycle-b', []);
    const created = await endpoints.create(outbox.db, { url: a.server.url, topics: ['life.*'] });
    a.secrets = b.secrets = [created.secret];
    await waitUntil('the new endpoint runs', async () => running.endpoints.includes(created.id), 5_000);
    await publishOrders(2, { topic: 'life.x' });
    await waitUntil('a got them', async () => a.appliedAt.size === 2, 10_000);

    await endpoints.update(outbox.db, created.id, { url: b.server.url });
    await waitUntil('the relay restarted for the new URL', async () => events.filter((e) => e.type === 'endpoint-started' && e.endpointId === created.id).length === 2, 5_000);
    await publishOrders(2, { topic: 'life.x' });
    await waitUntil('b got the new ones', async () => b.appliedAt.size === 2, 10_000);

    await endpoints.disable(outbox.db, created.id);
    await waitUntil('the relay stopped', async () => !running.endpoints.includes(created.id), 5_000);
    await endpoints.remove(outbox.db, created.id);
    await waitUntil('the relay state is dropped', async () => {
      const { rows } = await outbox.db.query(`SELECT 1 FROM "${outbox.schema}".relay_partitions WHERE relay = $1`, [webhookRelayName(created.id)]);
      return rows.length === 0;
    }, 5_000);
    expect(a.appliedAt.size + b.appliedAt.size).toBe(4);
  });

  it("applies a change of an endpoint's topics to the events committed after its relay restarted, keeping its cursors", async () => {
    const { dispatcher: running, events } = await dispatcher();
    const target = await receiver('retopic', []);
    const created = await endpoints.create(outbox.db, { url: target.server.url, topics: ['retopic.a'] });
    target.secrets = [created.secret];
    const restarts = () => events.filter((e) => e.type === 'endpoint-started' && e.endpointId === created.id).length;
    await waitUntil('the new endpoint runs', async () => running.endpoints.includes(created.id), 5_000);
    // One key, so every event is in one partition and arrives in commit order.
    const one = { keys: 1 };
    const first = await publishOrders(2, { ...one, topic: 'retopic.a' });
    await waitUntil('the events of its first topic arrived', async () => target.appliedAt.size === 2, 10_000);

    await endpoints.update(outbox.db, created.id, { topics: ['retopic.a', 'retopic.b'] });
    await waitUntil('the relay restarted with the wider topics', async () => restarts() === 2, 5_000);
    const widened = [...(await publishOrders(2, { ...one, topic: 'retopic.b' })), ...(await publishOrders(1, { ...one, topic: 'retopic.a' }))];
    await waitUntil('the events of both topics arrived', async () => target.appliedAt.size === 5, 10_000);

    await endpoints.update(outbox.db, created.id, { topics: ['retopic.b'] });
    await waitUntil('the relay restarted with the narrower topics', async () => restarts() === 3, 5_000);
    await publishOrders(2, { ...one, topic: 'retopic.a' });
    const narrowed = await publishOrders(1, { ...one, topic: 'retopic.b' });
    // The retopic.b event committed last, so once it is applied the retopic.a events before it were passed over.
    await waitUntil('the event of the remaining topic arrived', async () => target.appliedAt.has(narrowed[0]!.eventId), 10_000);
    expect(judge([...first, ...widened, ...narrowed], await target.applied())).toEqual({ lost: [], unexpected: [], duplicated: {}, outOfOrder: [] });
  });

  it('refuses at send time an endpoint whose address the dispatcher does not allow, recording why on the endpoint', async () => {
    const target = await receiver('refused', []);
    const { id, secret } = await endpoints.create(outbox.db, { url: target.server.url, topics: ['refused.*'] });
    target.secrets = [secret];
    await dispatcher({ addressPolicy: { allow: [] } });
    await publishOrders(1, { topic: 'refused.created' });
    await waitUntil('the refusal is recorded', async () => (await endpoints.get(outbox.db, id))!.lastError?.message, 10_000);
    const endpoint = (await endpoints.get(outbox.db, id))!;
    expect(endpoint.lastError!.message).toMatch(/^webhook URL http:\/\/127\.0\.0\.1:\d+\/hooks is refused: 127\.0\.0\.1 is a loopback address/);
    expect(endpoint.failingSince).not.toBeNull();
    expect(target.server.handled).toBe(0);
  });

  it("keeps the addresses an endpoint's host resolves to out of its stored last error, and in the operator's attempt events", async () => {
    // The tenant registers a name that (by the time of sending) points into the sender's network.
    const registry = webhookEndpoints({ schema: outbox.schema, keyring: testKeyring, addressPolicy: { resolve: async () => [{ address: '93.184.216.34', family: 4 }] } });
    const closed = await server((_req, res) => res.writeHead(204).end());
    const port = new URL(closed.url).port;
    await closed.close();
    const refused = await registry.create(outbox.db, { url: `http://rebind.invalid:${port}/hooks`, topics: ['rebind.refused'] });
    const unreachable = await registry.create(outbox.db, { url: `http://internal.invalid:${port}/hooks`, topics: ['rebind.network'] });
    const internal = async (host: string) => [{ address: host === 'internal.invalid' ? '127.0.0.1' : '10.9.8.7', family: 4 }];
    const { events } = await dispatcher({ addressPolicy: { resolve: internal, allow: ['127.0.0.1/32'] } });
    await publishOrders(1, { topic: 'rebind.refused' });
    await publishOrders(1, { topic: 'rebind.network' });
    for (const { id } of [refused, unreachable]) {
      await waitUntil(`a failure of ${id} is recorded`, async () => (await endpoints.get(outbox.db, id))!.lastError?.message, 10_000);
    }
    const refusedError = (await endpoints.get(outbox.db, refused.id))!.lastError!.message;
    const networkError = (await endpoints.get(outbox.db, unreachable.id))!.lastError!.message;
    expect(refusedError).toBe(`webhook URL http://rebind.invalid:${port}/hooks is refused: its host "rebind.invalid" resolves to an address webhooks are not sent to (public addresses only).`);
    expect(networkError).toMatch(/^webhook \S+ to http:\/\/internal\.invalid:\d+\/hooks: network error \(ECONNREFUSED\)/);
    expect(networkError).not.toContain('127.0.0.1');
    const operatorLog = events.flatMap((e) => (e.type === 'attempt' && e.attempt.error ? [e.attempt.error.message + String((e.attempt.error.cause as Error | undefined)?.message)] : []));
    expect(operatorLog.some((m) => m.includes('10.9.8.7'))).toBe(true);
    expect(operatorLog.some((m) => m.includes('127.0.0.1'))).toBe(true);
  });
});

/** A small seeded generator, so a failing run can be replayed. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

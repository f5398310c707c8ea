import { randomBytes } from 'node:crypto';
import { ConfigError, createRelay, pgDatabase, publish, type Database, type OutboxEvent, type Relay } from '@tidings/outbox';
import { ownStatements } from '@tidings/outbox/internal';
import { createFaultProxy, loopbackOnly, type FaultProxy } from '@tidings/relays/testing';
import { migrateWebhooks, startWebhookDispatcher, webhookEndpoints } from '@tidings/relays/webhook';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { collectingTransport } from '../../../test/support/collecting-transport.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { testKeyring } from '../../../test/support/secret-key.ts';

// Every database below names its connections with an application_name of its own, so
// pg_stat_activity tells exactly which server connections it opened.

let outbox: TestOutbox;
beforeAll(async () => {
  outbox = await freshOutbox('pg_connections', { partitions: 4 });
});
afterAll(() => outbox?.close());

function marked(url: string, label: string): { url: string; app: string } {
  const app = `tidings_${label}_${randomBytes(4).toString('hex')}`;
  const marked = new URL(url);
  marked.searchParams.set('application_name', app);
  return { url: marked.toString(), app };
}

interface Backend {
  readonly pid: number;
  readonly query: string;
}

async function backends(app: string): Promise<Backend[]> {
  const { rows } = await outbox.db.query<Backend>('SELECT pid, query FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid', [app]);
  return rows;
}

const listening = (rows: readonly Backend[]): Backend[] => rows.filter((row) => /^\s*LISTEN\b/i.test(row.query));

function publishTo(topic: string, count: number, round: number): Promise<OutboxEvent[]> {
  return inTransaction(outbox.pool, (client) =>
    publish(client, Array.from({ length: count }, (_, i) => ({ topic, key: `key-${i}`, payload: { round, i } })), { schema: outbox.schema }),
  );
}

function missing(got: readonly OutboxEvent[], sent: readonly OutboxEvent[]): string[] {
  const ids = new Set(got.map((event) => event.eventId));
  return sent.filter((event) => !ids.has(event.eventId)).map((event) => event.eventId);
}

describe('one LISTEN connection per pgDatabase', () => {
  const relayCount = 20;
  const max = 4;
  let database: Database & { close(): Promise<void> };
  let app: string;
  let topic: string;
  const relays: Relay[] = [];
  const transports: ReturnType<typeof collectingTransport>[] = [];
  const sent: OutboxEvent[] = [];

  beforeAll(async () => {
    const target = marked(services.postgres, 'fleet');
    app = target.app;
    // The heartbeat is long so the listener's last statement (what pg_stat_activity shows) stays LISTEN;
    // polling is slower than every wait below, so only a notification can wake a relay in time.
    database = pgDatabase(target.url, { max, listenHeartbeatMs: 600_000 });
    topic = `fleet-${randomBytes(4).toString('hex')}`;
    for (let i = 0; i < relayCount; i++) {
      const transport = collectingTransport();
      transports.push(transport);
      relays.push(
        createRelay({ name: `${topic}-${i}`, database, schema: outbox.schema, transport, topics: [topic], pollIntervalMs: 120_000 }),
      );
    }
    await Promise.all(relays.map((relay) => relay.start()));
  });
  afterAll(async () => {
    await Promise.all(relays.map((relay) => relay.stop()));
    await database?.close();
  });

  const everyRelayGot = (events: readonly OutboxEvent[], timeoutMs: number) =>
    waitUntil(
      `every relay received ${events.length} events`,
      () => transports.every((transport) => missing(transport.got, events).length === 0),
      timeoutMs,
    );

  it(`${relayCount} relays on pgDatabase({ max: ${max} }) open at most ${max + 1} server connections, exactly one of them LISTENing`, async () => {
    const samples: Backend[][] = [];
    const round = await publishTo(topic, 40, 1);
    sent.push(...round);
    const sampling = (async () => {
      for (let i = 0; i < 20; i++) {
        samples.push(await backends(app));
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    })();
    await everyRelayGot(round, 15_000);
    await sampling;
    samples.push(await backends(app));

    const most = Math.max(...samples.map((rows) => rows.length));
    expect(most, 'server connections of the process at their highest').toBeLessThanOrEqual(max + 1);
    expect(listening(samples.at(-1)!).length, 'connections that LISTEN').toBe(1);
  });

  it('after the listening backend is terminated, every relay still wakes on NOTIFY and nothing is lost', async () => {
    const [before] = listening(await backends(app));
    expect(before, 'the listening backend').toBeDefined();
    await outbox.db.query('SELECT pg_terminate_backend($1)', [before!.pid]);

    // Published while the listener may be down: the wake-up after reconnecting must find them.
    const whileDown = await publishTo(topic, 8, 2);
    sent.push(...whileDown);
    await everyRelayGot(whileDown, 15_000);

    const after = await waitUntil('a new backend LISTENs', async () => {
      const rows = listening(await backends(app));
      return rows.length === 1 && rows[0]!.pid !== before!.pid ? rows[0] : undefined;
    });
    expect(after.pid).not.toBe(before!.pid);

    // Relays poll every two minutes: arriving well within that, these were announced by NOTIFY.
    const afterwards = await publishTo(topic, 8, 3);
    sent.push(...afterwards);
    await everyRelayGot(afterwards, 15_000);
    for (const transport of transports) expect(missing(transport.got, sent)).toEqual([]);
    expect((await backends(app)).length).toBeLessThanOrEqual(max + 1);
  });
});

describe('a webhook dispatcher and relays on one pgDatabase', () => {
  it('share one LISTEN connection, and the dispatcher still hears the registry change', async () => {
    await migrateWebhooks(outbox.db, { schema: outbox.schema });
    const endpoints = webhookEndpoints({ schema: outbox.schema, addressPolicy: loopbackOnly, keyring: testKeyring });
    const topic = `quiet-${randomBytes(4).toString('hex')}`;
    // Nothing is ever published to these topics: the receivers are never called.
    for (let i = 0; i < 10; i++) await endpoints.create(outbox.db, { url: `http://127.0.0.1:9/hook-${i}`, topics: [`${topic}.${i}`] });
    const target = marked(services.postgres, 'dispatcher');
    const database = pgDatabase(target.url, { max: 4, listenHeartbeatMs: 600_000 });
    const relays = Array.from({ length: 5 }, (_, i) =>
      createRelay({ name: `${topic}-relay-${i}`, database, schema: outbox.schema, transport: collectingTransport(), topics: [topic], pollIntervalMs: 120_000 }),
    );
    // The registry is re-read on NOTIFY only, within this test.
    const dispatcher = await startWebhookDispatcher({ database, schema: outbox.schema, addressPolicy: loopbackOnly, keyring: testKeyring, refreshIntervalMs: 600_000 });
    try {
      await Promise.all(relays.map((relay) => relay.start()));
      await waitUntil('the dispatcher runs a relay per endpoint', () => dispatcher.endpoints.length >= 10);
      const added = await endpoints.create(outbox.db, { url: 'http://127.0.0.1:9/hook-added', topics: [`${topic}.added`] });
      await waitUntil('the dispatcher took up the endpoint announced by NOTIFY', () => dispatcher.endpoints.includes(added.id), 15_000);
      const rows = await backends(target.app);
      expect(rows.length, 'server connections').toBeLessThanOrEqual(5);
      expect(listening(rows).length, 'connections that LISTEN').toBe(1);
    } finally {
      await dispatcher.stop();
      await Promise.all(relays.map((relay) => relay.stop()));
      for (const endpoint of await endpoints.list(outbox.db, { limit: 100 })) await endpoints.remove(outbox.db, endpoint.id);
      await database.close();
    }
  });
});

describe('the shared listener', () => {
  it('LISTENs a channel on its first subscriber and UNLISTENs it after its last, on one connection', async () => {
    const target = marked(services.postgres, 'refcount');
    const database = pgDatabase(target.url, { max: 1, listenHeartbeatMs: 600_000 });
    const channel = `refcount_${randomBytes(4).toString('hex')}`;
    try {
      const first = await database.listen(channel, () => {});
      const second = await database.listen(channel, () => {});
      await first();
      const listener = async () => (await backends(target.app)).filter((row) => /LISTEN/i.test(row.query));
      expect((await listener()).map((row) => row.query)).toEqual([`LISTEN "${channel}"`]);
      const other = await database.listen(`${channel}_other`, () => {});
      await second();
      expect((await listener()).map((row) => row.query)).toEqual([`UNLISTEN "${channel}"`]);
      await other();
      // No channel left: the listening connection is closed.
      await waitUntil('the listening connection closed', async () => (await listener()).length === 0);
    } finally {
      await database.close();
    }
  });

  it('keeps notifying every subscriber when one of them throws', async () => {
    const database = pgDatabase(services.postgres, { max: 1 });
    const channel = `throwing_${randomBytes(4).toString('hex')}`;
    const heard: string[] = [];
    try {
      await database.listen(channel, () => {
        throw new Error('a broken subscriber');
      });
      await database.listen(channel, async () => {
        throw new Error('a broken async subscriber');
      });
      await database.listen(channel, (payload) => heard.push(payload));
      await database.query('SELECT pg_notify($1, $2)', [channel, 'one']);
      await database.query('SELECT pg_notify($1, $2)', [channel, 'two']);
      await waitUntil('both notifications were heard', () => heard.includes('two'));
      expect(heard.filter((payload) => payload !== '*')).toEqual(['one', 'two']);
    } finally {
      await database.close();
    }
  });
});

describe('pgDatabase options', () => {
  it.each([
    [{ max: 0 }, 'max'],
    [{ keepAlive: 'yes' }, 'keepAlive'],
    [{ keepAliveInitialDelayMs: -1 }, 'keepAliveInitialDelayMs'],
    [{ connectTimeoutMs: 0 }, 'connectTimeoutMs'],
    [{ queryTimeoutMs: 1.5 }, 'queryTimeoutMs'],
    [{ listenHeartbeatMs: 10 }, 'listenHeartbeatMs'],
    [{ querytimeoutMs: 1000 }, 'querytimeoutMs'],
  ])('refuses %j with a ConfigError naming %s', (options, option) => {
    const attempt = () => pgDatabase(services.postgres, options as never);
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(`"${option}"`);
  });

  it('limits the statements of relays and feeds by queryTimeoutMs, never migrations, admin calls or transactions', async () => {
    const database = pgDatabase(services.postgres, { max: 2, queryTimeoutMs: 300 });
    try {
      await expect(ownStatements(database).query('SELECT pg_sleep(1.5)')).rejects.toThrow(/timeout/i);
      expect(ownStatements(database), 'one limited handle per database').toBe(ownStatements(database));
      const admin = await database.query<{ ok: number }>('SELECT 1 AS ok FROM pg_sleep(0.6)');
      expect(admin.rows).toEqual([{ ok: 1 }]);
      const inTransaction = await database.transaction((trx) => trx.query<{ ok: number }>('SELECT 1 AS ok FROM pg_sleep(0.6)'));
      expect(inTransaction.rows).toEqual([{ ok: 1 }]);
      // The connection whose statement timed out was dropped; the pool serves the next one.
      const after = await ownStatements(database).query<{ ok: number }>('SELECT 1 AS ok');
      expect(after.rows).toEqual([{ ok: 1 }]);
    } finally {
      await database.close();
    }
  });

  it('refuses pool settings next to a pool of your own, saying where they belong', async () => {
    const pool = new pg.Pool({ connectionString: services.postgres, max: 1 });
    try {
      expect(() => pgDatabase(pool, { keepAlive: false })).toThrow(/set it on that pool/);
      expect(() => pgDatabase(pool, { queryTimeoutMs: 1_000, listenHeartbeatMs: 1_000 })).not.toThrow();
    } finally {
      await pool.end();
    }
  });
});

describe('a relay whose PostgreSQL traffic is black-holed', () => {
  let proxy: FaultProxy;
  beforeAll(async () => {
    const url = new URL(services.postgres);
    proxy = await createFaultProxy({ target: { host: url.hostname, port: Number(url.port || 5432) } });
  });
  afterAll(() => proxy?.close());

  it('recovers and delivers within its lease time, and its listener hears NOTIFY again', async () => {
    const url = new URL(services.postgres);
    url.host = `${proxy.host}:${proxy.port}`;
    const leaseTtlMs = 8_000;
    const database = pgDatabase(url.toString(), { max: 2, queryTimeoutMs: 1_000, connectTimeoutMs: 1_000, listenHeartbeatMs: 500 });
    const topic = `hole-${randomBytes(4).toString('hex')}`;
    const transport = collectingTransport();
    // Polling is slower than the whole test: after the black hole, only the listener's recovery
    // (its wake-up, then its notifications) can bring the events.
    const relay = createRelay({ name: topic, database, schema: outbox.schema, transport, topics: [topic], pollIntervalMs: 120_000, leaseTtlMs });
    try {
      await relay.start();
      const first = await publishTo(topic, 4, 1);
      await waitUntil('the first events arrived', () => missing(transport.got, first).length === 0, 15_000);

      const openBefore = proxy.acceptedConnections;
      proxy.blackHole();
      const holedAt = Date.now();
      const second = await publishTo(topic, 4, 2);
      await waitUntil('the events published into the black hole arrived', () => missing(transport.got, second).length === 0, leaseTtlMs);
      expect(Date.now() - holedAt).toBeLessThan(leaseTtlMs);
      expect(proxy.acceptedConnections, 'connections opened after the black hole').toBeGreaterThan(openBefore);

      const third = await publishTo(topic, 4, 3);
      await waitUntil('events announced to the new listener arrived', () => missing(transport.got, third).length === 0, leaseTtlMs);
      expect(missing(transport.got, [...first, ...second, ...third])).toEqual([]);
    } finally {
      await relay.stop({ graceMs: 1_000 });
      await database.close();
    }
  });

  it('closes promptly while its pooled and listening connections are black-holed', async () => {
    const url = new URL(services.postgres);
    url.host = `${proxy.host}:${proxy.port}`;
    const database = pgDatabase(url.toString(), { max: 1, listenHeartbeatMs: 600_000 });
    await database.listen('black_holed', () => {});
    await database.query('SELECT 1'); // leaves an idle pooled connection
    proxy.blackHole();
    const closed = database.close().then(() => 'closed');
    const hung = new Promise((resolve) => setTimeout(resolve, 10_000, 'still closing after 10 s')).then(String);
    expect(await Promise.race([closed, hung])).toBe('closed');
  });

  it('gives up opening a connection after connectTimeoutMs when the server never answers, for queries and for LISTEN', async () => {
    const url = new URL(services.postgres);
    url.host = `${proxy.host}:${proxy.port}`;
    proxy.blackHoleNew(true);
    const database = pgDatabase(url.toString(), { max: 1, connectTimeoutMs: 300 });
    try {
      await expect(database.query('SELECT 1')).rejects.toThrow(/timeout/i);
      await expect(database.listen('never_heard', () => {})).rejects.toThrow(/timeout/i);
    } finally {
      proxy.blackHoleNew(false);
      await database.close();
    }
  });
});

describe('connectTimeoutMs', () => {
  it('limits opening a connection, not the wait for a free one', async () => {
    const database = pgDatabase(services.postgres, { max: 1, connectTimeoutMs: 200 });
    try {
      let entered!: () => void;
      const inside = new Promise<void>((resolve) => (entered = resolve));
      // The pool's only connection is taken for 0.6 s, three times the connect timeout.
      const holding = database.transaction(async (trx) => {
        entered();
        await trx.query('SELECT pg_sleep(0.6)');
      });
      await inside;
      const { rows } = await database.query<{ ok: number }>('SELECT 1 AS ok');
      expect(rows).toEqual([{ ok: 1 }]);
      await holding;
    } finally {
      await database.close();
    }
  });
});

import { migrateInbox } from '@tidings/inbox';
import { testEvent, loopbackOnly } from '@tidings/relays/testing';
import {
  expressWebhookHandler,
  fastifyWebhookHandler,
  generateWebhookSecret,
  signWebhook,
  webhookReceiver,
  webhookTransport,
  type WebhookMessage,
  type WebhookReceiver,
} from '@tidings/relays/webhook';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';

describe('the webhook receiver', () => {
  let outbox: TestOutbox;
  let secret: string;
  let log: string[];
  let swallow: boolean;
  let receiver: WebhookReceiver;
  let server: http.Server;
  let url: string;

  beforeAll(async () => {
    outbox = await freshOutbox('webhook_receiver');
    await migrateInbox(outbox.db, { schema: outbox.schema });
    await outbox.db.query(`CREATE TABLE "${outbox.schema}".effects (event_id text NOT NULL, topic text NOT NULL, payload jsonb)`);
    server = http.createServer((req, res) => {
      const writeHead = res.writeHead.bind(res) as (...args: unknown[]) => http.ServerResponse;
      res.writeHead = ((...args: unknown[]) => {
        log.push(`answer ${String(args[0])}`);
        return writeHead(...args);
      }) as typeof res.writeHead;
      void receiver.listener(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
    await outbox.close();
  });
  beforeEach(async () => {
    secret = generateWebhookSecret();
    log = [];
    swallow = false;
    receiver = makeReceiver([secret]);
    await outbox.db.query(`TRUNCATE "${outbox.schema}".effects, "${outbox.schema}".inbox`);
  });

  function makeReceiver(secrets: string[]): WebhookReceiver {
    return webhookReceiver({
      secrets,
      consumer: 'test.receiver',
      schema: outbox.schema,
      database: async <R>(work: (trx: pg.PoolClient) => Promise<R>): Promise<R> => {
        const result = await inTransaction(outbox.pool, work);
        log.push('commit');
        return result;
      },
      handler: async (trx, message: WebhookMessage) => {
        log.push(`apply ${message.topic}`);
        await trx.query(`INSERT INTO "${outbox.schema}".effects VALUES ($1, $2, $3)`, [message.eventId, message.topic, JSON.stringify(message.payload)]);
        // A handler that catches a database error and carries on: the transaction is aborted.
        if (swallow) await trx.query('SELECT 1/0').catch(() => {});
      },
    });
  }

  async function effects(): Promise<string[]> {
    const { rows } = await outbox.db.query<{ event_id: string }>(`SELECT event_id FROM "${outbox.schema}".effects ORDER BY event_id`);
    return rows.map((row) => row.event_id);
  }

  async function post(body: string, headers: Record<string, string>, method = 'POST'): Promise<{ status: number; body: string }> {
    const response = await fetch(url, { method, headers: { 'content-type': 'application/json', ...headers }, body: method === 'GET' ? undefined : body });
    return { status: response.status, body: await response.text() };
  }

  function signed(event = testEvent({ topic: 'orders.created', payload: { total: 1 } }), at = Date.now(), key = secret) {
    const body = JSON.stringify({ id: event.eventId, topic: event.topic, key: event.key, tenant: event.tenant, createdAt: event.createdAt.toISOString(), headers: {}, payload: event.payload });
    const timestamp = Math.floor(at / 1000);
    const headers = { 'webhook-id': event.eventId, 'webhook-timestamp': String(timestamp), 'webhook-signature': signWebhook({ id: event.eventId, timestamp, body }, key) };
    return { event, body, headers };
  }

  it('applies a delivery once, answering 200 only after the transaction that applied it committed', async () => {
    const transport = webhookTransport({ url, secrets: [secret], addressPolicy: loopbackOnly });
    const event = testEvent({ topic: 'orders.created', key: 'o-1', payload: { total: 42 } });
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        expect((await transport.send([event], AbortSignal.timeout(5_000)))[0]!.status).toBe('delivered');
      }
    } finally {
      await transport.close();
    }
    expect(log).toEqual(['apply orders.created', 'commit', 'answer 200', 'commit', 'answer 200', 'commit', 'answer 200']);
    expect(await effects()).toEqual([event.eventId]);
    const { rows } = await outbox.db.query(`SELECT payload FROM "${outbox.schema}".effects`);
    expect(rows[0]).toEqual({ payload: { total: 42 } });
  });

  it('answers 500 when the handler swallowed a SQL error (its runner does not check COMMIT), then applies the redelivery once', async () => {
    const { body, headers, event } = signed();
    swallow = true;
    const refused = await post(body, headers);
    expect(refused.status).toBe(500);
    expect(await effects()).toEqual([]);
    const marks = await outbox.db.query(`SELECT 1 FROM "${outbox.schema}".inbox`);
    expect(marks.rowCount).toBe(0);
    swallow = false;
    expect(await post(body, headers)).toEqual({ status: 200, body: JSON.stringify({ id: event.eventId, status: 'applied' }) });
    expect(await effects()).toEqual([event.eventId]);
  });

  it('answers 200 with the outcome: applied the first time, duplicate afterwards', async () => {
    const { body, headers, event } = signed();
    expect(await post(body, headers)).toEqual({ status: 200, body: JSON.stringify({ id: event.eventId, status: 'applied' }) });
    expect(await post(body, headers)).toEqual({ status: 200, body: JSON.stringify({ id: event.eventId, status: 'duplicate' }) });
  });

  it('answers 401 to a tampered body, a wrong secret, a replayed old timestamp and a future one, and applies nothing', async () => {
    const original = signed();
    const tampered = original.body.replace('"total":1', '"total":1000');
    const wrongSecret = signed(undefined, Date.now(), generateWebhookSecret());
    const replayed = signed(undefined, Date.now() - 6 * 60_000);
    const future = signed(undefined, Date.now() + 6 * 60_000);
    const answers = [
      await post(tampered, original.headers),
      await post(wrongSecret.body, wrongSecret.headers),
      await post(replayed.body, replayed.headers),
      await post(future.body, future.headers),
      await post(original.body, { ...original.headers, 'webhook-signature': '' }),
    ];
    expect(answers.map((a) => [a.status, JSON.parse(a.body).error])).toEqual([
      [401, 'signature-mismatch'],
      [401, 'signature-mismatch'],
      [401, 'timestamp-too-old'],
      [401, 'timestamp-too-new'],
      [401, 'missing-headers'],
    ]);
    expect(await effects()).toEqual([]);
    expect(log.filter((entry) => entry.startsWith('apply'))).toEqual([]);
  });

  it('accepts both the old and the new secret while a rotation is under way', async () => {
    const next = generateWebhookSecret();
    receiver = makeReceiver([next, secret]);
    const byOld = signed();
    const byNew = signed(undefined, Date.now(), next);
    expect((await post(byOld.body, byOld.headers)).status).toBe(200);
    expect((await post(byNew.body, byNew.headers)).status).toBe(200);
    expect((await effects()).length).toBe(2);
  });

  it('answers 400 to a signed body that is not a tidings envelope, 405 to other methods and 413 to huge bodies', async () => {
    const event = testEvent({ topic: 't' });
    const timestamp = Math.floor(Date.now() / 1000);
    const body = JSON.stringify({ id: 'someone-else', topic: 't' });
    const headers = { 'webhook-id': event.eventId, 'webhook-timestamp': String(timestamp), 'webhook-signature': signWebhook({ id: event.eventId, timestamp, body }, secret) };
    const bad = await post(body, headers);
    expect(bad.status).toBe(400);
    expect(JSON.parse(bad.body).error).toBe('not a tidings webhook: field "id" differs from the webhook-id header');
    expect((await post('', {}, 'GET')).status).toBe(405);
    expect((await post('x'.repeat(3 * 1024 * 1024), signed().headers)).status).toBe(413);
  });

  it('works as an Express handler behind express.raw(), and refuses a body some JSON parser already consumed', async () => {
    const handler = expressWebhookHandler(receiver);
    const { body, headers, event } = signed();
    const answers: number[] = [];
    for (const parsed of [Buffer.from(body), JSON.parse(body) as unknown]) {
      const req = Object.assign(new http.IncomingMessage(null as never), { method: 'POST', headers, body: parsed });
      const res = fakeResponse();
      await handler(req, res as never);
      answers.push(res.status);
    }
    expect(answers).toEqual([200, 500]);
    expect(await effects()).toEqual([event.eventId]);
  });

  it('works as a Fastify handler when the route keeps the raw body', async () => {
    const handler = fastifyWebhookHandler(receiver);
    const { body, headers, event } = signed();
    const reply = { status: 0, payload: '', code(s: number) { this.status = s; return this; }, headers() { return this; }, send(p: string) { this.payload = p; return this; } };
    await handler({ method: 'POST', headers, body: Buffer.from(body) }, reply);
    expect(reply.status).toBe(200);
    await handler({ method: 'POST', headers, body: JSON.parse(body) }, reply);
    expect(reply.status).toBe(500);
    expect(reply.payload).toContain('parseAs: buffer');
    expect(await effects()).toEqual([event.eventId]);
  });

  it('hands the handler the one received-event type, tells onEvent what it did, and closes: 503 to new requests once close() began, done resolved after the transactions in progress', async () => {
    const seen: WebhookMessage[] = [];
    const told: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const closing = webhookReceiver({
      secrets: [secret],
      consumer: 'test.closing',
      schema: outbox.schema,
      database: outbox.pool,
      handler: async (_trx, message) => {
        seen.push(message);
        await gate;
      },
      onEvent: (event) => {
        told.push(event.type === 'committed' ? `committed ${event.applied}` : `rejected ${event.status}`);
        throw new Error('an observer that throws changes nothing');
      },
    });
    const first = signed(testEvent({ topic: 'orders.paid', key: 'o-7', payload: { total: 7 } }));
    const inFlight = closing.handle({ method: 'POST', headers: first.headers, body: first.body });
    await vi.waitFor(() => expect(seen).toHaveLength(1));
    const closed = closing.close();
    const refused = await closing.handle({ method: 'POST', headers: signed().headers, body: signed().body });
    expect(refused.status).toBe(503);
    expect(refused.headers['retry-after']).toBe('5');
    let settled = false;
    void closing.done.then(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(settled).toBe(false);
    release();
    expect((await inFlight).status).toBe(200);
    await closed;
    await closing.done;
    expect(told).toEqual(['rejected 503', 'committed true']);
    const message = seen[0]!;
    expect(message).toMatchObject({ eventId: first.event.eventId, topic: 'orders.paid', key: 'o-7', tenant: null, payload: { total: 7 }, headers: {}, attempt: 1 });
    expect(message.createdAt!.toISOString()).toBe(first.event.createdAt.toISOString());
    expect(message.delivery.transport).toBe('webhook');
    expect(Math.abs(message.delivery.sentAt.getTime() - Date.now())).toBeLessThan(5_000);
  });

  it('refuses bad options with a ConfigError naming the option, before taking any request', () => {
    const base = { secrets: [secret], consumer: 'c', database: outbox.pool, handler: () => {} };
    expect(() => webhookReceiver({ ...base, consumer: '' })).toThrow(expect.objectContaining({ name: 'ConfigError', option: 'consumer' }));
    expect(() => webhookReceiver({ ...base, database: {} as never })).toThrow(expect.objectContaining({ name: 'ConfigError', option: 'database' }));
    expect(() => webhookReceiver({ ...base, handler: undefined as never })).toThrow(expect.objectContaining({ name: 'ConfigError', option: 'handler' }));
    expect(() => webhookReceiver({ ...base, secrets: [] })).toThrow(expect.objectContaining({ name: 'ConfigError', option: 'secrets' }));
    expect(() => webhookReceiver({ ...base, maxBodyBytes: 0 })).toThrow(expect.objectContaining({ name: 'ConfigError', option: 'maxBodyBytes' }));
  });
});

function fakeResponse() {
  const res = {
    status: 0,
    writeHead(status: number) {
      res.status = status;
      return res;
    },
    end() {
      return res;
    },
  };
  return res;
}

import { migrateInbox } from '@tidings/inbox';
import { generateWebhookSecret, signWebhook, webhookReceiver, type WebhookMessage } from '@tidings/relays/webhook';
import fc from 'fast-check';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';

/** Generated requests per run (`FUZZ_RUNS` for more). */
const numRuns = Number(process.env.FUZZ_RUNS ?? 300);

let outbox: TestOutbox;
let server: http.Server;
let url: URL;
const secret = generateWebhookSecret();
const applied: string[] = [];
const serverErrors: string[] = [];

beforeAll(async () => {
  outbox = await freshOutbox('webhook_fuzz');
  await migrateInbox(outbox.db, { schema: outbox.schema });
  const receiver = webhookReceiver({
    secrets: secret,
    consumer: 'fuzz',
    schema: outbox.schema,
    database: outbox.pool,
    handler: async (_trx, message: WebhookMessage) => {
      applied.push(message.eventId);
    },
    maxBodyBytes: 64 * 1024,
    onEvent: (event) => {
      if (event.type === 'rejected' && event.status >= 500) serverErrors.push(`${event.status} ${event.error.message}`);
    },
  });
  server = http.createServer((req, res) => void receiver.listener(req, res));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`);
});
afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await outbox?.close();
});

interface Generated {
  method: string;
  id: string | undefined;
  timestamp: string | undefined;
  /** How the signature header is made. */
  signature: 'valid' | 'other-secret' | 'tampered' | 'junk' | 'none' | 'several';
  body: string;
  /** Whether `body` is a well-formed tidings envelope. */
  envelope: boolean;
}

const now = () => Math.floor(Date.now() / 1000);
const text = fc.string({ unit: 'binary', maxLength: 60 });
const weighted = <T>(...pairs: [number, fc.Arbitrary<T>][]) => fc.oneof(...pairs.map(([weight, arbitrary]) => ({ weight, arbitrary })));

/** Mostly well-formed requests with one thing wrong, so that every check is reached, and some noise. */
const generated: fc.Arbitrary<Generated> = fc
  .record({
    method: weighted([6, fc.constant('POST')], [1, fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH')]),
    id: weighted<string | undefined>([6, fc.uuid()], [1, fc.constant(undefined)], [1, fc.constant('')], [1, text]),
    timestamp: weighted<string | undefined>(
      [6, fc.integer({ min: -200, max: 200 }).map((d) => String(now() + d))],
      [2, fc.integer({ min: -900, max: 900 }).map((d) => String(now() + d))],
      [1, fc.constantFrom('0', '-1', '1e3', 'NaN', '', '99999999999999999999')],
      [1, text],
      [1, fc.constant(undefined)],
    ),
    signature: fc.constantFrom<Generated['signature']>('valid', 'valid', 'valid', 'other-secret', 'tampered', 'junk', 'none', 'several'),
    idInBody: weighted([5, fc.constant(true)], [1, fc.constant(false)]),
    topic: weighted([5, fc.constantFrom('orders.created', 'a.b-c_d')], [1, fc.constantFrom('', ' ')], [1, text]),
    payload: fc.jsonValue({ maxDepth: 3 }),
    noise: weighted<string | undefined>(
      [6, fc.constant(undefined)],
      [1, fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v))],
      [1, text],
      [1, fc.constantFrom('', 'x'.repeat(70 * 1024), '{"id":1}', '[]', 'null')],
    ),
  })
  .map(({ idInBody, topic, payload, noise, ...rest }) => {
    if (noise !== undefined) return { ...rest, body: noise, envelope: false };
    const id = idInBody ? (rest.id ?? '') : 'another-id';
    const body = JSON.stringify({ id, topic, key: null, tenant: null, createdAt: new Date().toISOString(), headers: {}, payload });
    // The receiver checks the envelope's shape; what the signer put in the topic is the signer's.
    return { ...rest, body, envelope: idInBody && rest.id !== undefined && typeof topic === 'string' };
  });

function headersOf(g: Generated): Record<string, string> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (g.id !== undefined) headers['webhook-id'] = g.id;
  if (g.timestamp !== undefined) headers['webhook-timestamp'] = g.timestamp;
  const sign = (key: string) => signWebhook({ id: g.id ?? '', timestamp: Number(g.timestamp ?? 0), body: g.body }, key);
  const signable = g.id !== undefined && g.timestamp !== undefined && /^\d+$/.test(g.timestamp) && Number.isSafeInteger(Number(g.timestamp));
  switch (g.signature) {
    case 'valid':
      if (signable) headers['webhook-signature'] = sign(secret);
      break;
    case 'other-secret':
      if (signable) headers['webhook-signature'] = sign(generateWebhookSecret());
      break;
    case 'tampered':
      if (signable) headers['webhook-signature'] = sign(secret).replace(/.$/, (c) => (c === 'A' ? 'B' : 'A'));
      break;
    case 'junk':
      headers['webhook-signature'] = 'v1,not-base64!! v2,x ,,,';
      break;
    case 'several':
      if (signable) headers['webhook-signature'] = `v1,${'A'.repeat(44)} ${sign(secret)}`;
      break;
    case 'none':
      break;
  }
  // Header values must be valid HTTP: the client refuses others before sending.
  for (const [name, value] of Object.entries(headers)) if (/[^\t\x20-\x7e]/.test(value)) headers[name] = encodeURIComponent(value);
  return headers;
}

function post(g: Generated, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // A well-formed HTTP message: without a length, Node sends a DELETE's body as bytes after the
    // request, which the server's HTTP parser (not the receiver) answers with a bare 400.
    const payload = g.method === 'GET' ? undefined : Buffer.from(g.body, 'utf8');
    const sized = payload ? { ...headers, 'content-length': String(payload.length) } : headers;
    const request = http.request(url, { method: g.method, headers: sized, timeout: 15_000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode!, body: Buffer.concat(chunks).toString('utf8') }));
    });
    request.on('timeout', () => request.destroy(new Error('the receiver did not answer within 15 s')));
    request.on('error', (error) => {
      // A body over the limit may be answered (413) and the socket closed before it was all sent.
      if ((error as NodeJS.ErrnoException).code === 'EPIPE' || (error as NodeJS.ErrnoException).code === 'ECONNRESET') resolve({ status: 413, body: '{"error":"closed while sending"}' });
      else reject(error);
    });
    request.end(payload);
  });
}

describe('fuzzing the webhook receiver over HTTP', () => {
  it('answers every generated request with 200 only for a valid signed envelope, otherwise a 4xx saying what is wrong; never a 5xx, never a stall', { timeout: 300_000 }, async () => {
    const statuses = new Map<number, number>();
    const delay = monitorEventLoopDelay({ resolution: 10 });
    delay.enable();
    await fc.assert(
      fc.asyncProperty(generated, async (g) => {
        const headers = headersOf(g);
        const answer = await post(g, headers);
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        const said = `${g.method} ${JSON.stringify(headers)} body ${JSON.stringify(g.body.slice(0, 120))} -> ${answer.status} ${answer.body.slice(0, 200)}`;
        expect(answer.status, said).toBeLessThan(500);
        // The receiver's tolerance is 300 s; near it, either answer is right.
        const skew = g.timestamp !== undefined && /^\d+$/.test(g.timestamp) ? Math.abs(Number(g.timestamp) - now()) : Infinity;
        const signedWell = g.method === 'POST' && g.envelope && g.id !== undefined && g.id !== '' && (g.signature === 'valid' || g.signature === 'several') && headers['webhook-id'] === g.id;
        const acceptable = signedWell && skew < 320;
        if (answer.status === 200) {
          expect(acceptable, said).toBe(true);
          expect(JSON.parse(answer.body), said).toMatchObject({ status: expect.stringMatching(/^(applied|duplicate)$/) });
        } else {
          expect(answer.status, said).toBeGreaterThanOrEqual(400);
          let problem: { error?: unknown } = {};
          expect(() => (problem = JSON.parse(answer.body) as { error?: unknown }), said).not.toThrow();
          expect(typeof problem.error, said).toBe('string');
          expect((problem.error as string).length, said).toBeGreaterThan(3);
        }
        // Signed with a fresh timestamp and a well-formed envelope: it must be taken.
        if (signedWell && skew <= 280 && g.body.length < 64 * 1024) expect(answer.status, said).toBe(200);
      }),
      { numRuns },
    );
    delay.disable();
    console.log(`webhook receiver fuzz: ${numRuns} requests; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort(([a], [b]) => a - b)))}; ` +
      `${applied.length} applied; event-loop delay max ${(delay.max / 1e6).toFixed(0)} ms`);
    expect(serverErrors).toEqual([]);
    expect(delay.max / 1e6).toBeLessThan(2_000);
    expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
    expect([...statuses.keys()].some((s) => s >= 400)).toBe(true);
  });
});

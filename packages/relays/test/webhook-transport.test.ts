import { testEvent, testEvents, loopbackOnly, startWebhookServer, type TestWebhookServer } from '@tidings/relays/testing';
import { verifyWebhook, webhookTransport, WebhookDeliveryError, WebhookSecretsExpiredError, type WebhookTransport, type WebhookTransportEvent } from '@tidings/relays/webhook';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';

describe('webhook transport', () => {
  const opened: Array<TestWebhookServer | WebhookTransport> = [];
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((o) => o.close()));
  });
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const signal = () => AbortSignal.timeout(10_000);

  async function receiver(answer: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void) {
    const seen: Array<{ headers: IncomingMessage['headers']; body: Buffer; url: string }> = [];
    const server = await startWebhookServer((req, res, body) => {
      seen.push({ headers: req.headers, body, url: req.url ?? '' });
      answer(req, res, body);
    });
    opened.push(server);
    return { server, seen };
  }
  function transport(url: string, options: Partial<Parameters<typeof webhookTransport>[0]> = {}) {
    const t = webhookTransport({ url, secrets: [secret], addressPolicy: loopbackOnly, ...options });
    opened.push(t);
    return t;
  }

  it('signs each request per Standard Webhooks and posts the documented JSON envelope', async () => {
    const { server, seen } = await receiver((_req, res) => res.writeHead(200).end());
    const event = testEvent({
      topic: 'orders.created',
      key: 'order-7',
      tenant: 'acme',
      payload: { total: 42 },
      headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', note: 'café' },
    });
    const before = Math.floor(Date.now() / 1000);
    expect(await transport(server.url).send([event], signal())).toEqual([{ status: 'delivered' }]);
    const [request] = seen;
    expect(request!.headers).toMatchObject({
      'content-type': 'application/json',
      'webhook-id': event.eventId,
      traceparent: event.headers.traceparent,
      'user-agent': 'tidings-webhooks/1',
    });
    expect(Number(request!.headers['webhook-timestamp'])).toBeGreaterThanOrEqual(before);
    expect(request!.headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]{43}=$/);
    expect(verifyWebhook(request!.headers, request!.body, secret).id).toBe(event.eventId);
    expect(JSON.parse(request!.body.toString())).toEqual({
      id: event.eventId,
      topic: 'orders.created',
      key: 'order-7',
      tenant: 'acme',
      createdAt: event.createdAt.toISOString(),
      headers: event.headers,
      payload: { total: 42 },
    });
  });

  it('stops a batch at the first event not delivered, so later events keep their order', async () => {
    let n = 0;
    const { server, seen } = await receiver((_req, res) => res.writeHead(++n === 2 ? 500 : 204).end('boom'));
    const outcomes = await transport(server.url).send(testEvents(4, { topic: 't', key: 'k' }), signal());
    expect(outcomes.map((o) => o.status)).toEqual(['delivered', 'unavailable', 'retry', 'retry']);
    expect(seen).toHaveLength(2);
    const error = (outcomes[1] as { error: Error }).error as WebhookDeliveryError;
    expect(error).toBeInstanceOf(WebhookDeliveryError);
    expect(error).toMatchObject({ reason: 'status', status: 500, responseSnippet: 'boom' });
    expect(error.message).toContain('the receiver answered 500: boom');
  });

  it('tells an unavailable receiver (408, 429, 5xx, no answer) from one that refuses the event (any other 4xx)', async () => {
    const codes = [400, 401, 403, 404, 409, 413, 422, 408, 429, 500, 502, 503, 504];
    let i = 0;
    const { server } = await receiver((_req, res) => res.writeHead(codes[i++]!).end());
    const t = transport(server.url);
    const judged: Record<number, string> = {};
    for (const code of codes) judged[code] = (await t.send([testEvent({ topic: 't' })], signal()))[0]!.status;
    expect(judged).toEqual({
      400: 'retry', 401: 'retry', 403: 'retry', 404: 'retry', 409: 'retry', 413: 'retry', 422: 'retry',
      408: 'unavailable', 429: 'unavailable', 500: 'unavailable', 502: 'unavailable', 503: 'unavailable', 504: 'unavailable',
    });
    const { server: down } = await receiver((_req, res) => res.writeHead(204).end());
    await down.takeDown('refuse');
    const [refused] = await transport(down.url).send([testEvent({ topic: 't' })], signal());
    expect(refused).toMatchObject({ status: 'unavailable', error: { reason: expect.any(String) } });
  });

  it('honours Retry-After on 429 and 503, in seconds or as an HTTP date, up to maxRetryAfterMs', async () => {
    const answers = [
      [429, '7'],
      [503, new Date(Date.now() + 120_000).toUTCString()],
      [503, '86400'],
      [429, undefined],
    ] as const;
    let i = 0;
    const { server } = await receiver((_req, res) => {
      const [status, after] = answers[i++]!;
      res.writeHead(status, after === undefined ? {} : { 'retry-after': after }).end();
    });
    const t = transport(server.url, { maxRetryAfterMs: 3_600_000 });
    const hints = [];
    for (let k = 0; k < answers.length; k++) {
      const [outcome] = await t.send([testEvent({ topic: 't' })], signal());
      expect(outcome!.status).toBe('unavailable');
      hints.push((outcome as { retryAfterMs?: number }).retryAfterMs);
    }
    expect(hints[0]).toBe(7_000);
    expect(hints[1]).toBeGreaterThan(100_000);
    expect(hints[1]).toBeLessThanOrEqual(120_000);
    expect(hints[2]).toBe(3_600_000);
    expect(hints[3]).toBeUndefined();
  });

  it("fails an event permanently on 410 Gone, or with gone: 'unavailable' keeps it pending once onEvent's gone work is done", async () => {
    const { server } = await receiver((_req, res) => res.writeHead(410).end());
    const heard: string[] = [];
    const [plain] = await transport(server.url, { onEvent: (e) => void heard.push(`${e.type}`) }).send([testEvent({ topic: 't' })], signal());
    expect(plain).toMatchObject({ status: 'failed', error: { reason: 'gone', status: 410 } });
    expect(heard).toEqual(['gone', 'attempt']);
    const gone: string[] = [];
    const onEvent = async (event: WebhookTransportEvent) => {
      if (event.type !== 'gone') return;
      await new Promise((resolve) => setTimeout(resolve, 50));
      gone.push(event.error.eventId);
    };
    const [held] = await transport(server.url, { gone: 'unavailable', onEvent }).send([testEvent({ topic: 't', eventId: 'E1' })], signal());
    expect(held).toMatchObject({ status: 'unavailable', error: { reason: 'gone' } });
    expect(gone).toEqual(['E1']);
  });

  it('delivers the same whatever its observer throws or rejects with', async () => {
    const { server, seen } = await receiver((req, res) => res.writeHead(req.url === '/gone' ? 410 : 204).end());
    const throwing = transport(server.url, { onEvent: () => { throw new Error('observer bug'); } });
    const rejecting = transport(server.url, { onEvent: () => Promise.reject(new Error('observer bug')) });
    for (const t of [throwing, rejecting]) {
      expect(await t.send(testEvents(3, { topic: 't' }), signal())).toEqual([{ status: 'delivered' }, { status: 'delivered' }, { status: 'delivered' }]);
    }
    expect(seen).toHaveLength(6);
    const [held] = await transport(`${server.url.replace(/\/[^/]*$/, '')}/gone`, { gone: 'unavailable', onEvent: () => Promise.reject(new Error('observer bug')) }).send(
      [testEvent({ topic: 't' })],
      signal(),
    );
    expect(held).toMatchObject({ status: 'unavailable', error: { reason: 'gone' } });
  });

  it('does not follow redirects and says to update the URL instead', async () => {
    const { server, seen } = await receiver((_req, res) => res.writeHead(308, { location: 'http://127.0.0.1:1/elsewhere' }).end());
    const [outcome] = await transport(server.url).send([testEvent({ topic: 't' })], signal());
    expect(outcome).toMatchObject({ status: 'unavailable', error: { reason: 'redirect', status: 308 } });
    expect((outcome as { error: Error }).error.message).toMatch(/redirects are not followed, update the endpoint's URL/);
    expect(seen).toHaveLength(1);
  });

  it('gives up on a receiver that never answers after sendTimeoutMs', async () => {
    const { server } = await receiver(() => {});
    const started = Date.now();
    const [outcome] = await transport(server.url, { sendTimeoutMs: 300 }).send([testEvent({ topic: 't' })], signal());
    expect(outcome).toMatchObject({ status: 'unavailable', error: { reason: 'timeout' } });
    expect(Date.now() - started).toBeLessThan(3_000);
  });

  it('sends the credentials of the URL as Basic authentication and keeps them out of errors', async () => {
    const { server, seen } = await receiver((_req, res) => res.writeHead(500).end());
    const url = server.url.replace('http://', 'http://hook-user:s3cr%40t@');
    const t = transport(url);
    const [outcome] = await t.send([testEvent({ topic: 't' })], signal());
    expect(seen[0]!.headers.authorization).toBe(`Basic ${Buffer.from('hook-user:s3cr@t').toString('base64')}`);
    expect(t.url).not.toContain('s3cr');
    expect((outcome as { error: Error }).error.message).not.toContain('s3cr');
  });

  it('signs with every secret still valid, and drops a rotated secret once it expires', async () => {
    const { server, seen } = await receiver((_req, res) => res.writeHead(204).end());
    const next = 'whsec_' + Buffer.alloc(32, 7).toString('base64');
    const expiresAt = new Date(Date.now() + 400);
    const t = transport(server.url, { secrets: [next, { secret, expiresAt }] });
    await t.send([testEvent({ topic: 't' })], signal());
    await new Promise((r) => setTimeout(r, 500));
    await t.send([testEvent({ topic: 't' })], signal());
    expect(String(seen[0]!.headers['webhook-signature']).split(' ')).toHaveLength(2);
    expect(verifyWebhook(seen[0]!.headers, seen[0]!.body, secret).id).toBeTruthy();
    expect(verifyWebhook(seen[0]!.headers, seen[0]!.body, next).id).toBeTruthy();
    expect(String(seen[1]!.headers['webhook-signature']).split(' ')).toHaveLength(1);
    expect(() => verifyWebhook(seen[1]!.headers, seen[1]!.body, secret)).toThrow(/no v1 signature matches/);
  });

  it('fails the send, sending nothing, once every secret has expired, rather than signing with an expired one', async () => {
    const { server, seen } = await receiver((_req, res) => res.writeHead(204).end());
    const expired = new Date(Date.now() - 1_000);
    const t = transport(server.url, { secrets: [{ secret, expiresAt: expired }] });
    const error = await t.send([testEvent({ topic: 't' })], signal()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WebhookSecretsExpiredError);
    expect(error).toMatchObject({ url: server.url, expiredAt: expired });
    expect((error as Error).message).toMatch(/not sent: every signing secret expired .*rotate-secret/);

    // Secrets valid when the transport was made, expired since: the same.
    const expiresAt = new Date(Date.now() + 300);
    const later = transport(server.url, { secrets: [{ secret, expiresAt }] });
    expect(await later.send([testEvent({ topic: 't' })], signal())).toEqual([{ status: 'delivered' }]);
    while (Date.now() <= expiresAt.getTime()) await new Promise((r) => setTimeout(r, expiresAt.getTime() - Date.now() + 1));
    await expect(later.send([testEvent({ topic: 't' })], signal())).rejects.toThrow(WebhookSecretsExpiredError);
    expect(seen).toHaveLength(1);
  });

  it('refuses to send after close() and says so', async () => {
    const { server } = await receiver((_req, res) => res.writeHead(204).end());
    const t = transport(server.url);
    await t.close();
    await expect(t.send([testEvent({ topic: 't' })], signal())).rejects.toThrow(/is closed/);
  });

  it('refuses bad options with a ConfigError naming the option and what to pass', () => {
    const url = 'http://127.0.0.1:1/hooks';
    const refused = (options: object) => {
      try {
        webhookTransport({ url, secrets: [secret], addressPolicy: loopbackOnly, ...options } as never);
      } catch (error) {
        return error;
      }
      return undefined;
    };
    expect(refused({ secrets: [] })).toMatchObject({ name: 'ConfigError', option: 'secrets', message: expect.stringMatching(/at least one signing secret/) });
    expect(refused({ addressPolicy: { allow: ['10.0.0.0/33'] } })).toMatchObject({ name: 'ConfigError', option: 'addressPolicy.allow', message: expect.stringMatching(/"127.0.0.1\/32"/) });
    expect(refused({ addressPolicy: { allow: [7] } })).toMatchObject({ name: 'ConfigError', option: 'addressPolicy.allow' });
    expect(refused({ sendTimeoutMs: 0 })).toMatchObject({ name: 'ConfigError', option: 'sendTimeoutMs' });
    expect(refused({ connectTimeoutMs: '5s' })).toMatchObject({ name: 'ConfigError', option: 'connectTimeoutMs' });
    expect(refused({ gone: 'ignore' })).toMatchObject({ name: 'ConfigError', option: 'gone' });
  });
});

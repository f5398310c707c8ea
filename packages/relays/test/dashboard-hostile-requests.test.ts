import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pgDatabase } from '@tidings/outbox';
import { dashboard, type Dashboard } from '@tidings/relays/dashboard';
import { migrateWebhooks, webhookEndpoints } from '@tidings/relays/webhook';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';
import { testKeyring } from '../../../test/support/secret-key.ts';

let outbox: TestOutbox;
let board: Dashboard;
let server: Server;
let port: number;
/** Every rejection of the handler's promise: mounted as the README shows, each one would be unhandled. */
const rejections: unknown[] = [];

/** Sends a request exactly as given (request target and headers untouched by a client library). */
function send(path: string, headers: Record<string, string> = {}, method = 'GET', body?: string): Promise<{ status: number; body: string; location?: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body, location: res.headers.location }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

beforeAll(async () => {
  outbox = await freshOutbox('dashboard_hostile', { partitions: 1 });
  await migrateWebhooks(outbox.db, { schema: outbox.schema, keyring: testKeyring });
  board = dashboard({ database: outbox.db, schema: outbox.schema, token: 'a-token-of-16-characters' });
  server = createServer((req, res) => {
    board(req, res).catch((error: unknown) => {
      rejections.push(error);
      res.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  await board?.close();
  server?.closeAllConnections();
  server?.close();
  await outbox?.close();
});

describe('the dashboard, before a request has shown its token', () => {
  it('answers a token cookie that is not percent-encoded text with 401, like a wrong token', async () => {
    for (const value of ['%', '%E0%A4%A', '%FF']) {
      const answer = await send('/', { cookie: `other=1; tidings_dashboard=${value}` });
      expect(answer.status).toBe(401);
    }
    // A malformed cookie does not hide a good bearer token.
    expect((await send('/', { cookie: 'tidings_dashboard=%', authorization: 'Bearer a-token-of-16-characters' })).status).toBe(200);
    expect(rejections).toEqual([]);
  });

  it('answers a request target that is no path (//, //[) with 400', async () => {
    for (const target of ['//', '//[', '//:x/']) {
      const answer = await send(target);
      expect(answer.status).toBe(400);
      expect(answer.body).toMatch(/request target/);
    }
    expect(rejections).toEqual([]);
  });
});

describe('the dashboard, signing in with the token in the address', () => {
  it('sends the browser on within the dashboard, never to another host, whatever the path', async () => {
    for (const path of ['/.//evil.example/', '/..//evil.example/x', '/./%2F/evil.example/', '/']) {
      const answer = await send(`${path}?token=a-token-of-16-characters&page=2`);
      expect(answer.status, path).toBe(303);
      expect(answer.location, path).toMatch(/^\/(?!\/)/);
      expect(answer.location, path).not.toContain('token=');
      expect(new URL(answer.location!, 'http://dashboard.test').host, path).toBe('dashboard.test');
    }
    expect(rejections).toEqual([]);
  });
});

describe('the dashboard, asked to act other than by a form POST', () => {
  it('does nothing on a GET that names an action, nor on a POST whose action is in the query and not in a form', async () => {
    const endpoints = webhookEndpoints({ schema: outbox.schema, keyring: testKeyring, addressPolicy: { allow: ['127.0.0.0/8'] } });
    const { id } = await endpoints.create(outbox.db, { url: 'http://127.0.0.1:9/in' });
    const bearer = { authorization: 'Bearer a-token-of-16-characters' };
    const act = `/act?action=disable&id=${id}&confirmed=yes`;
    expect((await send(act, bearer)).status).toBe(404);
    expect((await send(act, bearer, 'HEAD')).status).toBe(404);
    const posted = await send(act, { ...bearer, 'content-type': 'text/plain' }, 'POST');
    expect(posted.status).toBe(400);
    expect(posted.body).toMatch(/expected a form/);
    expect((await endpoints.get(outbox.db, id))?.enabled).toBe(true);
    // The same action as a form does it: the requests above were refused for their form, not their content.
    const form = await send('/act', { ...bearer, 'content-type': 'application/x-www-form-urlencoded' }, 'POST', `action=disable&id=${id}&confirmed=yes`);
    expect(form.status).toBe(303);
    expect((await endpoints.get(outbox.db, id))?.enabled).toBe(false);
    expect(rejections).toEqual([]);
  });
});

describe('the dashboard, when a request fails for a reason no page explains', () => {
  it('answers 500 without the reason and hands the error to onError: its promise never rejects', async () => {
    const errors: Error[] = [];
    const database = pgDatabase('postgres://app:s3cret-pw@127.0.0.1:9/nowhere');
    const unreachable = dashboard({ database, token: 'a-token-of-16-characters', onError: (error) => errors.push(error) });
    const throwing = dashboard({ database: outbox.db, schema: outbox.schema, path: '/hook/', authorize: () => { throw new Error('the session store is down'); }, onError: (error) => errors.push(error) });
    const other = createServer((req, res) => {
      const board = req.url!.startsWith('/hook/') ? throwing : unreachable;
      board(req, res).catch((error: unknown) => {
        rejections.push(error);
        res.destroy();
      });
    });
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    const otherPort = (other.address() as AddressInfo).port;
    try {
      const get = (path: string, headers: Record<string, string> = {}) =>
        fetch(`http://127.0.0.1:${otherPort}${path}`, { headers }).then(async (r) => ({ status: r.status, body: await r.text() }));
      const down = await get('/', { authorization: 'Bearer a-token-of-16-characters' });
      expect(down.status).toBe(500);
      expect(down.body).not.toMatch(/ECONNREFUSED|127\.0\.0\.1|s3cret/);
      const hook = await get('/hook/');
      expect(hook.status).toBe(500);
      expect(hook.body).not.toMatch(/session store/);
      // The charts' sampler of the unreachable dashboard reports its failed readings there too, apart.
      const charts = errors.filter((e) => e.message.startsWith("a reading for the dashboard's charts failed: "));
      expect(errors.filter((e) => !charts.includes(e)).map((e) => e.message)).toEqual([expect.stringMatching(/ECONNREFUSED/), 'the session store is down']);
      await waitUntil("the unreachable dashboard's sampler reported a failed reading", () => errors.some((e) => e.message.startsWith("a reading for the dashboard's charts failed: ")));
      expect(errors.find((e) => e.message.startsWith("a reading for the dashboard's charts failed: "))!.message).toMatch(/ECONNREFUSED/);
      expect(rejections).toEqual([]);
    } finally {
      await Promise.all([unreachable.close(), throwing.close()]);
      other.close();
      await database.close();
    }
  });

  it('refuses an onError that is not a function', () => {
    expect(() => dashboard({ database: outbox.db, onError: 'log' as never })).toThrow('invalid option "onError": expected a function (error) => void');
  });
});


import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { dashboard, type Dashboard } from '@tidings/relays/dashboard';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';

let outbox: TestOutbox;
let board: Dashboard;
let server: Server;
let port: number;
/** Every rejection of the handler's promise: mounted as the README shows, each one would be unhandled. */
const rejections: unknown[] = [];

/** Sends a request exactly as given (request target and headers untouched by a client library). */
function send(path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

beforeAll(async () => {
  outbox = await freshOutbox('dashboard_hostile', { partitions: 1 });
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

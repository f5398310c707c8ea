import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createSecureServer, type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium, type Browser } from '../../../test/support/feed-browser.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';
import { waitUntil } from '../../../test/support/check.ts';

// Three EventSources and a long poll from one page: over HTTP/1.1 each would need a connection of its own.
const page = `<!doctype html><meta charset="utf-8"><title>feed</title><script>
  window.received = { a: [], b: [], c: [] }; window.polled = null;
  for (const name of ['a', 'b', 'c']) {
    const source = new EventSource('/events?after=start&topics=h2browser.' + name);
    source.addEventListener('h2browser.' + name, (e) => window.received[name].push(JSON.parse(e.data).eventId));
  }
  fetch('/feed?after=start&wait=20&topics=h2browser.poll').then((r) => r.json()).then((body) => (window.polled = body.events.map((e) => e.eventId)));
  window.protocol = () => performance.getEntriesByType('navigation')[0].nextHopProtocol;
</script>`;

let feed: FeedServer;
let server: Http2SecureServer;
let browser: Browser;
let origin: string;
const sessions = new Set<ServerHttp2Session>();
/** The HTTP version and session of every feed request. */
const requests: { path: string; version: string; session: unknown }[] = [];

beforeAll(async () => {
  feed = await startFeedServer('http2_browser');
  // A certificate of the test's own for 127.0.0.1; Chromium is told to accept it.
  const dir = mkdtempSync(join(tmpdir(), 'tidings-h2-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    server = createSecureServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (request, response) => {
      const path = request.url.split('?')[0];
      if (path === '/') return void response.writeHead(200, { 'content-type': 'text/html' }).end(page);
      if (path !== '/events' && path !== '/feed') return void response.writeHead(404).end();
      requests.push({ path, version: request.httpVersion, session: request.stream.session });
      (path === '/events' ? feed.sse : feed.polling).handle(request, response);
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  server.on('session', (session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await launchChromium(['--ignore-certificate-errors']);
});
afterAll(async () => {
  await browser?.close();
  for (const session of sessions) session.destroy();
  await new Promise<void>((resolve) => server?.close(() => resolve()));
  await feed?.close();
});

describe('Chromium over HTTP/2 with TLS', () => {
  it('follows three SSE streams and a long poll of one page on one HTTP/2 connection', async () => {
    const published = await feed.publish(['a', 'b', 'c', 'poll', 'a', 'b', 'c'].map((name, n) => ({ topic: `h2browser.${name}`, payload: n })));
    const tab = await browser.open(`${origin}/`);
    await waitUntil('every stream received its events', async () => {
      const received = await tab.evaluate<Record<string, string[]>>('window.received');
      return Object.values(received).every((ids) => ids.length === 2);
    });
    const received = await tab.evaluate<Record<string, string[]>>('window.received');
    for (const name of ['a', 'b', 'c']) expect(received[name]).toEqual(published.filter((e) => e.topic === `h2browser.${name}`).map((e) => e.eventId));
    await waitUntil('the long poll answered', () => tab.evaluate<string[] | null>('window.polled'));
    expect(await tab.evaluate<string[]>('window.polled')).toEqual(published.filter((e) => e.topic === 'h2browser.poll').map((e) => e.eventId));
    expect(await tab.evaluate<string>('window.protocol()')).toBe('h2');
    expect(requests.map((r) => r.version)).toEqual(['2.0', '2.0', '2.0', '2.0']);
    expect(new Set(requests.map((r) => r.session)).size).toBe(1);
  });
});

import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRelay, delivered, failed, publish, type OutboxEvent, type Relay, type Transport } from '@tidings/outbox';
import { dashboard, type Dashboard } from '@tidings/relays/dashboard';
import { migrateWebhooks, startWebhookDispatcher, verifyWebhook, webhookEndpoints, type WebhookDispatcher } from '@tidings/relays/webhook';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { launchChromium, type Browser, type BrowserPage } from '../../../test/support/feed-browser.ts';
import { testKeyring } from '../../../test/support/secret-key.ts';

/** A destination that holds every send until `release()`, then acknowledges them all. */
function heldTransport(): Transport & { release(): void; received: string[] } {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const received: string[] = [];
  return {
    name: 'held',
    capabilities: { orderedPerKey: true, persistent: true },
    received,
    release,
    async send(batch: readonly OutboxEvent[]) {
      await gate;
      received.push(...batch.map((e) => e.eventId));
      return batch.map(() => delivered);
    },
    async close() {},
  };
}

/** A destination that refuses poisoned events for good until it is told to accept them. */
function refusingTransport(): Transport & { accept: boolean; received: string[] } {
  const transport = {
    name: 'refusing',
    capabilities: { orderedPerKey: true, persistent: true },
    accept: false,
    received: [] as string[],
    async send(batch: readonly OutboxEvent[]) {
      return batch.map((e) => {
        if (!transport.accept && (e.payload as { poison?: boolean }).poison) return failed(new Error('receiver said 422: <b>bad</b> order'));
        transport.received.push(e.eventId);
        return delivered;
      });
    },
    async close() {},
  };
  return transport;
}

const hostile = '<script>window.pwned = true</script>';

let outbox: TestOutbox;
let browser: Browser;
let board: Dashboard;
let server: Server;
let origin: string;
const relays: Relay[] = [];
const held = heldTransport();
const refusing = refusingTransport();
let endpointId: string;
let poison: string;

async function listen(handler: Dashboard): Promise<{ server: Server; origin: string }> {
  const s = createServer((req, res) => void handler(req, res));
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return { server: s, origin: `http://127.0.0.1:${(s.address() as AddressInfo).port}` };
}

async function open(path: string): Promise<BrowserPage> {
  const tab = await browser.open(`${origin}${path}`);
  await waitUntil(`the page ${path} loaded`, () => tab.evaluate<boolean>(`document.readyState === 'complete' && location.pathname !== 'blank' && !!document.querySelector('main')`));
  return tab;
}

beforeAll(async () => {
  outbox = await freshOutbox('dashboard', { partitions: 2 });
  const { schema, db } = outbox;
  await migrateWebhooks(db, { schema, keyring: testKeyring });
  endpointId = (await webhookEndpoints({ schema, keyring: testKeyring, addressPolicy: { allow: ['127.0.0.0/8'] } }).create(db, { url: 'http://hook:pa55word@127.0.0.1:9/in', topics: ['orders.*'] })).id;
  relays.push(
    createRelay({ name: 'orders', database: db, schema, transport: held, pollIntervalMs: 50 }),
    createRelay({ name: 'billing', database: db, schema, transport: refusing, pollIntervalMs: 50, retry: { retries: 0 }, onFailure: 'park' }),
  );
  await Promise.all(relays.map((r) => r.start()));
  board = dashboard({ database: db, schema, refreshMs: 250, sampleMs: 250, keyring: testKeyring, label: 'postgres://app:s3cret-pw@db.internal/orders' });
  ({ server, origin } = await listen(board));
  browser = await launchChromium();
});

afterAll(async () => {
  held.release();
  await browser?.close();
  await board?.close();
  server?.closeAllConnections();
  server?.close();
  await Promise.all(relays.map((r) => r.stop()));
  await outbox?.close();
});

describe('the dashboard in a browser', () => {
  it('shows a relay lag falling live as its events are delivered, and a dead letter hostile payload as text', async () => {
    await waitUntil('both relays have their cursors', async () => (await outbox.db.query(`SELECT DISTINCT relay FROM "${outbox.schema}".relay_partitions WHERE relay IN ('orders', 'billing')`)).rowCount === 2);
    const tab = await open(`/?token=${board.token}`);
    expect(await tab.evaluate<string>('location.search')).toBe(''); // the token left the address bar
    await tab.evaluate('window.samePage = true');
    await inTransaction(outbox.pool, (trx) =>
      publish(trx, [1, 2, 3, 4, 5].map((n) => ({ topic: 'orders.created', key: `order-${n}`, payload: { n } })), { schema: outbox.schema }),
    );
    const lagOf = (relay: string) => tab.evaluate<string | null>(`document.querySelector('tr[data-relay="${relay}"]')?.cells[2].textContent ?? null`);
    await waitUntil('the page shows the orders relay 5 events behind', async () => (await lagOf('orders')) === '5');
    const relayTab = await open('/relay?name=orders');
    const partitionLags = () => relayTab.evaluate<number[]>(`[...document.querySelectorAll('tr[data-partition]')].map((row) => Number(row.cells[2].textContent))`);
    expect((await partitionLags()).reduce((a, b) => a + b, 0)).toBe(5);
    // The lag chart: all relays together at 10 (orders' 5, and the same 5 for the endpoint no
    // dispatcher serves), sampled by the handler every 250 ms and drawn live. (A sample taken
    // before billing delivered its copies saw up to 15.)
    const chart = (name: string, selector: string) => tab.evaluate<string>(`document.querySelector('figure[data-chart="${name}"] ${selector}').textContent`);
    await waitUntil('the lag chart drew 10 events behind', async () => (await chart('lag', '[data-chart-summary]')).startsWith('Latest: 10 events behind.'));
    held.release();
    await waitUntil('the page shows the orders relay caught up, without a reload', async () => (await lagOf('orders')) === '0', 30_000);
    await waitUntil("the relay's page shows every partition caught up", async () =>
      (await relayTab.evaluate<string>(`document.getElementById('summary').textContent`)).startsWith('caught up') && (await partitionLags()).every((lag) => lag === 0),
    );
    expect(await tab.evaluate<boolean>('window.samePage')).toBe(true);
    // Caught up, the lag chart's last point is the endpoint's 5, halfway up; the throughput chart
    // shows the events published and delivered meanwhile, in its lines and in words.
    await waitUntil('the lag chart drew the caught-up reading', async () => (await chart('lag', '[data-chart-summary]')).startsWith('Latest: 5 events behind.'));
    const top = Number((await chart('lag', '[data-chart-max]')).split(' ')[0]);
    expect(top).toBeGreaterThanOrEqual(10);
    expect(top).toBeLessThanOrEqual(15);
    expect(await chart('lag', '[data-chart-summary]')).toBe(`Latest: 5 events behind. Highest in the hour: ${top} events behind.`);
    const y = (110 - (5 / top) * 100).toFixed(1);
    expect(await tab.evaluate<string>(`document.querySelector('figure[data-chart="lag"] polyline').getAttribute('points')`)).toMatch(new RegExp(`,${y.replace('.', '\\.')}$`));
    const highest = async () => {
      const words = /Highest in the hour: (\d+\.\d)\/s published, (\d+\.\d)\/s delivered\.$/.exec(await chart('throughput', '[data-chart-summary]'));
      return words ? { published: Number(words[1]), delivered: Number(words[2]) } : undefined;
    };
    await waitUntil('the throughput chart shows events published and delivered', async () => {
      const seen = await highest();
      return seen !== undefined && seen.published > 0 && seen.delivered > 0;
    });
    expect(await tab.evaluate<boolean>(`[...document.querySelectorAll('figure[data-chart] polyline')].every((line) => line.getAttribute('points').split(' ').length >= 2)`)).toBe(true);
    expect(await tab.evaluate<string[]>(`[...document.querySelectorAll('figure[data-chart] svg')].map((svg) => svg.getAttribute('role') + ' ' + document.getElementById(svg.getAttribute('aria-labelledby')).textContent.split(':')[0])`)).toEqual([
      'img Throughput over the last hour, events per second',
      'img Lag over the last hour',
    ]);
    expect(await tab.evaluate<string>(`document.querySelector('tr[data-relay="orders"]').cells[1].textContent`)).toBe('caught up');
    expect(await tab.evaluate<string>(`document.getElementById('summary').getAttribute('aria-live')`)).toBe('polite');
    expect(held.received).toHaveLength(5);
    poison = (
      await inTransaction(outbox.pool, (trx) =>
        publish(trx, { topic: 'billing.charged', key: 'customer-1', payload: { poison: true, note: hostile }, headers: { 'x-note': '<img src=x onerror="window.pwned=true">' } }, { schema: outbox.schema }),
      )
    )[0]!.eventId;
    await waitUntil('billing has its dead letter', async () => (await outbox.db.query(`SELECT 1 FROM "${outbox.schema}".dead_letters`)).rowCount === 1);
    await waitUntil('the page shows the dead letter of billing, live', () => tab.evaluate<boolean>(`document.querySelector('tr[data-relay="billing"]').cells[4].textContent === '1'`));
    const html = await tab.evaluate<string>('document.documentElement.outerHTML');
    expect(html).not.toContain('s3cret-pw');
    expect(html).toContain('postgres://app:***@db.internal/orders');
    // The README's screenshot: taken on every run (so the page is known to render), written into
    // docs/ only when asked, so that running the tests leaves the checkout as it was.
    const screenshot = await tab.screenshot();
    expect(screenshot.subarray(1, 4).toString()).toBe('PNG');
    if (process.env.TIDINGS_UPDATE_SCREENSHOT === '1') await writeFile(new URL('../../../docs/dashboard.png', import.meta.url), screenshot);
  });

  it('shows a dead letter with its payload, headers and errors as text, and retries it from the page with the keyboard', async () => {
    const tab = await open('/dead-letters');
    const text = (selector: string) => tab.evaluate<string>(`document.querySelector(${JSON.stringify(selector)}).textContent`);
    expect(await text('pre.payload')).toContain(hostile);
    expect(await text('article.letter')).toContain('<img src=x onerror="window.pwned=true">');
    expect(await text('article.letter')).toContain('receiver said 422: <b>bad</b> order');
    expect(await tab.evaluate('window.pwned === undefined && document.querySelectorAll("article script, article img, article b").length === 0')).toBe(true);
    expect(await tab.evaluate<string>('document.querySelector("table th[scope]") !== null')).toBe(true);
    refusing.accept = true;
    await tab.evaluate(`document.querySelector('button[aria-label^="Retry dead letter"]').click()`);
    await waitUntil('the confirmation page is shown with its button focused', () =>
      tab.evaluate<boolean>(`document.querySelector('h1')?.textContent === 'Confirm' && document.activeElement?.textContent === 'Yes, retry'`),
    );
    await tab.press('Enter');
    await waitUntil('the page says the dead letter was queued', () => tab.evaluate<boolean>(`document.querySelector('.notice')?.textContent === 'Queued 1 dead letter for another delivery.'`));
    await waitUntil('the dead letter was delivered', async () => (await outbox.db.query(`SELECT 1 FROM "${outbox.schema}".dead_letters`)).rowCount === 0 && refusing.received.includes(poison), 30_000);
  });

  it('disables a webhook endpoint from the page', async () => {
    const tab = await open('/endpoints');
    expect(await tab.evaluate<string>(`document.querySelector('tr[data-endpoint] td').textContent`)).toBe('http://***:***@127.0.0.1:9/in');
    await tab.evaluate(`document.querySelector('button[aria-label="Disable endpoint ${endpointId}"]').click()`);
    await waitUntil('the confirmation page is shown', () => tab.evaluate<boolean>(`document.activeElement?.textContent === 'Yes, disable'`));
    await tab.evaluate(`document.activeElement.click()`);
    await waitUntil('the page says the endpoint was disabled', () => tab.evaluate<boolean>(`document.querySelector('.notice')?.textContent.startsWith('Endpoint disabled') === true`));
    const endpoint = await webhookEndpoints({ schema: outbox.schema }).get(outbox.db, endpointId);
    expect(endpoint?.enabled).toBe(false);
    expect(endpoint?.disabled?.detail).toBe('disabled from the dashboard');
    expect(await tab.evaluate<string>(`document.querySelector('tr[data-endpoint] [data-field="state"]').textContent`)).toContain('disabled');
  });
});

describe('rotating a webhook signing secret from the endpoints page', () => {
  const requests: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
  const receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk.toString('utf8')));
    req.on('end', () => {
      requests.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  const registry = () => webhookEndpoints({ schema: outbox.schema, keyring: testKeyring, addressPolicy: { allow: ['127.0.0.0/8'] } });
  let dispatcher: WebhookDispatcher;
  const started: string[] = [];
  let hook: { id: string; secret: string };

  beforeAll(async () => {
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    hook = await registry().create(outbox.db, { url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`, topics: ['hooks.*'] });
    dispatcher = await startWebhookDispatcher({
      database: outbox.db,
      schema: outbox.schema,
      keyring: testKeyring,
      addressPolicy: { allow: ['127.0.0.0/8'] },
      relay: { pollIntervalMs: 50 },
      onEvent: (event) => {
        if (event.type === 'endpoint-started' && event.endpointId === hook.id) started.push(event.endpointId);
      },
    });
    await waitUntil('the dispatcher relays the endpoint', async () => started.length > 0);
  });

  afterAll(async () => {
    await dispatcher?.stop();
    receiver.closeAllConnections();
    receiver.close();
  });

  /** Rotates from the page with the grace period chosen; returns the secret shown and the confirmation's form as it was sent. */
  async function rotateFromPage(graceMs: number): Promise<{ secret: string; form: string; tab: BrowserPage }> {
    const tab = await open('/endpoints');
    await tab.evaluate(`document.querySelector('button[aria-label="Rotate the signing secret of endpoint ${hook.id}"]').click()`);
    await waitUntil('the confirmation page is shown with its button focused', () => tab.evaluate<boolean>(`document.activeElement?.textContent === 'Yes, rotate'`));
    expect(await tab.evaluate<string>(`document.querySelector('#grace option:checked').textContent`)).toBe('24 hours (the default)');
    expect(await tab.evaluate<string[]>(`[...document.querySelectorAll('#grace option')].map((o) => o.value)`)).toEqual(['0', '3600000', '86400000', '604800000']);
    const form = await tab.evaluate<string>(`(() => {
      document.getElementById('grace').value = '${graceMs}';
      const sent = new URLSearchParams(new FormData(document.querySelector('main form'))).toString();
      document.activeElement.click();
      return sent;
    })()`);
    await waitUntil('the new secret is shown', () => tab.evaluate<boolean>(`document.querySelector('[data-secret]') !== null`));
    return { secret: await tab.evaluate<string>(`document.querySelector('[data-secret]').textContent`), form, tab };
  }

  /** The first webhook the receiver gets for an event published after the dispatcher picked up the rotation. */
  async function deliveryAfterRotation(restartsBefore: number): Promise<{ headers: IncomingHttpHeaders; body: string }> {
    await dispatcher.refresh();
    await waitUntil('the dispatcher restarted the endpoint with its new secrets', async () => started.length > restartsBefore);
    const [event] = await inTransaction(outbox.pool, (trx) => publish(trx, { topic: 'hooks.rotated', payload: { at: Date.now() } }, { schema: outbox.schema }));
    await waitUntil('the receiver got the webhook', async () => requests.some((r) => r.headers['webhook-id'] === event!.eventId), 30_000);
    return requests.find((r) => r.headers['webhook-id'] === event!.eventId)!;
  }

  it('shows the new secret once; webhooks verify with it, and with the old one during the grace period; resubmitting answers 409', async () => {
    const restarts = started.length;
    const { secret, form, tab } = await rotateFromPage(3_600_000);
    expect(secret).toMatch(/^whsec_/);
    expect(secret).not.toBe(hook.secret);
    expect(await tab.evaluate<string>(`document.querySelector('main').textContent`)).toMatch(/previous secret keeps signing until .* UTC/);
    const webhook = await deliveryAfterRotation(restarts);
    expect(verifyWebhook(webhook.headers, webhook.body, secret).id).toBe(webhook.headers['webhook-id']);
    expect(verifyWebhook(webhook.headers, webhook.body, hook.secret).id).toBe(webhook.headers['webhook-id']); // within the hour of grace
    // The browser's back button and "resubmit": the same confirmation once more.
    const again = await tab.evaluate<{ status: number; text: string }>(
      `fetch(${JSON.stringify(`${origin}/act`)}, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: ${JSON.stringify(form)} }).then(async (r) => ({ status: r.status, text: await r.text() }))`,
    );
    expect(again.status).toBe(409);
    expect(again.text).toContain('This confirmation was used already');
    expect(again.text).not.toContain('whsec_');
    expect((await registry().secrets(outbox.db, hook.id)).map((s) => s.secret)).toEqual([secret, hook.secret]);
    const listing = await (await fetch(`${origin}/endpoints`, { headers: { authorization: `Bearer ${board.token}` } })).text();
    expect(listing).not.toContain(secret);
    expect(listing).not.toContain(hook.secret);
    hook = { ...hook, secret };
  });

  it('revokes the old secret at once when "none" is chosen', async () => {
    const restarts = started.length;
    const { secret } = await rotateFromPage(0);
    const webhook = await deliveryAfterRotation(restarts);
    expect(verifyWebhook(webhook.headers, webhook.body, secret).id).toBe(webhook.headers['webhook-id']);
    expect(() => verifyWebhook(webhook.headers, webhook.body, hook.secret)).toThrow(/no v1 signature matches/);
    expect(webhook.headers['webhook-signature']!.toString().split(' ')).toHaveLength(1);
  });

  it('serves the secret with Cache-Control: no-store, refuses a grace period it did not offer, and rotates once for a confirmation sent twice at once', async () => {
    const post = (body: string) =>
      fetch(`${origin}/act`, { method: 'POST', headers: { authorization: `Bearer ${board.token}`, 'content-type': 'application/x-www-form-urlencoded' }, body });
    const confirmation = await (await post(`action=rotate-secret&id=${hook.id}`)).text();
    const version = /name="version" value="(\d+)"/.exec(confirmation)![1];
    expect((await post(`action=rotate-secret&id=${hook.id}&confirmed=yes&version=${version}&grace=5`)).status).toBe(400);
    const answer = await post(`action=rotate-secret&id=${hook.id}&confirmed=yes&version=${version}&grace=0`);
    expect(answer.status).toBe(200);
    expect(answer.headers.get('cache-control')).toBe('no-store');
    const [current] = await registry().secrets(outbox.db, hook.id);
    expect(await answer.text()).toContain(current!.secret);
    // The same confirmation sent twice at once: the row lock lets one rotate, the other finds it done.
    const next = /name="version" value="(\d+)"/.exec(await (await post(`action=rotate-secret&id=${hook.id}`)).text())![1];
    const both = await Promise.all([1, 2].map(() => post(`action=rotate-secret&id=${hook.id}&confirmed=yes&version=${next}&grace=0`)));
    expect(both.map((r) => r.status).sort()).toEqual([200, 409]);
    expect(await registry().secrets(outbox.db, hook.id)).toHaveLength(1);
  });
});

describe('access to the dashboard', () => {
  const form = 'action=discard&id=1&confirmed=yes';
  const post = (headers: Record<string, string>) =>
    fetch(`${origin}/act`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body: form });

  it('answers 401 without the token, and with a wrong one', async () => {
    expect((await fetch(`${origin}/`)).status).toBe(401);
    expect((await fetch(`${origin}/?token=wrong`)).status).toBe(401);
    expect((await fetch(`${origin}/live`, { headers: { authorization: 'Bearer wrong' } })).status).toBe(401);
    expect((await fetch(`${origin}/`, { headers: { authorization: `Bearer ${board.token}` } })).status).toBe(200);
  });

  it('sets the token cookie HttpOnly and SameSite=Strict, and refuses an action without proof of its origin', async () => {
    const signIn = await fetch(`${origin}/?token=${board.token}`, { redirect: 'manual' });
    expect(signIn.status).toBe(303);
    const cookie = signIn.headers.get('set-cookie')!;
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    const jar = cookie.split(';')[0]!;
    expect((await post({ cookie: jar })).status).toBe(403);
    expect((await post({ cookie: jar, origin: 'http://evil.example' })).status).toBe(403);
    const sameSite = await post({ cookie: jar, origin });
    expect(sameSite.status).toBe(404); // passed the check; dead letter 1 is gone
  });

  it('says what is wrong, on the page, when the schema was never migrated', async () => {
    const elsewhere = dashboard({ database: outbox.db, schema: 'never_migrated_here', token: 'a-token-of-16-characters' });
    const { server: s, origin: o } = await listen(elsewhere);
    try {
      const answer = await fetch(`${o}/`, { headers: { authorization: 'Bearer a-token-of-16-characters' } });
      expect(answer.status).toBe(409);
      expect(await answer.text()).toMatch(/never_migrated_here[\s\S]*migrate/);
    } finally {
      await elsewhere.close();
      s.close();
    }
  });

  it('refuses to rotate a secret, saying why, when it has no key to encrypt secrets with', async () => {
    const fromEnv = process.env.TIDINGS_SECRET_KEY;
    delete process.env.TIDINGS_SECRET_KEY;
    const keyless = dashboard({ database: outbox.db, schema: outbox.schema, token: 'a-token-of-16-characters' });
    const { server: s, origin: o } = await listen(keyless);
    try {
      const answer = await fetch(`${o}/act`, {
        method: 'POST',
        headers: { authorization: 'Bearer a-token-of-16-characters', 'content-type': 'application/x-www-form-urlencoded' },
        body: `action=rotate-secret&id=${endpointId}`,
      });
      expect(answer.status).toBe(409);
      const text = await answer.text();
      expect(text).toContain('cannot rotate a webhook signing secret from the dashboard: webhook signing secrets are stored encrypted, and no key is set');
      expect(text).toContain('pass `keyring`');
      expect(text).not.toContain('name="confirmed"');
    } finally {
      if (fromEnv !== undefined) process.env.TIDINGS_SECRET_KEY = fromEnv;
      await keyless.close();
      s.close();
    }
  });

  it('refuses bad options before serving anything', () => {
    expect(() => dashboard({ database: outbox.db, path: 'ops' })).toThrow('invalid option "path": must start and end with "/", got "ops"');
    expect(() => dashboard({ database: outbox.db, token: 'short' })).toThrow('invalid option "token"');
    expect(() => dashboard({ database: outbox.db, refreshMs: 10 })).toThrow('invalid option "refreshMs"');
    expect(() => dashboard({ database: outbox.db, sampleMs: 10 })).toThrow('invalid option "sampleMs"');
    expect(() => dashboard({ database: outbox.db, keyring: 'a key' as never })).toThrow('invalid option "keyring"');
  });

  it('lets authorize hide and refuse actions to a reader', async () => {
    const readOnly = dashboard({ database: outbox.db, schema: outbox.schema, path: '/ops/', authorize: (_request, action) => action === 'read' });
    const { server: s, origin: o } = await listen(readOnly);
    try {
      expect(readOnly.token).toBeUndefined();
      const page = await (await fetch(`${o}/ops/endpoints`)).text();
      expect(page).toContain(endpointId);
      expect(page).not.toContain('name="action"');
      const refused = await fetch(`${o}/ops/act`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: o }, body: `action=enable&id=${endpointId}&confirmed=yes` });
      expect(refused.status).toBe(403);
      expect((await webhookEndpoints({ schema: outbox.schema }).get(outbox.db, endpointId))?.enabled).toBe(false);
      const secretsBefore = await webhookEndpoints({ schema: outbox.schema, keyring: testKeyring }).secrets(outbox.db, endpointId);
      const rotation = await fetch(`${o}/ops/act`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: o }, body: `action=rotate-secret&id=${endpointId}&confirmed=yes&grace=0&version=1` });
      expect(rotation.status).toBe(403);
      expect(await webhookEndpoints({ schema: outbox.schema, keyring: testKeyring }).secrets(outbox.db, endpointId)).toEqual(secretsBefore);
      expect((await fetch(`${o}/elsewhere`)).status).toBe(404);
      const live = await fetch(`${o}/ops/live`);
      expect(live.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const reader = live.body!.getReader();
      await reader.read(); // the retry hint
      await readOnly.close();
      await waitUntil('close() ended the live stream', async () => (await reader.read()).done);
    } finally {
      await readOnly.close();
      s.close();
    }
  });
});

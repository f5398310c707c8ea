import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { migrateInbox } from '@tidings/inbox';
import { migrate, type Database } from '@tidings/outbox';
import { generateSecretKey, migrateWebhooks, secretKeyring, secretKeyringFromEnv, startWebhookDispatcher, webhookEndpoints } from '../../webhook/index.ts';
import { parseFlags, wholeNumber } from '../args.ts';
import { openDatabase } from '../database.ts';
import { Destinations } from '../demo/destinations.ts';
import { placeOrder, type OrderLedger } from '../demo/orders.ts';

export const help = `tidings demo: watch the promise hold, on the embedded database, in one process

An order service writes orders and their events in transactions (some roll back). A relay delivers
the events as signed webhooks to a receiver with an inbox, and an SSE feed streams them to a
consumer that stores its cursor with its effects. Along the way the receiver goes down for a while,
a webhook is delivered twice, and the SSE consumer is stopped and restarted.

  --events N        orders to place (default: 200)
  --duration SECS   how long to spend placing them (default: 10)

Uses PGlite in memory, or PostgreSQL when DATABASE_URL is set (in a schema of its own, dropped at
the end). Exits 0 when every committed event was applied exactly once at both destinations and no
rolled-back event was seen; 1 otherwise.`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseFlags('demo', args, { events: { type: 'string' }, duration: { type: 'string' }, help: { type: 'boolean', short: 'h' } });
  if (values.help) {
    console.log(help);
    return 0;
  }
  const total = wholeNumber('events', values.events) ?? 200;
  const seconds = wholeNumber('duration', values.duration) ?? 10;
  const say = (line: string): void => console.log(line);
  const url = process.env.DATABASE_URL;
  say(url ? 'tidings demo on PostgreSQL (DATABASE_URL)' : 'tidings demo on its embedded database (PGlite, in memory); starting it takes a few seconds…');
  const { db, close } = await openDatabase(url, 'memory://');
  // On a server, schemas of the demo's own (dropped at the end); in memory, plain names.
  const suffix = url ? `_${randomBytes(3).toString('hex')}` : '';
  const schema = `tidings_demo${suffix}`;
  const shop = `shop_demo${suffix}`;
  try {
    return await runDemo(db, schema, shop, total, seconds, say);
  } finally {
    for (const name of [schema, shop]) await db.query(`DROP SCHEMA IF EXISTS "${name}" CASCADE`).catch(() => {});
    await close();
  }
}

async function runDemo(db: Database, schema: string, shop: string, total: number, seconds: number, say: (line: string) => void): Promise<number> {
  await migrate(db, { schema, partitions: 4 });
  await migrateInbox(db, { schema });
  await migrateWebhooks(db, { schema });
  for (const statement of [
    `CREATE SCHEMA IF NOT EXISTS ${shop}`,
    `CREATE TABLE IF NOT EXISTS ${shop}.orders (id text PRIMARY KEY, customer text NOT NULL, total int NOT NULL)`,
    // No unique keys: a duplicate applied would be a second row, and the summary would count it.
    `CREATE TABLE IF NOT EXISTS ${shop}.shipments (event_id text NOT NULL, order_id text NOT NULL)`,
    `CREATE TABLE IF NOT EXISTS ${shop}.feed_log (event_id text NOT NULL, order_id text NOT NULL)`,
  ]) {
    await db.query(statement);
  }

  const destinations = new Destinations(db, schema, shop);
  await destinations.start();
  // The demo's endpoint lives as long as its schema: a key of its own is enough when none is set.
  const keyring = secretKeyringFromEnv() ?? secretKeyring({ current: generateSecretKey() });
  const endpoints = webhookEndpoints({ schema, addressPolicy: { allow: ['127.0.0.1/32'] }, keyring });
  const endpoint = await endpoints.create(db, { url: `http://127.0.0.1:${destinations.port}/webhooks`, topics: ['orders.*'], description: 'demo receiver' });
  destinations.receiveWebhooks(endpoint.secret);
  const dispatcher = await startWebhookDispatcher({
    database: db,
    schema,
    addressPolicy: { allow: ['127.0.0.1/32'] },
    keyring,
    retry: { retries: 1_000, minDelayMs: 100, maxDelayMs: 1_000, factor: 2 },
    relay: { pollIntervalMs: 250 },
  });
  destinations.startFeedConsumer();
  say(`webhook endpoint ${endpoint.id} → http://127.0.0.1:${destinations.port}/webhooks; SSE feed at /events\n`);

  const ledger: OrderLedger = { committed: new Set(), rolledBack: new Set() };
  const line = progressLine(db, shop, ledger, destinations);
  const timeline = faultTimeline(total, destinations, say);
  const started = Date.now();
  try {
    for (let n = 1; n <= total; n++) {
      await placeOrder(db, schema, shop, n, ledger);
      await timeline.step(n);
      line.maybe();
      const due = started + (seconds * 1000 * n) / total;
      if (due > Date.now()) await sleep(due - Date.now());
    }
    say(`\nall ${total} orders placed; waiting for every destination to catch up…`);
    const deadline = Date.now() + 60_000;
    await timeline.finish(deadline);
    while (Date.now() < deadline) {
      const applied = await appliedCounts(db, shop);
      line.maybe();
      if (applied.webhook >= ledger.committed.size && applied.feed >= ledger.committed.size) break;
      await sleep(250);
    }
  } finally {
    line.done();
    await dispatcher.stop();
    await destinations.close();
  }
  return summarize(db, shop, ledger, destinations, say);
}

/**
 * When the faults happen, by order number. The duplicate delivery needs a delivery to repeat: when
 * none has arrived yet at its turn (a slow machine, the relay still backing off after the outage),
 * it is tried again after every order, and `finish()` waits for the first delivery.
 */
function faultTimeline(total: number, destinations: Destinations, say: (line: string) => void) {
  const at = (share: number) => Math.max(1, Math.round(total * share));
  let duplicatePending = false;
  const duplicate = async (): Promise<void> => {
    duplicatePending = !(await destinations.redeliverLast());
    if (!duplicatePending) say('\n⚡ a webhook is delivered twice (the same signed request again)');
  };
  return {
    async step(n: number): Promise<void> {
      if (n === at(0.2)) {
        destinations.down = true;
        say('\n⚡ the webhook receiver goes down (answers 503)');
      }
      if (n === at(0.45)) {
        destinations.down = false;
        say('\n⚡ the webhook receiver is back; the relay retries what it refused');
      }
      if (n === at(0.55) || duplicatePending) await duplicate();
      if (n === at(0.65)) {
        await destinations.stopFeedConsumer();
        say('\n⚡ the SSE consumer stops…');
      }
      if (n === at(0.75)) {
        destinations.startFeedConsumer();
        say('\n⚡ …and restarts, resuming from the cursor it committed with its last effect');
      }
    },
    async finish(deadline: number): Promise<void> {
      while (duplicatePending && Date.now() < deadline) {
        await sleep(100);
        await duplicate();
      }
    },
  };
}

async function appliedCounts(db: Database, shop: string): Promise<{ webhook: number; feed: number }> {
  const { rows } = await db.query<{ webhook: number; feed: number }>(
    `SELECT (SELECT count(DISTINCT event_id) FROM ${shop}.shipments)::int AS webhook,
            (SELECT count(DISTINCT event_id) FROM ${shop}.feed_log)::int AS feed`,
  );
  return rows[0]!;
}

function progressLine(db: Database, shop: string, ledger: OrderLedger, destinations: Destinations) {
  const tty = process.stdout.isTTY === true;
  let last = 0;
  let busy = false;
  const draw = async (): Promise<void> => {
    const applied = await appliedCounts(db, shop);
    const text =
      `committed ${ledger.committed.size}  rolled back ${ledger.rolledBack.size}  │  ` +
      `webhook applied ${applied.webhook} (refused while down ${destinations.counts.refused})  │  SSE applied ${applied.feed}`;
    process.stdout.write(tty ? `\r${text}\u001b[K` : `${text}\n`);
  };
  return {
    maybe() {
      const now = Date.now();
      if (busy || now - last < (tty ? 200 : 2_000)) return;
      last = now;
      busy = true;
      void draw().finally(() => (busy = false));
    },
    done() {
      if (tty) process.stdout.write('\n');
    },
  };
}

async function summarize(db: Database, shop: string, ledger: OrderLedger, destinations: Destinations, say: (line: string) => void): Promise<number> {
  const read = async (table: string) => (await db.query<{ event_id: string }>(`SELECT event_id FROM ${shop}.${table}`)).rows.map((r) => r.event_id);
  const check = (rows: string[]) => {
    const distinct = new Set(rows);
    return {
      delivered: distinct.size,
      missing: [...ledger.committed].filter((id) => !distinct.has(id)).length,
      rolledBackSeen: rows.filter((id) => ledger.rolledBack.has(id)).length,
      duplicatesApplied: rows.length - distinct.size,
    };
  };
  const webhook = check(await read('shipments'));
  const feed = check(await read('feed_log'));
  const held = [webhook, feed].every((d) => d.missing === 0 && d.rolledBackSeen === 0 && d.duplicatesApplied === 0);
  say('');
  say('summary');
  say(`  events committed           ${ledger.committed.size}`);
  say(`  events rolled back         ${ledger.rolledBack.size}   (never to be seen anywhere)`);
  say(`  webhook: applied ${webhook.delivered}, missing ${webhook.missing}, rolled-back seen ${webhook.rolledBackSeen}`);
  say(`           refused while down ${destinations.counts.refused}, duplicates received ${destinations.counts.duplicateReceipts}, duplicates applied ${webhook.duplicatesApplied}`);
  say(`  SSE:     applied ${feed.delivered}, missing ${feed.missing}, rolled-back seen ${feed.rolledBackSeen}, duplicates applied ${feed.duplicatesApplied}`);
  say('');
  say(held ? '✓ the promise held: every committed event applied exactly once at both destinations; nothing rolled back was seen' : '✗ the promise did NOT hold (see above)');
  return held ? 0 : 1;
}

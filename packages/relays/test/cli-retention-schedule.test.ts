import { publish } from '@tidings/outbox';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { startTidings, type CliProcess } from '../../../test/support/cli.ts';
import { shareBrokerPerTest } from '../../../test/support/rabbitmq-broker-lock.ts';

shareBrokerPerTest();

/** Starts `tidings <args>` in the test folder, its log at `info`. */
function tidings(args: string[]): CliProcess {
  const run = startTidings(args, { cwd: folder, env: { TIDINGS_LOG_LEVEL: 'info' } });
  running.push(run);
  return run;
}

let outbox: TestOutbox;
let s: string;
let folder: string;
let flags: string[];
const running: CliProcess[] = [];
beforeAll(async () => {
  outbox = await freshOutbox('cli_retention_schedule', { partitions: 2 });
  s = `"${outbox.schema}"`;
  folder = await mkdtemp(join(tmpdir(), 'tidings-retention-'));
  flags = ['--database', services.postgres, '--schema', outbox.schema];
});
beforeEach(async () => {
  for (const run of running.splice(0)) await run.kill();
  await outbox.db.query(`TRUNCATE ${s}.events, ${s}.commits, ${s}.retention_horizon, ${s}.relay_partitions, ${s}.relay_workers, ${s}.dead_letters`);
});
afterAll(async () => {
  for (const run of running.splice(0)) await run.kill();
  await outbox.close();
  await rm(folder, { recursive: true, force: true });
});

/** `count` old events (8 days), one transaction each, and one dead letter that died 40 days ago. */
async function oldEvents(count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    await inTransaction(outbox.pool, (c) => publish(c, [{ topic: 'retention.cli', key: `k${i}`, payload: i }], { schema: outbox.schema }));
  }
  await outbox.db.query(`UPDATE ${s}.events SET created_at = now() - interval '8 days'`);
  await outbox.db.query(
    `INSERT INTO ${s}.dead_letters (relay, partition, event_id, topic, payload, headers, event_created_at, errors, dead_at)
     VALUES ('gone', 0, 'old-letter', 'retention.cli', '1', '{}', now(), '[]', now() - interval '40 days')`,
  );
}

const count = async (table: string) => Number((await outbox.db.query<{ n: string }>(`SELECT count(*) AS n FROM ${s}.${table}`)).rows[0]!.n);

/** A config whose one relay passes every event (none matches its topics), so that retention may delete them. */
async function config(name: string, retention: unknown): Promise<string> {
  const file = join(folder, `${name}.json`);
  const relays = [{ name, topics: ['nothing.*'], pollIntervalMs: 50, transport: { type: 'rabbitmq', url: services.rabbitmq } }];
  await writeFile(file, JSON.stringify(retention === undefined ? { relays } : { relays, retention }));
  return file;
}

/** Waits until the relay `name` has passed every event of each partition it registered. */
async function passedAll(name: string): Promise<void> {
  await waitUntil(`${name} passed every event`, async () => {
    const { rows } = await outbox.db.query<{ behind: string }>(
      `SELECT count(*) AS behind FROM ${s}.events e JOIN ${s}.commits c ON c.partition = e.partition AND e.id BETWEEN c.first_id AND c.last_id
       JOIN ${s}.relay_partitions rp ON rp.relay = $1 AND rp.partition = e.partition
       WHERE (rp.cursor_seq, rp.cursor_id) < (c.seq, e.id)`,
      [name],
    );
    const registered = await outbox.db.query(`SELECT 1 FROM ${s}.relay_partitions WHERE relay = $1`, [name]);
    return (registered.rowCount === 2 && Number(rows[0]!.behind) === 0) || undefined;
  });
}

describe('retention inside tidings relay', () => {
  it('runs by default with the config\'s settings: deletes the old events every relay passed and the old dead letters, and logs it', { timeout: 60_000 }, async () => {
    await oldEvents(5);
    const relay = tidings(['relay', '--config', await config('sweeper', { intervalMs: 100, deadLetterRetentionMs: 30 * 86_400_000 }), ...flags]);
    await waitUntil('the old events and the old dead letter deleted', async () => ((await count('events')) === 0 && (await count('dead_letters')) === 0) || undefined, 40_000);
    await waitUntil('the run logged', () => /retention: deleted/.test(relay.stdout()) || undefined);
    relay.signal('SIGTERM');
    expect((await relay.exited).code, relay.stderr()).toBe(0);
  });

  it('"retention": false turns it off: the passed old events stay', { timeout: 60_000 }, async () => {
    await oldEvents(3);
    const relay = tidings(['relay', '--config', await config('keeper', false), ...flags]);
    await passedAll('keeper');
    // The schedule, were it on, runs within its first interval of the start: give it several.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    relay.signal('SIGTERM');
    expect((await relay.exited).code, relay.stderr()).toBe(0);
    expect(await count('events')).toBe(3);
    expect(relay.stdout()).not.toMatch(/"msg":"retention/);
  });
});

describe('tidings cleanup', () => {
  it('--dead-letter-retention-days deletes the dead letters dead longer, and says so', async () => {
    await oldEvents(2);
    await outbox.db.query(
      `INSERT INTO ${s}.dead_letters (relay, partition, event_id, topic, payload, headers, event_created_at, errors, dead_at)
       VALUES ('gone', 0, 'young-letter', 'retention.cli', '1', '{}', now(), '[]', now() - interval '2 days')`,
    );
    const run = tidings(['cleanup', '--dead-letter-retention-days', '30', ...flags]);
    expect((await run.exited).code, run.stderr()).toBe(0);
    // No relay has run here: every old event goes.
    expect(run.stdout()).toBe('deleted 2 events and 1 dead letters\n');
    expect((await outbox.db.query(`SELECT event_id FROM ${s}.dead_letters`)).rows).toEqual([{ event_id: 'young-letter' }]);
    const bad = tidings(['cleanup', '--dead-letter-retention-days', 'month', ...flags]);
    expect((await bad.exited).code).toBe(2);
    expect(bad.stderr()).toMatch(/--dead-letter-retention-days/);
  });

  it('stops between two batches on SIGINT and reports what it deleted', { timeout: 120_000 }, async () => {
    await inTransaction(outbox.pool, (c) => publish(c, Array.from({ length: 3000 }, (_, i) => ({ topic: 'retention.cli', payload: i })), { schema: outbox.schema }));
    await outbox.db.query(`UPDATE ${s}.events SET created_at = now() - interval '8 days'`);
    const total = await count('events');
    const run = tidings(['cleanup', '--batch-size', '1', ...flags]);
    await waitUntil('some events deleted', async () => (await count('events')) < total - 3 || undefined);
    run.signal('SIGINT');
    expect((await run.exited).code, run.stderr()).toBe(0);
    const left = await count('events');
    expect(left).toBeGreaterThan(0);
    expect(run.stdout()).toBe(`deleted ${total - left} events (interrupted)\n`);
  });
});

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { migrateInbox } from '@tidings/inbox';
import type { OutboxEvent } from '@tidings/outbox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { services } from '../../../test/support/env.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';
import { inTransaction } from '../../../test/support/db.ts';
import { sourceNodeArgs } from '../../../test/support/mutants.ts';
import { comparePositions, decodePosition, publish } from '@tidings/outbox';

const script = fileURLToPath(new URL('../../../test/support/feed-consumer-process.ts', import.meta.url));
let feed: FeedServer;

beforeAll(async () => {
  feed = await startFeedServer('feed_crash');
});
afterAll(async () => {
  await feed.close();
});

function startConsumer(kind: 'sse' | 'polling' | 'websocket', schema: string, topic: string) {
  const url = kind === 'websocket' ? `${feed.wsOrigin}/ws` : `${feed.origin}${kind === 'sse' ? '/events' : '/feed'}?topics=${topic}`;
  const child = spawn(process.execPath, sourceNodeArgs(script), {
    env: { ...process.env, DATABASE_URL: services.postgres, CONSUMER_SCHEMA: schema, FEED_KIND: kind, FEED_URL: url, FEED_TOPIC: topic },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let errors = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (errors += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exited, errors: () => errors };
}

async function appliedCount(schema: string): Promise<number> {
  const { rows } = await feed.outbox.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${schema}".applied`);
  return rows[0]!.n;
}

describe.each(['sse', 'polling', 'websocket'] as const)('a %s consumer killed at random points and restarted', (kind) => {
  it('applies every committed event exactly once, and none of a rolled-back transaction', async () => {
    const schema = `t_feed_consumer_${randomBytes(4).toString('hex')}`;
    const topic = `crash.${kind}`;
    await feed.outbox.db.query(`CREATE SCHEMA "${schema}"`);
    await feed.outbox.db.query(`CREATE TABLE "${schema}".applied (n bigserial, event_id text NOT NULL, cursor text NOT NULL)`);
    await migrateInbox(feed.outbox.db, { schema });
    const committed: OutboxEvent[] = [];
    let writing = true;
    const writer = (async () => {
      for (let n = 0; writing || n < 20; n++) {
        const events = Array.from({ length: 1 + (n % 5) }, (_, i) => ({ topic, key: `k${i}`, payload: { n, i } }));
        if (n % 4 === 3) {
          await inTransaction(feed.outbox.pool, async (client) => {
            await publish(client, events, { schema: feed.outbox.schema });
            throw new Error('roll back');
          }).catch(() => {});
        } else committed.push(...(await feed.publish(events)));
        await sleep(15);
      }
    })();

    let kills = 0;
    try {
      for (let round = 0; round < 6; round++) {
        const before = await appliedCount(schema);
        const consumer = startConsumer(kind, schema, topic);
        // Kill it while it is applying: once it has applied something new, at a random moment.
        await waitUntil('the consumer applies events', async () => (await appliedCount(schema)) > before, 15_000).catch(() => {});
        await sleep(Math.random() * 120);
        consumer.child.kill('SIGKILL');
        await consumer.exited;
        kills++;
      }
      writing = false;
      await writer;
      const last = startConsumer(kind, schema, topic);
      try {
        await waitUntil(
          'the restarted consumer applied every committed event',
          async () => {
            const { rows } = await feed.outbox.db.query<{ n: number }>(`SELECT count(DISTINCT event_id)::int AS n FROM "${schema}".applied`);
            return rows[0]!.n >= committed.length;
          },
          30_000,
        );
        await sleep(300);
      } finally {
        last.child.kill('SIGTERM');
        expect(await last.exited, last.errors()).toBe(0);
      }
      const { rows } = await feed.outbox.db.query<{ event_id: string; n: number }>(
        `SELECT event_id, count(*)::int AS n FROM "${schema}".applied GROUP BY event_id`,
      );
      const applied = new Map(rows.map((row) => [row.event_id, row.n]));
      const expected = new Set(committed.map((e) => e.eventId));
      const lost = committed.filter((e) => !applied.has(e.eventId)).map((e) => e.eventId);
      const unexpected = [...applied.keys()].filter((id) => !expected.has(id));
      const twice = rows.filter((row) => row.n > 1);
      console.info(`${kind}: ${committed.length} committed events, ${kills} kills, ${rows.length} applied`);
      expect({ lost, unexpected, twice }).toEqual({ lost: [], unexpected: [], twice: [] });
      const { rows: order } = await feed.outbox.db.query<{ cursor: string }>(`SELECT cursor FROM "${schema}".applied ORDER BY n`);
      const positions = order.map((row) => decodePosition(row.cursor));
      expect(positions.every((p, i) => i === 0 || comparePositions(positions[i - 1]!, p) < 0), 'applied in log order').toBe(true);
    } finally {
      writing = false;
      await writer;
      await feed.outbox.db.query(`DROP SCHEMA "${schema}" CASCADE`);
    }
  });
});

import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { SseParser } from '@tidings/relays/sse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { sourceNodeArgs } from '../../../test/support/mutants.ts';
import { publish } from '@tidings/outbox';

const script = fileURLToPath(new URL('../../../test/support/feed-server-process.ts', import.meta.url));
const connections = 1_000;
const transactions = 10;
const eventsPerTransaction = 10;

let outbox: TestOutbox;
let server: ChildProcess;
let port: number;
const replies: Array<Record<string, number>> = [];

beforeAll(async () => {
  outbox = await freshOutbox('sse_scale');
  server = spawn(process.execPath, ['--expose-gc', ...sourceNodeArgs(script)], {
    env: { ...process.env, DATABASE_URL: services.postgres, TIDINGS_SCHEMA: outbox.schema },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  createInterface({ input: server.stdout! }).on('line', (line) => replies.push(JSON.parse(line)));
  port = (await waitUntil('the feed server listens', async () => replies.find((r) => r.type === ('listening' as never))))['port']!;
});
afterAll(async () => {
  server?.stdin?.end();
  await new Promise((resolve) => (server?.exitCode !== null ? resolve(null) : server.once('exit', resolve)));
  await outbox?.close();
});

async function serverMemory(): Promise<Record<string, number>> {
  const before = replies.length;
  server.stdin!.write('memory\n');
  return waitUntil('the server reports its memory', async () => replies.slice(before).find((r) => 'heapUsed' in r));
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

describe('one process serving many SSE connections', () => {
  it('keeps 1,000 connections open and delivers a burst of events to every one of them', { timeout: 120_000 }, async () => {
    await sleep(300);
    const baseline = await serverMemory();
    const committedAt = new Map<string, number>();
    const arrivals: Array<[string, number]> = [];
    const counts = new Array<number>(connections).fill(0);
    const ended: number[] = [];
    const sockets: Array<() => void> = [];
    const opened = Date.now();
    await Promise.all(
      Array.from({ length: connections }, (_, i) =>
        new Promise<void>((resolve, reject) => {
          const req = request({ host: '127.0.0.1', port, path: '/events', agent: false, headers: { accept: 'text/event-stream' } }, (res) => {
            if (res.statusCode !== 200) return reject(new Error(`connection ${i} answered ${res.statusCode}`));
            // Arrival is timed per chunk, before parsing: the clients share one process, and the
            // time it spends parsing for the other 999 is not the server's latency.
            let arrivedAt = 0;
            const parser = new SseParser((message) => {
              counts[i]!++;
              const eventId = /"eventId":"(\w+)"/.exec(message.data)![1]!;
              arrivals.push([eventId, arrivedAt]);
            });
            res.setEncoding('utf8').on('data', (chunk: string) => {
              arrivedAt = Date.now();
              parser.push(chunk);
            });
            res.once('close', () => ended.push(i));
            resolve();
          });
          req.once('error', reject);
          sockets.push(() => req.destroy());
          req.end();
        }),
      ),
    );
    const openMs = Date.now() - opened;
    await waitUntil('the server counts every connection', async () => (await serverMemory()).connections === connections);
    await sleep(1_000);
    const loaded = await serverMemory();

    const burstStarted = Date.now();
    for (let t = 0; t < transactions; t++) {
      const events = await inTransaction(outbox.pool, (client) =>
        publish(client, Array.from({ length: eventsPerTransaction }, (_, i) => ({ topic: 'scale.burst', key: `k${i}`, payload: { t, i, pad: 'x'.repeat(200) } })), { schema: outbox.schema }),
      );
      const at = Date.now();
      for (const event of events) committedAt.set(event.eventId, at);
    }
    const total = transactions * eventsPerTransaction;
    await waitUntil('every connection received the whole burst', async () => counts.every((n) => n >= total), 60_000);
    const deliveredMs = Date.now() - burstStarted;
    await sleep(500);

    // One more event on quiet connections: how long one event takes to reach all of them.
    const single = arrivals.length;
    const [lone] = await inTransaction(outbox.pool, (client) => publish(client, { topic: 'scale.one', payload: 1 }, { schema: outbox.schema }));
    committedAt.set(lone!.eventId, Date.now());
    await waitUntil('every connection received the single event', async () => counts.every((n) => n >= total + 1), 30_000);
    const loneLatencies = arrivals.slice(single).map(([eventId, at]) => at - committedAt.get(eventId)!).sort((a, b) => a - b);
    arrivals.length = single;

    // From the moment COMMIT returned to the publisher (an event can even arrive a little before).
    const latencies = arrivals.map(([eventId, at]) => at - committedAt.get(eventId)!).sort((a, b) => a - b);
    const perConnection = (key: string): number => Math.round((loaded[key]! - baseline[key]!) / connections);
    const note = {
      connections,
      openAllMs: openMs,
      heapPerConnectionBytes: perConnection('heapUsed'),
      rssPerConnectionBytes: perConnection('rss'),
      externalPerConnectionBytes: perConnection('external'),
      events: total,
      deliveries: latencies.length,
      latencyMs: { p50: percentile(latencies, 50), p95: percentile(latencies, 95), p99: percentile(latencies, 99), max: latencies.at(-1) },
      burstDeliveredToAllMs: deliveredMs,
      singleEventLatencyMs: { p50: percentile(loneLatencies, 50), max: loneLatencies.at(-1) },
    };
    console.info(`SSE scale: ${JSON.stringify(note)}`);
    for (const close of sockets) close();

    expect(ended).toEqual([]);
    expect(counts.every((n) => n === total + 1)).toBe(true);
    expect(latencies).toHaveLength(connections * total);
    expect(loaded.gc, 'the server ran with --expose-gc').toBe(true as never);
    // Not a benchmark: a guard against a connection growing by more than a small, fixed amount.
    expect(note.heapPerConnectionBytes).toBeLessThan(64 * 1024);
  });
});

// How long the dashboard takes to serve its overview page with many relays registered, and what one
// sample of its charts costs. Standalone (not part of `npm run bench`):
//   node --conditions=tidings-source --no-warnings bench/dashboard-overview.ts [--relays 1000] [--events 100000] [--behind 200] [--rounds 5]
import { createServer } from 'node:http';
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { status } from '@tidings/outbox';
import { dashboard } from '@tidings/relays/dashboard';
import { throughputMeasure } from '../packages/relays/src/dashboard/sampler.ts';
import { register } from './scenarios/status.ts';
import { benchOutbox, median, seedBacklog } from './support.ts';

const { values } = parseArgs({ options: { relays: { type: 'string' }, events: { type: 'string' }, behind: { type: 'string' }, rounds: { type: 'string' } } });
const relays = Number(values.relays ?? 1000);
const events = Number(values.events ?? 100_000);
const behind = Number(values.behind ?? 200);
const rounds = Number(values.rounds ?? 5);

const outbox = await benchOutbox('dashboard');
const token = 'bench-token-of-at-least-16-characters';
// The sampler's first reading runs at creation; a long sampleMs keeps later ones out of the timings.
const board = dashboard({ database: outbox.db, schema: outbox.schema, token, sampleMs: 600_000 });
const server = createServer((req, res) => void board(req, res));
try {
  await seedBacklog(outbox, events);
  await register(outbox, relays, behind);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const timed = async (fn: () => Promise<unknown>): Promise<number> => {
    const started = performance.now();
    await fn();
    return performance.now() - started;
  };
  const page = async () => {
    const answer = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
    const body = await answer.text();
    if (answer.status !== 200 || (body.match(/<tr data-relay=/g) ?? []).length !== relays) throw new Error(`bench: the overview answered ${answer.status} without ${relays} relay rows`);
    return body.length;
  };
  const bytes = await page(); // warm-up
  const measure = throughputMeasure(outbox.db, outbox.schema, async () => ({ report: await status(outbox.db, { schema: outbox.schema }), filters: {} }));
  await measure(); // the first reading only takes the marks
  const overview: number[] = [];
  const statusOnly: number[] = [];
  const sample: number[] = [];
  for (let round = 0; round < rounds; round++) {
    overview.push(await timed(page));
    statusOnly.push(await timed(() => status(outbox.db, { schema: outbox.schema })));
    sample.push(await timed(measure));
  }
  const ms = (list: number[]) => list.map((v) => Math.round(v)).join(', ');
  const { rows } = await outbox.db.query<{ server_version: string }>('SHOW server_version');
  const machine = { cores: os.availableParallelism(), cpu: os.cpus()[0]?.model.trim(), node: process.version, postgresql: rows[0]!.server_version };
  console.log(JSON.stringify({ machine, relays, events, behind, rounds, page_bytes: bytes }));
  console.log(`overview page: median ${median(overview).toFixed(0)} ms (${ms(overview)})`);
  console.log(`status() alone: median ${median(statusOnly).toFixed(0)} ms (${ms(statusOnly)})`);
  console.log(`one chart sample: median ${median(sample).toFixed(0)} ms (${ms(sample)})`);
} finally {
  await board.close();
  server.close();
  await outbox.close();
}

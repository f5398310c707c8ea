/**
 * An SSE feed server as its own process, so that a test can measure what its connections cost
 * without counting the clients. Prints JSON lines: `{ type: 'listening', port }`, and on every
 * `memory` line read from stdin, `{ type: 'memory', connections, heapUsed, rss, external }` after a
 * full garbage collection (run it with --expose-gc).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { pgDatabase } from '@tidings/outbox';
import { sseFeed } from '@tidings/relays/sse';

const database = pgDatabase(process.env.DATABASE_URL!, { max: 8 });
const feed = sseFeed({ database, schema: process.env.TIDINGS_SCHEMA!, authorize: () => ({}) });
const server = createServer(feed.handle);
server.maxConnections = 5_000;
server.listen(0, '127.0.0.1', () => {
  say({ type: 'listening', port: (server.address() as AddressInfo).port });
});

function say(line: object): void {
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line !== 'memory') return;
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  gc?.();
  const usage = process.memoryUsage();
  say({ type: 'memory', connections: feed.connections, heapUsed: usage.heapUsed, rss: usage.rss, external: usage.external, gc: gc !== undefined });
});
process.stdin.on('end', () => {
  void feed.close().then(() => {
    server.closeAllConnections();
    server.close();
    return database.close();
  }).then(() => process.exit(0));
});

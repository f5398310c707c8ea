/**
 * The local webhook receiver of the bench, in a process of its own as a real receiver would be:
 * reads each request's body and answers 204. Tells its port on stdout; stops when stdin closes.
 * Counts the requests per path: `{ type: 'expect', deliveries }` is answered by `reached` (with the
 * deliveries and the number of distinct paths) once that many requests have been answered in all,
 * counted from the last `reset`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { commands, tell } from '../child.ts';

let deliveries = 0;
let paths = new Set<string>();
let expected: number | undefined;

const server = http.createServer((request, response) => {
  request.resume();
  request.on('end', () => {
    response.writeHead(204).end();
    deliveries++;
    paths.add(request.url!);
    check();
  });
});

function check(): void {
  if (expected === undefined || deliveries < expected) return;
  expected = undefined;
  tell({ type: 'reached', deliveries, paths: paths.size });
}

server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => tell({ type: 'listening', port: (server.address() as AddressInfo).port }));
await commands(async (command) => {
  if (command.type === 'reset') {
    deliveries = 0;
    paths = new Set();
    tell({ type: 'reset' });
  } else if (command.type === 'expect') {
    expected = Number(command.deliveries);
    check();
  }
});
server.closeAllConnections();
server.close();

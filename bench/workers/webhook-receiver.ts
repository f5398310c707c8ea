/**
 * The local webhook receiver of the bench, in a process of its own as a real receiver would be:
 * reads each request's body and answers 204. Tells its port on stdout; stops when stdin closes.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { commands, tell } from '../child.ts';

const server = http.createServer((request, response) => {
  request.resume();
  request.on('end', () => response.writeHead(204).end());
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => tell({ type: 'listening', port: (server.address() as AddressInfo).port }));
await commands(async () => {});
server.closeAllConnections();
server.close();

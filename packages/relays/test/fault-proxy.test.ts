import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFaultProxy, type FaultProxy } from '@tidings/relays/testing';

// The fault proxy the RabbitMQ tests put between transports and the broker, checked on its own
// against an echo server, so that a broken proxy cannot make a transport look good.
let echo: net.Server;
let proxy: FaultProxy;

beforeAll(async () => {
  echo = net.createServer((socket) => socket.on('error', () => {}).pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port } });
});
afterAll(async () => {
  await proxy.close();
  await new Promise((resolve) => echo.close(resolve));
});

interface Client {
  socket: net.Socket;
  received(): string;
  closed: Promise<string>;
}

async function connect(): Promise<Client> {
  const socket = net.connect({ host: '127.0.0.1', port: proxy.port });
  let data = '';
  socket.setEncoding('utf8').on('data', (chunk: string) => (data += chunk));
  const closed = new Promise<string>((resolve) => {
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    socket.on('close', () => resolve('closed'));
  });
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return { socket, received: () => data, closed };
}

async function eventually(what: string, check: () => boolean, ms = 2_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(10);
  }
}

describe('the fault proxy', () => {
  it('forwards bytes both ways', async () => {
    const client = await connect();
    client.socket.write('hello');
    await eventually('the echo came back', () => client.received() === 'hello');
    client.socket.destroy();
  });

  it('resets every open connection on cutAll()', async () => {
    const before = proxy.acceptedConnections;
    const [a, b] = await Promise.all([connect(), connect()]);
    await eventually('the proxy accepted both', () => proxy.acceptedConnections === before + 2);
    proxy.cutAll();
    expect(await a.closed).toMatch(/ECONNRESET|closed/);
    expect(await b.closed).toMatch(/ECONNRESET|closed/);
    await eventually('none is open', () => proxy.openConnections === 0);
  });

  it('refuses new connections while refuseNew is on, and leaves open ones alone', async () => {
    const open = await connect();
    proxy.refuseNew(true);
    try {
      const refused = await connect().catch((error: NodeJS.ErrnoException) => error.code ?? error.message);
      if (typeof refused !== 'string') {
        const outcome = await refused.closed;
        expect(outcome).toMatch(/ECONNRESET|closed/);
      }
      open.socket.write('still here');
      await eventually('the open connection still works', () => open.received() === 'still here');
    } finally {
      proxy.refuseNew(false);
      open.socket.destroy();
    }
  });

  it('holds bytes while stalled and delivers them in order on resume', async () => {
    const client = await connect();
    proxy.stall();
    client.socket.write('one ');
    client.socket.write('two');
    await sleep(200);
    expect(client.received()).toBe('');
    proxy.resume();
    await eventually('the bytes arrived', () => client.received() === 'one two');
    client.socket.destroy();
  });

  it('delays bytes by the latency it is given', async () => {
    const client = await connect();
    proxy.setLatency(150);
    try {
      const started = Date.now();
      client.socket.write('slow');
      await eventually('the echo came back', () => client.received() === 'slow');
      // Delayed on the way there and on the way back.
      expect(Date.now() - started).toBeGreaterThanOrEqual(280);
    } finally {
      proxy.setLatency(0);
      client.socket.destroy();
    }
  });
});

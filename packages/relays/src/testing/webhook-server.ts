import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** How a test receiver misbehaves while it is down. */
export type WebhookDownMode = 'refuse' | 'slow' | 'error';

/** Answers one request that reached the receiver while it was up; `body` is the whole request body. */
export type WebhookServerHandler = (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => unknown;

/** A real HTTP receiver on 127.0.0.1 whose faults tests switch on and off. */
export interface TestWebhookServer {
  readonly url: string;
  readonly port: number;
  readonly isDown: boolean;
  /** Requests that reached the handler. */
  readonly handled: number;
  /**
   * `refuse`: the port is closed (connections refused); `slow`: requests are read and never
   * answered; `error`: every request is answered 500 without reaching the handler.
   */
  takeDown(mode?: WebhookDownMode): Promise<void>;
  recover(): Promise<void>;
  /** Destroys every open connection, requests in flight included; the server stays up. */
  cutConnections(): void;
  close(): Promise<void>;
}

/**
 * Starts a receiver on an ephemeral loopback port that stays the same across `takeDown('refuse')`
 * and `recover()`, so senders reconnect to the same URL.
 *
 * @example
 * const server = await startWebhookServer((req, res) => res.writeHead(204).end());
 */
export async function startWebhookServer(handler: WebhookServerHandler, options: { downMode?: WebhookDownMode; path?: string } = {}): Promise<TestWebhookServer> {
  let mode: WebhookDownMode | undefined;
  let handled = 0;
  const sockets = new Set<Socket>();
  const held = new Set<http.ServerResponse>();
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    if (mode === 'slow') {
      held.add(res);
      res.on('close', () => held.delete(res));
      return;
    }
    if (mode === 'error') {
      res.writeHead(500, { 'content-type': 'text/plain' }).end('down for maintenance');
      return;
    }
    handled++;
    try {
      await handler(req, res, Buffer.concat(chunks));
    } catch (error) {
      if (!res.headersSent) res.writeHead(500).end(String(error));
    }
  });
  server.keepAliveTimeout = 5_000;
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const listen = (port: number) =>
    new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  await listen(0);
  const port = (server.address() as AddressInfo).port;
  const cut = () => {
    for (const socket of sockets) socket.destroy();
  };

  return {
    url: `http://127.0.0.1:${port}${options.path ?? '/hooks'}`,
    port,
    get isDown() {
      return mode !== undefined;
    },
    get handled() {
      return handled;
    },
    async takeDown(downMode = options.downMode ?? 'refuse') {
      if (mode !== undefined) return;
      mode = downMode;
      if (downMode === 'refuse') {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        cut();
        await closed;
      } else {
        cut(); // kept-alive connections must not dodge the fault
      }
    },
    async recover() {
      const was = mode;
      mode = undefined;
      for (const res of held) res.destroy();
      held.clear();
      if (was === 'refuse') await listen(port);
    },
    cutConnections: cut,
    async close() {
      mode = undefined;
      for (const res of held) res.destroy();
      cut();
      if (server.listening) await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

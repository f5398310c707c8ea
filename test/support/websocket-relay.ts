import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';

/** A WebSocket relay in front of a feed that can make a consumer's next subscription start over. */
export interface ReplayingRelay {
  /** ws://127.0.0.1:port/ws: point the consumer here. */
  readonly url: string;
  /** The next `subscribe` that passes asks for `after: 'start'`: the feed sends everything again. */
  replayNext(): void;
  /** Whether a replay was asked for and has not happened yet. */
  readonly replayPending: boolean;
  /** Drops every relayed connection (both sides), so the consumer reconnects. */
  cutAll(): void;
  close(): Promise<void>;
}

/** Relays every connection to `target` (the feed's ws:// URL), message by message. */
export async function startReplayingRelay(target: string): Promise<ReplayingRelay> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  let replay = false;
  const pairs = new Set<[WebSocket, WebSocket]>();
  server.on('connection', (client, request) => {
    const upstream = new WebSocket(target, { headers: { ...(request.headers.authorization ? { authorization: request.headers.authorization } : {}) } });
    const pair: [WebSocket, WebSocket] = [client, upstream];
    pairs.add(pair);
    const waiting: string[] = [];
    upstream.on('open', () => {
      for (const text of waiting.splice(0)) upstream.send(text);
    });
    client.on('message', (data) => {
      let text = data.toString();
      const message = JSON.parse(text) as { type?: string; after?: string };
      if (message.type === 'subscribe' && replay) {
        replay = false;
        text = JSON.stringify({ ...message, after: 'start' });
      }
      if (upstream.readyState === WebSocket.OPEN) upstream.send(text);
      else waiting.push(text);
    });
    upstream.on('message', (data) => client.readyState === WebSocket.OPEN && client.send(data.toString()));
    const end = (): void => {
      pairs.delete(pair);
      client.terminate();
      upstream.terminate();
    };
    // Close codes pass through, so the consumer hears the feed's refusals as they are.
    upstream.on('close', (code, reason) => (code >= 4000 || code === 1001 ? client.close(code, reason) : end()));
    client.on('close', end);
    upstream.on('error', end);
    client.on('error', end);
  });
  const cutAll = (): void => {
    for (const [client, upstream] of [...pairs]) {
      client.terminate();
      upstream.terminate();
    }
  };
  return {
    url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws`,
    replayNext: () => (replay = true),
    get replayPending() {
      return replay;
    },
    cutAll,
    async close() {
      cutAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { openWebSocketFeed } from '@tidings/relays/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

let feed: FeedServer;

beforeAll(async () => {
  feed = await startFeedServer('websocket_buffer', { websocket: { maxInFlight: 8, heartbeatMs: 3_000, maxConnectionsPerTenant: 1 } });
});
afterAll(async () => {
  await feed.close();
});

/** A client frame (text unless `opcode` says otherwise), masked as RFC 6455 requires of clients. */
function clientFrame(text: string, opcode = 0x1): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const length = payload.length < 126 ? Buffer.from([0x80 | payload.length]) : Buffer.from([0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([Buffer.from([0x80 | opcode]), length, mask, payload.map((byte, i) => byte ^ mask[i % 4]!)]);
}

const pongOpcode = 0xa;

/**
 * Sends an upgrade request by hand with `headers` (as written, with a valid key and version unless
 * they say otherwise) and stops reading once the answer's head came: nothing sent after it is read.
 */
async function rawUpgrade(headers: Record<string, string>): Promise<{ socket: Socket; head: string }> {
  const { port } = new URL(feed.wsOrigin);
  const socket = connect(Number(port), '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const all = { Host: `127.0.0.1:${port}`, Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': randomBytes(16).toString('base64'), 'Sec-WebSocket-Version': '13', ...headers };
  socket.write(`GET /ws HTTP/1.1\r\n${Object.entries(all).map(([name, value]) => `${name}: ${value}\r\n`).join('')}\r\n`);
  const head = await new Promise<string>((resolve) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('latin1');
      if (!text.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      socket.pause();
      resolve(text);
    };
    socket.on('data', onData);
  });
  return { socket, head };
}

describe('the WebSocket feed, against hostile clients', () => {
  it("stops sending while the socket's buffer is full, however many events are acknowledged", async () => {
    const topic = `deaf.${randomBytes(3).toString('hex')}`;
    const events = 300;
    const filler = 'x'.repeat(32 * 1024);
    for (let n = 0; n < events; n += 50) await feed.publish(Array.from({ length: 50 }, (_, i) => ({ topic, payload: { n: n + i, filler } })));
    const probe = randomBytes(6).toString('hex');
    const { socket: client, head } = await rawUpgrade({ 'x-probe': probe });
    expect(head).toMatch(/^HTTP\/1\.1 101/);
    const request = feed.websocketRequests.find((r) => r.headers['x-probe'] === probe)!;
    const server = request.socket;
    // The client learns each cursor the moment the server writes it (cursors are the log's: any
    // reader of the same topics knows them), and acknowledges it without reading a byte.
    let sent = 0;
    let mostBuffered = 0;
    const write = server.write.bind(server) as (...args: unknown[]) => boolean;
    server.write = ((chunk: unknown, ...rest: unknown[]) => {
      const text = Buffer.isBuffer(chunk) ? chunk.toString('latin1') : String(chunk);
      const written = write(chunk, ...rest);
      mostBuffered = Math.max(mostBuffered, server.writableLength);
      for (const [, cursor] of text.matchAll(/"type":"event","cursor":"([^"]+)"/g)) {
        sent++;
        client.write(clientFrame(JSON.stringify({ type: 'ack', cursor })));
      }
      return written;
    }) as typeof server.write;
    const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
    client.write(clientFrame(JSON.stringify({ type: 'subscribe', after: 'start', topics: [topic] })));
    // A client that reads nothing answers no ping: the heartbeat ends it.
    await closed;
    client.destroy();
    // Without the check, all 300 (9.6 MB) went out, most of them into the process's memory.
    // 16 KiB and one page of at most maxInFlight (8) events of 32 KiB.
    expect(mostBuffered).toBeLessThan(16 * 1024 + 8 * 33 * 1024);
    expect(sent).toBeLessThan(events);
  });

  it('frees the slot of an upgrade request it refuses for a bad handshake, however the client leaves it', async () => {
    const tenant = { 'x-tenant': 'bad-handshakes' };
    for (const bad of [{ 'Sec-WebSocket-Version': '7' }, { 'Sec-WebSocket-Key': 'short' }, { Upgrade: 'h2c' }] as Record<string, string>[]) {
      const { socket, head } = await rawUpgrade({ ...tenant, ...bad });
      expect(head).toMatch(/^HTTP\/1\.1 4\d\d/);
      socket.resume(); // reads the rest, and the server's end
      await new Promise((resolve) => socket.once('close', resolve));
    }
    // One that goes away without a word while it is being authorized.
    const { port } = new URL(feed.wsOrigin);
    const early = connect(Number(port), '127.0.0.1');
    early.end(`GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nx-tenant: bad-handshakes\r\n\r\n`);
    early.resume();
    await new Promise((resolve) => early.once('close', resolve));
    // The tenant's one slot is free again (its release may trail the client's view of the close by a turn).
    // A refusal (4429) would come as an error message after the handshake: wait for `subscribed`.
    await waitUntil('the tenant is served', async () => {
      const reader = await openWebSocketFeed(`${feed.wsOrigin}/ws`, { type: 'subscribe', after: 'now', topics: ['t'] }, tenant);
      await Promise.race([reader.closed, waitUntil('subscribed', () => reader.messages.some((m) => m.type === 'subscribed'))]);
      reader.close();
      await reader.closed;
      return reader.messages.some((m) => m.type === 'subscribed');
    });
  });

  it('terminates a client that reads nothing, however often it sends pongs of its own', async () => {
    const probe = randomBytes(6).toString('hex');
    const { socket: client, head } = await rawUpgrade({ 'x-probe': probe });
    expect(head).toMatch(/^HTTP\/1\.1 101/);
    const server = feed.websocketRequests.find((r) => r.headers['x-probe'] === probe)!.socket;
    const closed = new Promise<void>((resolve) => server.once('close', () => resolve()));
    client.write(clientFrame(JSON.stringify({ type: 'subscribe', after: 'now', topics: ['unheard'] })));
    // Unsolicited pongs (the protocol allows them) far more often than the feed's heartbeat: none
    // echoes a ping, since the client never reads one.
    const pongs = setInterval(() => client.write(clientFrame('', pongOpcode)), 100);
    try {
      await closed;
    } finally {
      clearInterval(pongs);
      client.destroy();
    }
  });
});

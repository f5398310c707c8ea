import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';

let feed: FeedServer;

beforeAll(async () => {
  feed = await startFeedServer('websocket_buffer', { websocket: { maxInFlight: 8, heartbeatMs: 3_000 } });
});
afterAll(async () => {
  await feed.close();
});

/** A client frame: text, masked as RFC 6455 requires of clients. */
function clientFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  const mask = randomBytes(4);
  const length = payload.length < 126 ? Buffer.from([0x80 | payload.length]) : Buffer.from([0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  return Buffer.concat([Buffer.from([0x81]), length, mask, payload.map((byte, i) => byte ^ mask[i % 4]!)]);
}

/** Opens a WebSocket by hand and stops reading once the handshake is answered: nothing it is sent is ever read. */
async function deafClient(probe: string): Promise<Socket> {
  const { port } = new URL(feed.wsOrigin);
  const socket = connect(Number(port), '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  socket.write(
    `GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\nx-probe: ${probe}\r\n\r\n`,
  );
  await new Promise<void>((resolve) => {
    let head = '';
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      expect(head).toMatch(/^HTTP\/1\.1 101/);
      socket.off('data', onData);
      socket.pause();
      resolve();
    };
    socket.on('data', onData);
  });
  return socket;
}

describe('the WebSocket feed, against a client that acknowledges what it never read', () => {
  it("stops sending while the socket's buffer is full, however many events are acknowledged", async () => {
    const topic = `deaf.${randomBytes(3).toString('hex')}`;
    const events = 300;
    const filler = 'x'.repeat(32 * 1024);
    for (let n = 0; n < events; n += 50) await feed.publish(Array.from({ length: 50 }, (_, i) => ({ topic, payload: { n: n + i, filler } })));
    const probe = randomBytes(6).toString('hex');
    const client = await deafClient(probe);
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
    expect(mostBuffered).toBeLessThan(256 * 1024);
    expect(sent).toBeLessThan(events);
  });
});

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Database } from '@tidings/outbox';
import { sseConsumer, sseFeed, type SseFeed } from '../../sse/index.ts';
import { webhookReceiver, type WebhookReceiver } from '../../webhook/index.ts';

/** What the destinations saw, for the live line and the summary. */
export interface DestinationCounts {
  /** Webhook requests answered 503 while the receiver played "down". */
  refused: number;
  /** Signed webhook requests that reached the receiver for an event it had already applied. */
  duplicateReceipts: number;
}

/**
 * The demo's receiving side, in process and on loopback: a webhook receiver that applies each event
 * through the inbox into the shop's `shipments`, and an SSE feed read by a consumer that applies each event
 * into its `feed_log`, storing its cursor in the same transaction. Neither effect table has a
 * unique key, so a duplicate applied would show up as a second row.
 */
export class Destinations {
  readonly counts: DestinationCounts = { refused: 0, duplicateReceipts: 0 };
  /** While true the webhook receiver answers 503, like a receiver that is down. */
  down = false;
  readonly #db: Database;
  readonly #schema: string;
  readonly #shop: string;
  readonly #server: Server;
  readonly #feed: SseFeed;
  #receiver: WebhookReceiver | undefined;
  #lastDelivery: { headers: Record<string, string>; body: Buffer } | undefined;
  #consumer: ReturnType<typeof sseConsumer> | undefined;

  constructor(db: Database, schema: string, shop: string) {
    this.#db = db;
    this.#schema = schema;
    this.#shop = shop;
    this.#feed = sseFeed({ database: db, schema, authorize: () => ({}), from: 'start', pollIntervalMs: 500, heartbeatMs: 5_000 });
    this.#server = createServer((req, res) => void this.#route(req, res));
  }

  get port(): number {
    return (this.#server.address() as AddressInfo).port;
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.listen(0, '127.0.0.1', resolve));
  }

  /** Arms the webhook receiver with the endpoint's secret. */
  receiveWebhooks(secret: string): void {
    const receiver = webhookReceiver({
      secrets: secret,
      consumer: 'demo-webhook',
      schema: this.#schema,
      database: this.#db,
      handler: (trx, message) =>
        trx.query(`INSERT INTO ${this.#shop}.shipments (event_id, order_id) VALUES ($1, $2)`, [
          message.eventId,
          (message.payload as { orderId: string }).orderId,
        ]),
    });
    this.#receiver = receiver;
  }

  /** Starts (or restarts) the SSE consumer; it resumes from the cursor it committed. */
  startFeedConsumer(): void {
    this.#consumer = sseConsumer({
      url: `http://127.0.0.1:${this.port}/events`,
      source: 'demo-feed',
      consumer: 'demo-feed',
      schema: this.#schema,
      database: this.#db,
      reconnect: { minDelayMs: 100, maxDelayMs: 1_000 },
      retry: { minDelayMs: 100, maxDelayMs: 1_000 },
      handler: (trx, event) =>
        trx.query(`INSERT INTO ${this.#shop}.feed_log (event_id, order_id) VALUES ($1, $2)`, [
          event.eventId,
          (event.payload as { orderId: string }).orderId,
        ]),
    });
  }

  async stopFeedConsumer(): Promise<void> {
    await this.#consumer?.close();
    this.#consumer = undefined;
  }

  /** Sends the last signed webhook delivery once more, exactly as it was: a duplicate delivery. */
  async redeliverLast(): Promise<boolean> {
    const last = this.#lastDelivery;
    if (!last) return false;
    const response = await fetch(`http://127.0.0.1:${this.port}/webhooks`, { method: 'POST', headers: last.headers, body: last.body });
    await response.arrayBuffer();
    return response.ok;
  }

  async close(): Promise<void> {
    await this.stopFeedConsumer();
    await this.#feed.close();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.url?.startsWith('/events')) return this.#feed.handle(req, res);
    if (req.method !== 'POST' || !req.url?.startsWith('/webhooks') || !this.#receiver) {
      res.writeHead(404).end();
      return;
    }
    if (this.down) {
      this.counts.refused++;
      res.writeHead(503, { 'retry-after': '1' }).end();
      req.resume();
      return;
    }
    const body = await readBody(req);
    const id = String(req.headers['webhook-id'] ?? '');
    const seen = await this.#db.query(`SELECT 1 FROM ${this.#shop}.shipments WHERE event_id = $1 LIMIT 1`, [id]);
    if (seen.rowCount > 0) this.counts.duplicateReceipts++;
    this.#lastDelivery = {
      headers: Object.fromEntries(Object.entries(req.headers).filter(([name]) => name.startsWith('webhook-') || name === 'content-type')) as Record<string, string>,
      body,
    };
    const reply = await this.#receiver.handle({ method: req.method, headers: req.headers, body });
    res.writeHead(reply.status, reply.headers).end(reply.body);
  }
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

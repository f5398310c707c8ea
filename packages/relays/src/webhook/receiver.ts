import type { Inbox } from '@tidings/inbox';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { decodeEnvelope, type WebhookMessage } from './envelope.ts';
import { WebhookVerificationError } from './errors.ts';
import { verifyWebhook, type HeaderSource } from './verify.ts';

export interface WebhookReceiverOptions<Trx> {
  /** The endpoint's `whsec_…` secret; during a rotation, both the new and the old one. */
  readonly secrets: string | readonly string[];
  /** The inbox that makes each event apply once (its consumer names this receiver). */
  readonly inbox: Inbox;
  /**
   * Runs `work` in a transaction of your database and commits it when `work` resolves (rolls back
   * when it throws): e.g. `(work) => db.transaction().execute(work)` with kysely, or
   * `(work) => database.transaction(work)` with a tidings `Database`.
   */
  readonly transaction: <T>(work: (trx: Trx) => Promise<T>) => Promise<T>;
  /** Applies one event, inside the transaction that also records it in the inbox. */
  readonly handler: (trx: Trx, message: WebhookMessage) => unknown;
  /** How far `webhook-timestamp` may be from now, either way. Default 5 minutes. */
  readonly toleranceMs?: number;
  /** Largest body accepted. Default 2 MiB. */
  readonly maxBodyBytes?: number;
  /** Told about every rejected or failed request (the answer does not carry internal details). */
  readonly onError?: (error: Error, status: number) => void;
}

/** A request as any framework can give it: headers and the raw body bytes. */
export interface WebhookRequest {
  readonly method?: string;
  readonly headers: HeaderSource;
  readonly body: Uint8Array | string;
}

/** What to answer. */
export interface WebhookReply {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

/** Verifies, deduplicates and applies incoming webhooks; see {@link webhookReceiver}. */
export interface WebhookReceiver {
  /**
   * Handles one request (framework-agnostic): 401 for a missing or bad signature or a timestamp
   * outside the tolerance, 400 for a signed body that is not a tidings envelope, 200 once the
   * handler's transaction has committed (or the event was already applied), 500 when it failed.
   */
  handle(request: WebhookRequest): Promise<WebhookReply>;
  /** A node:http request listener: reads the raw body, then answers as `handle()` does. */
  readonly listener: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
}

/**
 * The receiving side of tidings webhooks. Each request is verified against its raw body (Standard
 * Webhooks signature, constant-time compare, timestamp tolerance), then applied through the inbox
 * in one transaction with the handler's effects, and answered 2xx only after that transaction
 * committed — so a crash before the answer just means a redelivery, which the inbox skips.
 *
 * @example
 * const receiver = webhookReceiver({
 *   secrets: process.env.WEBHOOK_SECRET!,
 *   inbox: inbox({ consumer: 'crm.orders-webhook' }),
 *   transaction: (work) => db.transaction().execute(work),
 *   handler: async (trx, message) => {
 *     if (message.topic === 'orders.created') await trx.insertInto('leads').values({ order: message.payload }).execute();
 *   },
 * });
 * http.createServer(receiver.listener).listen(8080);
 */
export function webhookReceiver<Trx>(options: WebhookReceiverOptions<Trx>): WebhookReceiver {
  const maxBodyBytes = options.maxBodyBytes ?? 2 * 1024 * 1024;
  const secrets = typeof options.secrets === 'string' ? [options.secrets] : [...options.secrets];
  // Malformed secrets fail here, at start-up, not at the first request.
  verifyProbe(secrets);

  const reply = (status: number, body: Record<string, unknown>): WebhookReply => ({
    status,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const reject = (status: number, error: Error, message: string): WebhookReply => {
    options.onError?.(error, status);
    return reply(status, { error: message });
  };

  async function handle(request: WebhookRequest): Promise<WebhookReply> {
    if (request.method !== undefined && request.method.toUpperCase() !== 'POST') {
      return { ...reply(405, { error: 'webhooks are POSTed' }), headers: { 'content-type': 'application/json', allow: 'POST' } };
    }
    const body = typeof request.body === 'string' ? Buffer.from(request.body, 'utf8') : request.body;
    if (body.byteLength > maxBodyBytes) return reject(413, new Error(`body of ${body.byteLength} bytes is over ${maxBodyBytes}`), 'body too large');
    let message: WebhookMessage;
    try {
      const verified = verifyWebhook(request.headers, body, secrets, { toleranceMs: options.toleranceMs });
      message = decodeEnvelope(verified.body, verified.id, verified.timestamp);
    } catch (error) {
      if (error instanceof WebhookVerificationError) return reject(401, error, error.reason);
      return reject(400, error as Error, `not a tidings webhook: ${(error as Error).message}`);
    }
    try {
      const outcome = await options.transaction((trx) => options.inbox.handle(trx, message, (t) => options.handler(t, message)));
      return reply(200, { id: message.eventId, status: outcome.applied ? 'applied' : 'duplicate' });
    } catch (error) {
      return reject(500, error as Error, 'the event could not be applied; it will be redelivered');
    }
  }

  async function listener(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let answer: WebhookReply;
    const preParsed = (req as IncomingMessage & { body?: unknown }).body;
    if (preParsed !== undefined && !(preParsed instanceof Uint8Array) && typeof preParsed !== 'string') {
      // A JSON body parser ran first: the raw bytes the signature covers are gone.
      answer = reject(500, new Error('the request body was parsed before the webhook receiver saw it'), 'misconfigured receiver');
    } else {
      try {
        const body = preParsed ?? (await readBody(req, maxBodyBytes));
        answer = await handle({ method: req.method, headers: req.headers, body });
      } catch (error) {
        answer = error instanceof BodyTooLargeError ? reject(413, error, 'body too large') : reject(400, error as Error, 'unreadable body');
      }
    }
    res.writeHead(answer.status, answer.headers).end(answer.body);
  }

  return Object.freeze({ handle, listener });
}

class BodyTooLargeError extends Error {}

async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > limit) throw new BodyTooLargeError(`content-length ${declared} is over ${limit}`);
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of req) {
    length += (chunk as Buffer).length;
    if (length > limit) throw new BodyTooLargeError(`body over ${limit} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function verifyProbe(secrets: readonly string[]): void {
  if (secrets.length === 0) throw new TypeError('webhookReceiver needs at least one secret');
  try {
    verifyWebhook({ 'webhook-id': 'probe', 'webhook-timestamp': '0', 'webhook-signature': 'v1,' }, '', secrets, { now: 0 });
  } catch (error) {
    if (!(error instanceof WebhookVerificationError)) throw error;
  }
}

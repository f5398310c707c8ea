import { inbox } from '@tidings/inbox';
import { ConfigError } from '@tidings/outbox';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { decodeEnvelope, type WebhookMessage } from './envelope.ts';
import { WebhookVerificationError } from './errors.ts';
import { header, verifyWebhook, type HeaderSource } from './verify.ts';
import { decodeCloudEventRequest, isCloudEventRequest } from './cloud-event.ts';
import { asError } from '../shared/backoff.ts';
import { lifecycle, resolveCommon, type Consumer, type ConsumerOptions, type WebhookDelivery } from '../shared/consumer.ts';
import { wholeOption } from '../shared/options.ts';
import { runHandler } from '../shared/handler-span.ts';
import { runInTransaction, type TransactionSource } from '../shared/transaction-source.ts';

/** Something the receiver did; for logs, metrics and tests. */
export type WebhookReceiverEvent =
  /** The handler's transaction committed (or the inbox found a duplicate); 200 follows. */
  | { readonly type: 'committed'; readonly eventId: string; readonly applied: boolean }
  /** A request was refused or failed; `status` is the answer (its body carries no internal details). */
  | { readonly type: 'rejected'; readonly status: number; readonly error: Error };

export interface WebhookReceiverOptions<Source extends TransactionSource> extends ConsumerOptions<Source, WebhookDelivery, WebhookReceiverEvent> {
  /** The endpoint's `whsec_…` secret; during a rotation, both the new and the old one. */
  readonly secrets: string | readonly string[];
  /** How far `webhook-timestamp` may be from now, either way. Default 5 minutes. */
  readonly toleranceMs?: number;
  /** Largest body accepted. Default 2 MiB. */
  readonly maxBodyBytes?: number;
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

/**
 * Verifies, deduplicates and applies incoming webhooks; see {@link webhookReceiver}. `close()`
 * makes it answer 503 to new requests and resolves once the transactions in progress ended.
 */
export interface WebhookReceiver extends Consumer {
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
 *   consumer: 'crm.orders-webhook',
 *   database: db, // kysely: the handler gets a Transaction
 *   handler: async (trx, event) => {
 *     if (event.topic === 'orders.created') await trx.insertInto('leads').values({ order: event.payload }).execute();
 *   },
 * });
 * http.createServer(receiver.listener).listen(8080);
 */
export function webhookReceiver<Source extends TransactionSource>(options: WebhookReceiverOptions<Source>): WebhookReceiver {
  const common = resolveCommon(options as WebhookReceiverOptions<TransactionSource>, 'secrets, consumer, database and handler');
  const maxBodyBytes = wholeOption('maxBodyBytes', options.maxBodyBytes, 2 * 1024 * 1024);
  const toleranceMs = wholeOption('toleranceMs', options.toleranceMs, 5 * 60_000);
  if (typeof options.secrets !== 'string' && !Array.isArray(options.secrets)) throw new ConfigError('secrets', 'pass the endpoint\'s whsec_… secret, or a list of them during a rotation');
  const secrets = typeof options.secrets === 'string' ? [options.secrets] : [...options.secrets];
  // Malformed secrets fail here, at start-up, not at the first request.
  verifyProbe(secrets);
  const box = inbox({ consumer: common.consumer, schema: common.schema });
  const life = lifecycle();
  const inFlight = new Set<Promise<unknown>>();
  let closing: Promise<void> | undefined;

  const reply = (status: number, body: Record<string, unknown>): WebhookReply => ({
    status,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const reject = (status: number, error: Error, message: string): WebhookReply => {
    common.onEvent({ type: 'rejected', status, error });
    return reply(status, { error: message });
  };

  async function handle(request: WebhookRequest): Promise<WebhookReply> {
    if (request.method !== undefined && request.method.toUpperCase() !== 'POST') {
      return { ...reply(405, { error: 'webhooks are POSTed' }), headers: { 'content-type': 'application/json', allow: 'POST' } };
    }
    if (closing) return { ...reject(503, new Error('the receiver is closing'), 'the receiver is closing; send again later'), headers: { 'content-type': 'application/json', 'retry-after': '5' } };
    const body = typeof request.body === 'string' ? Buffer.from(request.body, 'utf8') : request.body;
    if (body.byteLength > maxBodyBytes) return reject(413, new Error(`body of ${body.byteLength} bytes is over ${maxBodyBytes}`), 'body too large');
    let message: WebhookMessage;
    try {
      const verified = verifyWebhook(request.headers, body, secrets, { toleranceMs });
      const named = (name: string): string | undefined => header(request.headers, name);
      message = isCloudEventRequest(named)
        ? decodeCloudEventRequest(named, verified.body, verified.id, verified.timestamp)
        : decodeEnvelope(verified.body, verified.id, verified.timestamp);
    } catch (error) {
      if (error instanceof WebhookVerificationError) return reject(401, error, error.reason);
      return reject(400, error as Error, `not a tidings webhook: ${(error as Error).message}`);
    }
    const applying = runInTransaction(common.database, (trx) => box.handle(trx, message, (t) => runHandler(common.consumer, message, () => common.handler(t, message))));
    inFlight.add(applying);
    try {
      const outcome = await applying;
      common.onEvent({ type: 'committed', eventId: message.eventId, applied: outcome.applied });
      return reply(200, { id: message.eventId, status: outcome.applied ? 'applied' : 'duplicate' });
    } catch (error) {
      return reject(500, asError(error), 'the event could not be applied; it will be redelivered');
    } finally {
      inFlight.delete(applying);
    }
  }

  function close(): Promise<void> {
    closing ??= (async () => {
      while (inFlight.size > 0) await Promise.allSettled([...inFlight]);
      life.stopped();
    })();
    return closing;
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

  return Object.freeze({ handle, listener, close, done: life.done });
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
  if (secrets.length === 0) throw new ConfigError('secrets', 'pass at least one whsec_… secret');
  try {
    verifyWebhook({ 'webhook-id': 'probe', 'webhook-timestamp': '0', 'webhook-signature': 'v1,' }, '', secrets, { now: 0 });
  } catch (error) {
    if (!(error instanceof WebhookVerificationError)) throw error;
  }
}

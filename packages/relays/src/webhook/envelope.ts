import { payloadJson, type Json, type OutboxEvent } from '@tidings/outbox';
import type { ReceivedEvent, WebhookDelivery } from '../shared/consumer.ts';

/**
 * The JSON body of every webhook request, one event per request:
 *
 * ```json
 * {
 *   "id": "01J5Z8Q7X3M4K2N6P8R0S2T4V6",   // the event id; also the webhook-id header
 *   "topic": "orders.created",            // the event's topic (its type)
 *   "key": "order-1001",                  // ordering key, or null
 *   "tenant": "acme",                     // tenant, or null
 *   "createdAt": "2025-01-31T12:00:00.000Z", // when the event was published (not the attempt)
 *   "headers": { "traceparent": "00-…" }, // the event's string headers
 *   "payload": { "orderId": "order-1001" } // the event's payload, any JSON
 * }
 * ```
 *
 * The attempt's time is the `webhook-timestamp` header. Receivers must verify the signature
 * against the raw bytes before parsing them.
 */
export interface WebhookEnvelope {
  readonly id: string;
  readonly topic: string;
  readonly key: string | null;
  readonly tenant: string | null;
  readonly createdAt: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly payload: Json;
}

/** A verified webhook as the receiver hands it to its handler. */
export type WebhookMessage = ReceivedEvent<WebhookDelivery>;

/**
 * Serialises an event into the body sent (and signed) for it.
 *
 * @example
 * const body = encodeEnvelope(event); // Buffer of {"id":…,"topic":…,"payload":…}
 */
export function encodeEnvelope(event: OutboxEvent): Buffer {
  const envelope: Omit<WebhookEnvelope, 'payload'> = {
    id: event.eventId,
    topic: event.topic,
    key: event.key,
    tenant: event.tenant,
    createdAt: event.createdAt.toISOString(),
    headers: event.headers,
  };
  // The payload goes in as the JSON text it was stored as, never parsed and re-serialised.
  const fields = JSON.stringify(envelope);
  return Buffer.from(`${fields.slice(0, -1)},"payload":${payloadJson(event) ?? 'null'}}`, 'utf8');
}

/**
 * Parses a verified body into a message; throws a `TypeError` naming the first field that is
 * missing or of the wrong type.
 */
export function decodeEnvelope(body: Buffer, webhookId: string, sentAt: Date): WebhookMessage {
  const value = JSON.parse(body.toString('utf8')) as Partial<Record<keyof WebhookEnvelope, unknown>> | null;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TypeError('the body is not a JSON object');
  const text = (field: keyof WebhookEnvelope, nullable: boolean) => {
    const v = value[field];
    if (typeof v === 'string' || (nullable && v === null)) return v;
    throw new TypeError(`field "${field}" must be a string${nullable ? ' or null' : ''}`);
  };
  if (text('id', false) !== webhookId) throw new TypeError('field "id" differs from the webhook-id header');
  const createdAt = new Date(text('createdAt', false) as string);
  if (Number.isNaN(createdAt.getTime())) throw new TypeError('field "createdAt" is not an ISO date');
  const headers = value.headers ?? {};
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers) || Object.values(headers).some((v) => typeof v !== 'string')) {
    throw new TypeError('field "headers" must be an object of strings');
  }
  if (!('payload' in value)) throw new TypeError('field "payload" is missing');
  return {
    eventId: webhookId,
    topic: text('topic', false) as string,
    key: text('key', true),
    tenant: text('tenant', true),
    createdAt,
    headers: headers as Record<string, string>,
    payload: value.payload as Json,
    // Each delivery is a new request: the receiver cannot see the sender's earlier attempts.
    attempt: 1,
    delivery: { transport: 'webhook', sentAt },
  };
}

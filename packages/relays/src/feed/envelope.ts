import type { OutboxEvent } from '@tidings/outbox';
import type { EventFields } from '../shared/consumer.ts';
import { cursorText } from './cursor.ts';

/**
 * An event as the feeds send it: the SSE `data:` field and each item of a polling page. `cursor`
 * is the position right after this event; hand it back (`Last-Event-ID`, `?after=`) to resume.
 *
 * @example
 * source.addEventListener('orders.created', (e) => {
 *   const envelope: FeedEnvelope = JSON.parse(e.data);
 *   orders.add(envelope.payload, { dedupBy: envelope.eventId });
 * });
 */
export interface FeedEnvelope extends EventFields {
  readonly cursor: string;
  /** ISO 8601 time the event was published. */
  readonly createdAt: string;
}

const cache = new WeakMap<OutboxEvent, string>();

export function toEnvelope(event: OutboxEvent): FeedEnvelope {
  return {
    cursor: cursorText(event.position),
    eventId: event.eventId,
    topic: event.topic,
    key: event.key,
    tenant: event.tenant,
    payload: event.payload,
    headers: event.headers,
    createdAt: event.createdAt.toISOString(),
  };
}

/** The envelope as JSON, made once per event however many connections send it. */
export function envelopeJson(event: OutboxEvent): string {
  let text = cache.get(event);
  if (text === undefined) {
    text = JSON.stringify(toEnvelope(event));
    cache.set(event, text);
  }
  return text;
}

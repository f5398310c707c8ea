import { payloadJson, type Json, type OutboxEvent } from '@tidings/outbox';
import type { EventFields } from '../shared/consumer.ts';
import { cursorText } from './cursor.ts';
import { cloudEventAttributes, decodeHeadersExtension, encodeHeadersExtension, headersExtension, type ResolvedCloudEvents } from '../shared/cloud-events.ts';

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

/** The extension that carries a feed event's cursor in CloudEvents mode (the SSE `id:` too). */
export const cursorExtension = 'tidingscursor';

/**
 * How a feed writes each event: the tidings envelope (shared by every feed of the process), or,
 * with the `cloudEvents` option, a CloudEvent in the structured JSON format (made once per event
 * for this feed): the attributes, `tidingscursor`, `tidingsheaders` and the payload as `data`.
 */
export function feedEncoding(cloudEvents: ResolvedCloudEvents | undefined): (event: OutboxEvent) => string {
  if (cloudEvents === undefined) return envelopeJson;
  const texts = new WeakMap<OutboxEvent, string>();
  return (event) => {
    let text = texts.get(event);
    if (text === undefined) {
      const rest = encodeHeadersExtension(event.headers);
      const fields = JSON.stringify({
        ...cloudEventAttributes(event, cloudEvents),
        [cursorExtension]: cursorText(event.position),
        ...(rest === undefined ? {} : { [headersExtension]: rest }),
      });
      // The payload goes in as the JSON text it was stored as, never parsed and re-serialised.
      text = `${fields.slice(0, -1)},"data":${payloadJson(event) ?? 'null'}}`;
      texts.set(event, text);
    }
    return text;
  };
}

/**
 * What a feed consumer reads from one event's JSON: a tidings envelope as it is, a CloudEvent
 * (it has `specversion`) turned into one. Undefined when it is neither.
 */
export function feedEnvelopeOf(value: unknown): FeedEnvelope | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const fields = value as Record<string, unknown>;
  if (fields.specversion === undefined) {
    return typeof fields.cursor === 'string' && typeof fields.eventId === 'string' ? (value as FeedEnvelope) : undefined;
  }
  const text = (name: string): string | undefined => (typeof fields[name] === 'string' ? (fields[name] as string) : undefined);
  const cursor = text(cursorExtension);
  const eventId = text('id');
  const topic = text('type');
  if (cursor === undefined || eventId === undefined || topic === undefined) return undefined;
  return {
    cursor,
    eventId,
    topic,
    key: text('subject') ?? null,
    tenant: text('tidingstenant') ?? null,
    payload: (fields.data ?? null) as Json,
    headers: decodeHeadersExtension(fields[headersExtension], fields),
    createdAt: text('time') ?? '',
  };
}

import { payloadJson, type Json, type OutboxEvent } from '@tidings/outbox';
import { InvalidRecordError, KafkaEncodeError } from './errors.ts';
import type { KafkaRecord } from './producer-client.ts';
import type { KafkaDelivery, ReceivedEvent } from '../shared/consumer.ts';
import { cloudEventAttributes, cloudEventsContentType, wireVersion, type ResolvedCloudEvents } from '../shared/cloud-events.ts';

/**
 * The Kafka headers tidings writes next to the event's own headers. The event's headers travel
 * under their own names (so `traceparent` is where OpenTelemetry instrumentation looks for it);
 * an event header whose name starts with `tidings_` or `ce_`, or is `content-type`, travels as
 * `tidings_header:<name>`. With the `cloudEvents` option the CloudEvents attributes travel as
 * `ce_<attribute>` headers (binary content mode).
 */
export const kafkaHeaders = {
  /** `application/json`: how the value is encoded (the CloudEvents `datacontenttype` too). */
  contentType: 'content-type',
  /** The wire format's version, `1`. */
  wireVersion: 'tidings_wire_version',
  cloudEventsPrefix: 'ce_',
  /** The event id (ULID): what every inbox deduplicates on. */
  eventId: 'tidings_event_id',
  /** The outbox topic, which the `topic` option may have mapped to another Kafka topic. */
  topic: 'tidings_topic',
  /** Present only for events that have a tenant. */
  tenant: 'tidings_tenant',
  /** When the event was written, ISO 8601 with milliseconds. The record's own timestamp is the send time. */
  createdAt: 'tidings_created_at',
  escapedPrefix: 'tidings_header:',
  /** Written by the consumer helper on records it copies to a dead-letter topic. */
  deadLetterReason: 'tidings_dead_letter_reason',
  error: 'tidings_error',
  source: 'tidings_source',
  attempts: 'tidings_attempts',
} as const;

/** Header names tidings writes itself; an event header of such a name is escaped. */
const reserved = /^(tidings_|ce_|content-type$)/i;

/** Kafka's own rule for topic names. */
const kafkaTopicName = /^[A-Za-z0-9._-]{1,249}$/;

/** An encoded event and its size as it counts against Kafka's record and request limits. */
export interface EncodedRecord extends KafkaRecord {
  readonly bytes: number;
}

/**
 * Turns an outbox event into a Kafka record: key = the event's key, value = the payload as UTF-8
 * JSON, event id, topic, tenant and creation time in `tidings_*` headers next to the event's own,
 * `content-type: application/json`, and with `cloudEvents` the `ce_*` attributes.
 * Throws `KafkaEncodeError` when the topic name is not one Kafka accepts or the record is over
 * `maxRecordBytes`.
 *
 * @example
 * const record = encodeEvent(event, event.topic, 1_000_000);
 * // { topic: 'orders.created', key: 'order-7', value: <Buffer 7b …>, headers: { tidings_event_id: '01J…', … } }
 */
export function encodeEvent(event: OutboxEvent, topic: string, maxRecordBytes: number, cloudEvents?: ResolvedCloudEvents): EncodedRecord {
  if (typeof topic !== 'string' || !kafkaTopicName.test(topic) || topic === '.' || topic === '..') {
    throw new KafkaEncodeError('invalid-topic', event, `the topic option mapped it to ${JSON.stringify(topic)}, which is not a Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -)`);
  }
  const headers: Record<string, string> = {};
  // Upper bound of the record framing: lengths, timestamp and offset deltas as varints.
  let bytes = 48;
  const put = (name: string, value: string): void => {
    headers[name] = value;
    bytes += 10 + Buffer.byteLength(name) + Buffer.byteLength(value);
  };
  for (const [name, value] of Object.entries(event.headers)) put(reserved.test(name) ? kafkaHeaders.escapedPrefix + name : name, value);
  put(kafkaHeaders.eventId, event.eventId);
  put(kafkaHeaders.topic, event.topic);
  if (event.tenant !== null) put(kafkaHeaders.tenant, event.tenant);
  put(kafkaHeaders.createdAt, event.createdAt.toISOString());
  put(kafkaHeaders.contentType, cloudEventsContentType);
  put(kafkaHeaders.wireVersion, wireVersion);
  if (cloudEvents !== undefined) {
    for (const [name, value] of Object.entries(cloudEventAttributes(event, cloudEvents))) {
      // The content type is the record's content-type header, as the Kafka binding asks.
      if (name !== 'datacontenttype') put(kafkaHeaders.cloudEventsPrefix + name, value);
    }
  }
  const value = Buffer.from(payloadJson(event), 'utf8');
  bytes += value.length + (event.key === null ? 0 : Buffer.byteLength(event.key));
  if (bytes > maxRecordBytes) {
    throw new KafkaEncodeError(
      'too-large',
      event,
      `its record takes about ${bytes} bytes, over maxRecordBytes (${maxRecordBytes}). Raise the topic's max.message.bytes and the ` +
        'transport options maxRecordBytes and maxRequestBytes together, or keep large data out of the event.',
    );
  }
  return { topic, key: event.key, value, headers, partitionKey: event.key ?? event.eventId, bytes };
}

/** Where a record sits in Kafka. */
export interface KafkaRecordPosition {
  readonly topic: string;
  readonly partition: number;
  /** The record's offset, a decimal string (offsets are 64-bit). */
  readonly offset: string;
  /** The record's timestamp in milliseconds, a decimal string. */
  readonly timestamp: string;
}

/** What {@link decodeRecord} needs of a consumed kafkajs message. */
export interface KafkaMessageLike {
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly offset: string;
  readonly timestamp: string;
  readonly headers?: Readonly<Record<string, Buffer | string | (Buffer | string)[] | undefined>>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The event a consumed record holds. A record without a `tidings_event_id` header (written by
 * another producer) gets the id `kafka:<topic>/<partition>@<offset>`, which deduplicates
 * redeliveries of that record only; without `tidings_topic` its topic is the Kafka topic.
 */
export type KafkaEvent = ReceivedEvent<KafkaDelivery>;

/**
 * Reads a consumed Kafka record as a tidings event (its first run: `attempt` 1). Throws `InvalidRecordError` when it has no
 * value or its value is not UTF-8 JSON.
 *
 * @example
 * await consumer.run({
 *   eachMessage: async ({ topic, partition, message }) => {
 *     const event = decodeRecord(topic, partition, message);
 *     console.log(event.eventId, event.key, event.payload);
 *   },
 * });
 */
export function decodeRecord(topic: string, partition: number, message: KafkaMessageLike): KafkaEvent {
  const record = { topic, partition, offset: message.offset, timestamp: message.timestamp };
  if (message.value === null) throw new InvalidRecordError('no-value', record, 'it has no value (a tombstone?)');
  let payload: Json;
  try {
    payload = JSON.parse(utf8.decode(message.value)) as Json;
  } catch (error) {
    throw new InvalidRecordError('invalid-json', record, `its value is not UTF-8 JSON (${(error as Error).message})`);
  }
  const own: Record<string, string> = {};
  const text = (name: string): string | null => {
    const value = message.headers?.[name];
    const first = Array.isArray(value) ? value[0] : value;
    return first === undefined ? null : first.toString();
  };
  for (const name of Object.keys(message.headers ?? {})) {
    const value = text(name);
    if (value === null) continue;
    if (name.startsWith(kafkaHeaders.escapedPrefix)) own[name.slice(kafkaHeaders.escapedPrefix.length)] = value;
    else if (!reserved.test(name)) own[name] = value;
  }
  const createdAt = text(kafkaHeaders.createdAt);
  const date = createdAt === null ? null : new Date(createdAt);
  return {
    eventId: text(kafkaHeaders.eventId) || `kafka:${topic}/${partition}@${message.offset}`,
    topic: text(kafkaHeaders.topic) || topic,
    key: message.key === null ? null : message.key.toString('utf8'),
    tenant: text(kafkaHeaders.tenant),
    payload,
    headers: own,
    createdAt: date !== null && !Number.isNaN(date.getTime()) ? date : null,
    attempt: 1,
    delivery: { transport: 'kafka', ...record },
  };
}

import { payloadJson, type Json, type OutboxEvent } from '@tidings/outbox';
import type { MessageProperties, Options } from 'amqplib';
import { InvalidMessageError, RabbitmqEncodeError } from './errors.ts';
import type { RabbitmqDelivery, ReceivedEvent } from '../shared/consumer.ts';
import { cloudEventAttributes, wireVersion, type ResolvedCloudEvents } from '../shared/cloud-events.ts';

/**
 * The AMQP headers tidings writes next to the event's own headers. The event's headers travel
 * under their own names (so `traceparent` is where OpenTelemetry instrumentation looks for it),
 * except names the broker or tidings interpret (`CC`, `BCC`, `x-death`, `x-tidings-*`,
 * `cloudEvents:*`, …), which travel as `x-tidings-header:<name>`. With the `cloudEvents` option the
 * CloudEvents attributes travel as `cloudEvents:<attribute>` headers (binary content mode).
 *
 * @example
 * // a consumer that does not use tidings
 * const key = message.properties.headers?.[amqpHeaders.key]; // 'x-tidings-key'
 * const why = deadLetter.properties.headers?.[amqpHeaders.deadLetterReason]; // e.g. 'invalid-json'
 */
export const amqpHeaders = {
  key: 'x-tidings-key',
  tenant: 'x-tidings-tenant',
  /** Creation time in ISO 8601 with milliseconds; the AMQP `timestamp` property has whole seconds. */
  createdAt: 'x-tidings-created-at',
  /** The wire format's version, `1`. */
  wireVersion: 'x-tidings-wire-version',
  cloudEventsPrefix: 'cloudEvents:',
  /** Set by the consumer helper on messages it republishes without a `type`. */
  topic: 'x-tidings-topic',
  /** How many times the consumer helper has run the handler for this message, plus one. */
  attempt: 'x-tidings-attempt',
  lastError: 'x-tidings-last-error',
  deadLetterReason: 'x-tidings-dead-letter-reason',
  error: 'x-tidings-error',
  queue: 'x-tidings-queue',
  escapedPrefix: 'x-tidings-header:',
} as const;

/** Header names RabbitMQ reads or writes itself: `CC`/`BCC` route messages, the rest record dead-lettering and redelivery. */
const brokerHeader = /^(cc|bcc|x-death|x-first-death-.*|x-last-death-.*|x-delivery-count|x-received-from|x-shovelled.*|x-opt-deaths)$/i;
/** Header names tidings writes itself, the CloudEvents attributes among them (`cloudEvents_` is the binding's other spelling). */
const tidingsHeader = /^(x-tidings-|cloudEvents[:_])/i;

/** Whether RabbitMQ itself reads or writes a header of this name (routing, dead-letter and redelivery records). */
export function isBrokerHeader(name: string): boolean {
  return brokerHeader.test(name);
}

/** amqplib encodes the header table into a 64 KiB scratch buffer; RabbitMQ's frames are 128 KiB. */
const maxHeaderBytes = 60 * 1024;

/** An event as an AMQP message: body and properties for `publish()`. */
export interface EncodedMessage {
  readonly content: Buffer;
  readonly properties: Options.Publish;
}

/**
 * Turns an outbox event into a persistent AMQP message: `messageId` = event id, `type` = topic,
 * `timestamp` = creation time in seconds, JSON body, key/tenant/creation time in `x-tidings-*`
 * headers next to the event's own headers; with `cloudEvents`, the `cloudEvents:*` attributes. Throws `RabbitmqEncodeError` when AMQP cannot carry it.
 *
 * @example
 * const { content, properties } = encodeEvent(event);
 * channel.publish('tidings', event.topic, content, { ...properties, mandatory: true });
 */
export function encodeEvent(event: OutboxEvent, cloudEvents?: ResolvedCloudEvents): EncodedMessage {
  const headers: Record<string, string> = {};
  let headerBytes = 0;
  const put = (name: string, value: string): void => {
    const nameBytes = Buffer.byteLength(name);
    if (nameBytes > 255) {
      throw new RabbitmqEncodeError(event.eventId, `header name "${name.slice(0, 40)}…" is ${nameBytes} bytes; AMQP header names hold at most 255`);
    }
    headerBytes += 6 + nameBytes + Buffer.byteLength(value);
    headers[name] = value;
  };
  for (const [name, value] of Object.entries(event.headers)) {
    put(brokerHeader.test(name) || tidingsHeader.test(name) ? amqpHeaders.escapedPrefix + name : name, value);
  }
  if (event.key !== null) put(amqpHeaders.key, event.key);
  if (event.tenant !== null) put(amqpHeaders.tenant, event.tenant);
  put(amqpHeaders.createdAt, event.createdAt.toISOString());
  put(amqpHeaders.wireVersion, wireVersion);
  if (cloudEvents !== undefined) {
    for (const [name, value] of Object.entries(cloudEventAttributes(event, cloudEvents))) {
      // The content type is the message's content-type property, as the AMQP binding asks.
      if (name !== 'datacontenttype') put(amqpHeaders.cloudEventsPrefix + name, value);
    }
  }
  if (headerBytes > maxHeaderBytes) {
    throw new RabbitmqEncodeError(
      event.eventId,
      `its headers and key take ${headerBytes} bytes, over the ${maxHeaderBytes} an AMQP header frame carries; move large values into the payload`,
    );
  }
  return {
    content: Buffer.from(payloadJson(event), 'utf8'),
    properties: {
      messageId: event.eventId,
      type: event.topic,
      contentType: 'application/json',
      timestamp: Math.floor(event.createdAt.getTime() / 1000),
      persistent: true,
      headers,
    },
  };
}


/** What `decodeMessage` needs of an amqplib message. */
export interface AmqpMessageLike {
  readonly content: Buffer;
  readonly fields: { readonly routingKey: string; readonly redelivered?: boolean };
  readonly properties: Pick<MessageProperties, 'messageId' | 'type' | 'contentType' | 'timestamp' | 'headers'>;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads an AMQP message as a tidings event, as the consumer helper hands it to its handler
 * (`queue` is what `event.delivery.queue` says): `messageId` is required, the body must be UTF-8 JSON
 * (content type absent or JSON). Throws `InvalidMessageError` naming the reason otherwise.
 *
 * @example
 * channel.consume('billing', (message) => {
 *   const event = decodeMessage(message!);
 *   console.log(event.eventId, event.topic, event.payload);
 * });
 */
export function decodeMessage(message: AmqpMessageLike, queue = ''): ReceivedEvent<RabbitmqDelivery> {
  const { properties, fields } = message;
  const eventId = typeof properties.messageId === 'string' ? properties.messageId.trim() : '';
  if (eventId === '') {
    throw new InvalidMessageError('missing-message-id', 'the message has no message-id property; tidings needs it as the event id to deduplicate deliveries');
  }
  const contentType = typeof properties.contentType === 'string' ? properties.contentType : undefined;
  if (contentType !== undefined && !/^application\/([\w.+-]+\+)?json\s*(;.*)?$/i.test(contentType)) {
    throw new InvalidMessageError('unsupported-content-type', `the content type is "${contentType}"; tidings consumers read application/json bodies`);
  }
  let payload: Json;
  try {
    payload = JSON.parse(utf8.decode(message.content)) as Json;
  } catch (error) {
    throw new InvalidMessageError('invalid-json', `the body is not UTF-8 JSON (${(error as Error).message})`);
  }
  const raw = (properties.headers ?? {}) as Record<string, unknown>;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (typeof value !== 'string') continue;
    if (name.startsWith(amqpHeaders.escapedPrefix)) headers[name.slice(amqpHeaders.escapedPrefix.length)] = value;
    else if (!tidingsHeader.test(name) && !brokerHeader.test(name)) headers[name] = value;
  }
  const text = (name: string): string | null => (typeof raw[name] === 'string' ? (raw[name] as string) : null);
  const topic = (typeof properties.type === 'string' && properties.type) || text(amqpHeaders.topic) || fields.routingKey;
  return {
    eventId,
    topic,
    key: text(amqpHeaders.key),
    tenant: text(amqpHeaders.tenant),
    payload,
    headers,
    createdAt: createdAtOf(text(amqpHeaders.createdAt), properties.timestamp),
    attempt: attemptOf(raw[amqpHeaders.attempt]),
    delivery: { transport: 'rabbitmq', queue, redelivered: fields.redelivered === true },
  };
}

/** The `x-tidings-attempt` header of a message: 1 when absent or unreadable. */
export function attemptOf(value: unknown): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : Number.NaN;
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

function createdAtOf(iso: string | null, timestamp: unknown): Date | null {
  if (iso !== null) {
    const date = new Date(iso);
    if (!Number.isNaN(date.getTime())) return date;
  }
  return typeof timestamp === 'number' && Number.isFinite(timestamp) ? new Date(timestamp * 1000) : null;
}

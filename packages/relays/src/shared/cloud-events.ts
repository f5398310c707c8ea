import { ConfigError, type OutboxEvent } from '@tidings/outbox';

/**
 * The version of the wire format documented in the README ("Wire format"). Every transport sends
 * it (AMQP `x-tidings-wire-version`, Kafka `tidings_wire_version`, HTTP `tidings-wire-version`).
 * Adding a header or a field keeps the version; renaming, removing or re-encoding one raises it.
 */
export const wireVersion = '1';

/**
 * The `cloudEvents` option of every transport and feed: send each event as a CloudEvent 1.0,
 * in binary content mode where the protocol has headers (RabbitMQ, Kafka, webhooks) and in
 * structured JSON mode where it does not (SSE, polling).
 *
 * @example
 * kafkaTransport({ brokers, cloudEvents: { source: 'https://orders.example.com' } })
 */
export interface CloudEventsOptions {
  /** The CloudEvents `source` of every event: a URI reference naming the producing service, e.g. `/orders` or `urn:acme:orders`. */
  readonly source: string;
}

/** A checked `cloudEvents` option. */
export interface ResolvedCloudEvents {
  readonly source: string;
}

const knownKeys = ['source'];

/**
 * Checks a `cloudEvents` option; `undefined` means off. Anything else must be `{ source }` with a
 * non-empty URI reference (no spaces or control characters), else a `ConfigError` naming the field.
 */
export function resolveCloudEvents(value: unknown): ResolvedCloudEvents | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ConfigError('cloudEvents', `expected { source: "<URI reference of the producer>" }, e.g. { source: "/orders" }, got ${describe(value)}`);
  }
  for (const key of Object.keys(value)) {
    if (!knownKeys.includes(key)) throw new ConfigError(`cloudEvents.${key}`, `unknown key; the known keys are ${knownKeys.join(', ')}`);
  }
  const { source } = value as { source?: unknown };
  if (typeof source !== 'string' || source === '') {
    throw new ConfigError('cloudEvents.source', `expected a non-empty URI reference naming the producer (e.g. "/orders" or "https://orders.example.com"), got ${describe(source)}`);
  }
  if (!/^[\x21-\x7e]{1,2048}$/.test(source)) {
    throw new ConfigError('cloudEvents.source', `expected a URI reference of at most 2048 printable ASCII characters without spaces (percent-encode the rest), got ${describe(source)}`);
  }
  return { source };
}

/** The CloudEvents attributes of an event, in the order they are written; absent ones are left out. */
export interface CloudEventAttributes {
  readonly specversion: '1.0';
  readonly id: string;
  readonly source: string;
  readonly type: string;
  readonly subject?: string;
  readonly time: string;
  readonly datacontenttype: 'application/json';
  /** The distributed tracing extension, from the event's own `traceparent` and `tracestate` headers. */
  readonly traceparent?: string;
  readonly tracestate?: string;
  /** Extension: the event's tenant. */
  readonly tidingstenant?: string;
}

export const cloudEventsContentType = 'application/json';

/**
 * id = event id, type = topic, subject = key, time = creation time, the trace context as the
 * distributed tracing extension and the tenant as `tidingstenant`. The data is the payload.
 */
export function cloudEventAttributes(event: OutboxEvent, settings: ResolvedCloudEvents): CloudEventAttributes {
  const { traceparent, tracestate } = event.headers;
  return {
    specversion: '1.0',
    id: event.eventId,
    source: settings.source,
    type: event.topic,
    ...(event.key === null ? {} : { subject: event.key }),
    time: event.createdAt.toISOString(),
    datacontenttype: cloudEventsContentType,
    ...(traceparent === undefined ? {} : { traceparent }),
    ...(tracestate === undefined ? {} : { tracestate }),
    ...(event.tenant === null ? {} : { tidingstenant: event.tenant }),
  };
}

/**
 * The extension that carries the event's other headers where the protocol has no place for them
 * (webhooks and feeds): base64 of the UTF-8 JSON object of every header but `traceparent` and
 * `tracestate`; absent when there are none.
 */
export const headersExtension = 'tidingsheaders';

export function encodeHeadersExtension(headers: Readonly<Record<string, string>>): string | undefined {
  const rest = Object.entries(headers).filter(([name]) => name !== 'traceparent' && name !== 'tracestate');
  return rest.length === 0 ? undefined : Buffer.from(JSON.stringify(Object.fromEntries(rest)), 'utf8').toString('base64');
}

/** The event headers a CloudEvent carries: `tidingsheaders` plus the trace context attributes. Throws a `TypeError` when malformed. */
export function decodeHeadersExtension(value: unknown, trace: { traceparent?: unknown; tracestate?: unknown }): Record<string, string> {
  const headers: Record<string, string> = {};
  if (value !== undefined && value !== null) {
    let parsed: unknown;
    try {
      parsed = typeof value === 'string' ? JSON.parse(Buffer.from(value, 'base64').toString('utf8')) : undefined;
    } catch {
      parsed = undefined;
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || Object.values(parsed).some((v) => typeof v !== 'string')) {
      throw new TypeError(`the ${headersExtension} attribute must be base64 of a JSON object of strings`);
    }
    Object.assign(headers, parsed);
  }
  if (typeof trace.traceparent === 'string') headers.traceparent = trace.traceparent;
  if (typeof trace.tracestate === 'string') headers.tracestate = trace.tracestate;
  return headers;
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  try {
    return JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

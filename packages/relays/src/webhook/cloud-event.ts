import { payloadJson, type Json, type OutboxEvent } from '@tidings/outbox';
import { cloudEventAttributes, decodeHeadersExtension, encodeHeadersExtension, headersExtension, type ResolvedCloudEvents } from '../shared/cloud-events.ts';
import type { WebhookMessage } from './envelope.ts';

/** The header prefix of CloudEvents attributes in HTTP binary content mode. */
export const cloudEventsHeaderPrefix = 'ce-';

/**
 * A webhook as a CloudEvent in HTTP binary content mode: the body is the payload's JSON (what the
 * signature covers), the attributes are `ce-*` headers, `datacontenttype` is `Content-Type`.
 * String values are percent-encoded where the HTTP binding asks (space, `"`, `%` and everything
 * outside printable ASCII), so a key or tenant in any script fits in a header.
 */
export function cloudEventBody(event: OutboxEvent): Buffer {
  return Buffer.from(payloadJson(event) ?? 'null', 'utf8');
}

export function cloudEventHeaders(event: OutboxEvent, settings: ResolvedCloudEvents): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(cloudEventAttributes(event, settings))) {
    if (name !== 'datacontenttype') headers[cloudEventsHeaderPrefix + name] = percentEncode(value);
  }
  const rest = encodeHeadersExtension(event.headers);
  if (rest !== undefined) headers[cloudEventsHeaderPrefix + headersExtension] = rest;
  return headers;
}

/** Whether a request is a CloudEvent in binary mode: it has a `ce-specversion` header. */
export function isCloudEventRequest(header: (name: string) => string | undefined): boolean {
  return header(`${cloudEventsHeaderPrefix}specversion`) !== undefined;
}

/**
 * Reads a verified CloudEvents-mode webhook: `ce-id` must equal `webhook-id`; type → topic,
 * subject → key, time → creation time, `tidingstenant` → tenant, `tidingsheaders` and the trace
 * context → headers, the body → payload. Throws a `TypeError` naming what is missing or wrong.
 */
export function decodeCloudEventRequest(header: (name: string) => string | undefined, body: Buffer, webhookId: string, sentAt: Date): WebhookMessage {
  const attribute = (name: string): string | undefined => {
    const value = header(cloudEventsHeaderPrefix + name);
    return value === undefined ? undefined : percentDecode(value);
  };
  const required = (name: string): string => {
    const value = attribute(name);
    if (value === undefined || value === '') throw new TypeError(`header "${cloudEventsHeaderPrefix}${name}" is missing`);
    return value;
  };
  if (required('specversion') !== '1.0') throw new TypeError(`header "ce-specversion" is ${JSON.stringify(attribute('specversion'))}; tidings reads CloudEvents 1.0`);
  if (required('id') !== webhookId) throw new TypeError('header "ce-id" differs from the webhook-id header');
  const createdAt = new Date(required('time'));
  if (Number.isNaN(createdAt.getTime())) throw new TypeError('header "ce-time" is not an RFC 3339 time');
  const contentType = header('content-type');
  if (contentType !== undefined && !/^application\/([\w.+-]+\+)?json\s*(;.*)?$/i.test(contentType)) {
    throw new TypeError(`the content type is "${contentType}"; tidings receivers read JSON data`);
  }
  const headers = decodeHeadersExtension(header(cloudEventsHeaderPrefix + headersExtension), {
    traceparent: attribute('traceparent') ?? header('traceparent'),
    tracestate: attribute('tracestate') ?? header('tracestate'),
  });
  return {
    eventId: webhookId,
    topic: required('type'),
    key: attribute('subject') ?? null,
    tenant: attribute('tidingstenant') ?? null,
    createdAt,
    headers,
    payload: JSON.parse(body.toString('utf8')) as Json,
    attempt: 1,
    delivery: { transport: 'webhook', sentAt },
  };
}

const needsEncoding = /[^\x21-\x7e]|["%]/u;

function percentEncode(value: string): string {
  if (!needsEncoding.test(value)) return value;
  let out = '';
  for (const char of value) {
    if (/^[\x21-\x7e]$/.test(char) && char !== '"' && char !== '%') out += char;
    else for (const byte of Buffer.from(char, 'utf8')) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

function percentDecode(value: string): string {
  if (!value.includes('%')) return value;
  try {
    return decodeURIComponent(value);
  } catch {
    throw new TypeError(`a CloudEvents header holds a malformed percent-encoding: ${JSON.stringify(value.slice(0, 80))}`);
  }
}

import type { Message } from 'amqplib';
import { amqpHeaders, isBrokerHeader, type EncodedMessage } from './message-codec.ts';

/**
 * A persistent copy of a consumed message, to publish to a retry queue or the dead-letter
 * exchange: same body and properties, the broker's bookkeeping headers dropped (the copy is a new
 * message; `x-tidings-attempt` counts the attempts), `extra` headers added. The topic is kept in
 * a header when the message has no `type`, since the copy's routing key is a queue name.
 */
export function copyMessage(message: Message, extra: Record<string, string | number | undefined>): EncodedMessage {
  const p = message.properties;
  const headers: Record<string, unknown> = {};
  for (const [name, value] of Object.entries((p.headers ?? {}) as Record<string, unknown>)) {
    if (!isBrokerHeader(name)) headers[name] = value;
  }
  if (!p.type && headers[amqpHeaders.topic] === undefined) headers[amqpHeaders.topic] = message.fields.routingKey;
  for (const [name, value] of Object.entries(extra)) if (value !== undefined) headers[name] = value;
  const properties: Record<string, unknown> = {
    messageId: p.messageId,
    type: p.type,
    contentType: p.contentType,
    contentEncoding: p.contentEncoding,
    timestamp: p.timestamp,
    correlationId: p.correlationId,
    replyTo: p.replyTo,
    appId: p.appId,
    priority: p.priority,
    persistent: true,
    headers,
  };
  // Absent properties stay absent (amqplib would otherwise send them empty); `expiration` and
  // `userId` are dropped on purpose: the copy must not expire, and the broker checks userId.
  for (const key of Object.keys(properties)) if (properties[key] === undefined || properties[key] === null) delete properties[key];
  return { content: message.content, properties };
}

/** An error as one header-sized line. */
export function describeError(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return text.length > 1_000 ? `${text.slice(0, 1_000)}…` : text;
}

import { context, SpanKind, SpanStatusCode, trace, type Attributes } from '@opentelemetry/api';
import { asError, attributes, instruments, producerContext, tidingsTracer } from '@tidings/outbox/internal';
import type { ReceivedEvent } from './consumer.ts';

const labelsByConsumer = new Map<string, Attributes>();

function labelsOf(consumer: string, transport: string): Attributes {
  const key = `${transport}\u0000${consumer}`;
  let labels = labelsByConsumer.get(key);
  if (!labels) {
    labels = attributes({ consumer, transport });
    labelsByConsumer.set(key, labels);
  }
  return labels;
}

/** Where the event was read from, as the messaging conventions name it: the queue, the Kafka topic, or the outbox topic of a feed or webhook. */
function destinationOf(event: ReceivedEvent): string {
  const delivery = event.delivery;
  if (delivery.transport === 'rabbitmq') return delivery.queue;
  if (delivery.transport === 'kafka') return delivery.topic;
  return event.topic;
}

/**
 * Runs one consumer handler in a CONSUMER span (operation `process`) whose parent is the context
 * the event was published in, so the handler's own spans (its database statements) join the
 * publisher's trace; records the handler's duration and, when it throws, a failure. Every consumer
 * helper calls its handler through this, and only its handler: the inbox mark and checkpoint
 * around it are tidings' own work.
 */
export async function runHandler<T>(consumer: string, event: ReceivedEvent, handler: () => T | Promise<T>): Promise<T> {
  const transport = event.delivery.transport;
  const destination = destinationOf(event);
  const attrs: Attributes = {
    'messaging.system': transport,
    'messaging.operation.type': 'process',
    'messaging.operation.name': 'process',
    'messaging.destination.name': destination,
    'messaging.message.id': event.eventId,
    'messaging.consumer.group.name': consumer,
    'tidings.attempt': event.attempt,
  };
  if (event.delivery.transport === 'kafka') attrs['messaging.destination.partition.id'] = String(event.delivery.partition);
  const parent = producerContext(event.headers);
  const span = tidingsTracer().startSpan(`process ${destination}`, { kind: SpanKind.CONSUMER, attributes: attrs }, parent);
  const labels = labelsOf(consumer, transport);
  const started = performance.now();
  try {
    return await context.with(trace.setSpan(parent, span), handler);
  } catch (error) {
    const failure = asError(error);
    span.recordException(failure);
    span.setStatus({ code: SpanStatusCode.ERROR, message: failure.message });
    instruments().handlerFailures.add(1, labels);
    throw error;
  } finally {
    span.end();
    instruments().handlerDuration.record((performance.now() - started) / 1000, labels);
  }
}

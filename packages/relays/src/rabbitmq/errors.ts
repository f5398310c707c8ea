import { TidingsError } from '@tidings/outbox';

/** Why RabbitMQ did not take an event: there was no queue for it, or no exchange. */
export type UnroutableReason = 'no-route' | 'no-exchange';

/**
 * RabbitMQ accepted the publish but no queue received it: the message came back as `basic.return`
 * (mandatory publish, no binding matched), or its exchange does not exist. Never counted as
 * delivered; reported as `retry` or `failed` according to the transport's `unroutable` option.
 *
 * @example
 * onEvent: (event) => {
 *   if (event.type === 'retry' && event.error instanceof RabbitmqUnroutableError) {
 *     log.warn(`no queue for ${event.error.routingKey} on ${event.error.exchange}`);
 *   }
 * }
 */
export class RabbitmqUnroutableError extends TidingsError {
  override readonly name = 'RabbitmqUnroutableError';
  readonly reason: UnroutableReason;
  readonly eventId: string;
  readonly topic: string;
  readonly exchange: string;
  readonly routingKey: string;
  /** The broker's reply, e.g. `312 NO_ROUTE`, when it sent one. */
  readonly reply: string | undefined;
  constructor(reason: UnroutableReason, event: { eventId: string; topic: string }, route: { exchange: string; routingKey: string }, reply?: string) {
    const where = `exchange "${route.exchange}" with routing key "${route.routingKey}"`;
    super(
      reason === 'no-route'
        ? `event ${event.eventId} (topic "${event.topic}") reached no queue: RabbitMQ returned it from ${where}${reply ? ` (${reply})` : ''}. ` +
            'Bind a queue to that routing key, or give the exchange an alternate exchange if some topics legitimately have no subscriber.'
        : `event ${event.eventId} (topic "${event.topic}") was not published: ${where} does not exist. ` +
            'Declare the exchange (the transport option `exchanges`), or fix the `route` option.',
    );
    this.reason = reason;
    this.eventId = event.eventId;
    this.topic = event.topic;
    this.exchange = route.exchange;
    this.routingKey = route.routingKey;
    this.reply = reply;
  }
}

/** RabbitMQ answered `basic.nack`: it could not take the message (an internal error, or a full queue with `x-overflow: reject-publish`). */
export class RabbitmqNackError extends TidingsError {
  override readonly name = 'RabbitmqNackError';
  readonly eventId: string;
  constructor(eventId: string) {
    super(
      `RabbitMQ refused event ${eventId} (basic.nack): a queue it routes to may be full with x-overflow reject-publish, ` +
        'or the broker had an internal error. It will be sent again.',
    );
    this.eventId = eventId;
  }
}

export type RabbitmqConnectionReason = 'connect-failed' | 'connection-lost' | 'blocked' | 'confirm-timeout' | 'backing-off';

/**
 * The event may or may not have reached RabbitMQ, and RabbitMQ never confirmed it: the connection
 * could not be opened, was lost, is blocked by a resource alarm, or the confirm did not come in time.
 * Always reported as `retry`; sending again may duplicate it, never lose it.
 */
export class RabbitmqConnectionError extends TidingsError {
  override readonly name = 'RabbitmqConnectionError';
  readonly reason: RabbitmqConnectionReason;
  constructor(reason: RabbitmqConnectionReason, detail: string, options?: { cause?: unknown }) {
    super(detail, options);
    this.reason = reason;
  }
}

/** An event that AMQP cannot carry as it is (for example a header name over 255 bytes). Reported as `failed`. */
export class RabbitmqEncodeError extends TidingsError {
  override readonly name = 'RabbitmqEncodeError';
  readonly eventId: string;
  constructor(eventId: string, detail: string) {
    super(`event ${eventId} cannot be sent over AMQP: ${detail}`);
    this.eventId = eventId;
  }
}


/** Why the consumer helper sent a message to the dead-letter exchange; carried in the `x-tidings-dead-letter-reason` header. */
export type DeadLetterReason = 'missing-message-id' | 'invalid-json' | 'unsupported-content-type' | 'handler-failed';

/** A message the consumer helper cannot turn into an event; it goes to the dead-letter exchange with this reason. */
export class InvalidMessageError extends TidingsError {
  override readonly name = 'InvalidMessageError';
  readonly reason: Exclude<DeadLetterReason, 'handler-failed'>;
  constructor(reason: Exclude<DeadLetterReason, 'handler-failed'>, detail: string) {
    super(detail);
    this.reason = reason;
  }
}

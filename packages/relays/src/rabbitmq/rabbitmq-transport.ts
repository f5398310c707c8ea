import { delivered, failed, retry, TransportClosedError, unavailable, type OutboxEvent, type SendOutcome, type Transport, type TransportCapabilities } from '@tidings/outbox';
import { Backoff } from '../shared/backoff.ts';
import { amqplib, describeUrl } from './connection.ts';
import { RabbitmqConnectionError, RabbitmqEncodeError, RabbitmqNackError, RabbitmqUnroutableError } from './errors.ts';
import { encodeEvent, type EncodedMessage } from './message-codec.ts';
import { ConfirmLink, type Confirmation, type LinkCounters } from './confirm-link.ts';
import { resolveTransportOptions, type RabbitmqRoute, type RabbitmqTransportOptions, type ResolvedTransportOptions } from './transport-options.ts';
import { abortable, FifoLock } from './waiting.ts';

/** What the transport has done so far; counters cover every connection it opened. */
export interface RabbitmqTransportStats {
  readonly connected: boolean;
  /** Published on the current connection and not yet confirmed. */
  readonly unconfirmed: number;
  /** The most messages ever unconfirmed at once: never above `maxUnconfirmed`. */
  readonly peakUnconfirmed: number;
  readonly published: number;
  /** Confirmed and routed. */
  readonly acked: number;
  /** Confirmed but returned unroutable. */
  readonly returned: number;
  readonly nacked: number;
  /** Unconfirmed when a connection ended (or a confirm timed out). */
  readonly lost: number;
  /** Times publishing waited for a free slot in the unconfirmed window. */
  readonly windowWaits: number;
  /** Times publishing waited for the channel's write buffer to drain. */
  readonly drainWaits: number;
  /** Connections opened. */
  readonly connects: number;
}

/** A {@link Transport} to RabbitMQ, with its statistics. */
export interface RabbitmqTransport extends Transport {
  /**
   * Counters for metrics and tests.
   *
   * @example
   * const { unconfirmed, returned, connects } = transport.stats();
   * metrics.gauge('tidings_rabbitmq_unconfirmed', unconfirmed);
   */
  stats(): RabbitmqTransportStats;
}

/**
 * Per-key order holds on one channel; confirmed messages are persistent in durable queues.
 *
 * @example
 * describeTransport('rabbitmq', rabbitmqCapabilities, () => rabbitmqHarness());
 */
export const rabbitmqCapabilities: TransportCapabilities = Object.freeze({ orderedPerKey: true, persistent: true });

/**
 * A transport that publishes outbox events to RabbitMQ, at least once and in order per key.
 *
 * Each event becomes a persistent message (`messageId` = event id, `type` = topic, JSON body, key,
 * tenant and the event's headers in AMQP headers) published `mandatory` on one confirm channel.
 * A send resolves when RabbitMQ has confirmed every message of it: `delivered` when confirmed and
 * routed to a queue, `retry` when nacked or when the connection was lost before the confirm,
 * `retry` or `failed` (option `unroutable`) when no queue received it — never `delivered`.
 *
 * Sends share one connection and publish one after another, pipelined: at most `maxUnconfirmed`
 * messages await confirms, and a full write buffer waits for `drain`. A lost connection is
 * reopened on the next send (with backoff after failures). Per-key order: messages of one channel
 * are routed in publish order, and a connection cut cannot drop an earlier message and keep a
 * later one; only a nack (a full queue with `x-overflow: reject-publish`) can let a later message
 * of the same key arrive first.
 *
 * @example
 * import { createRelay, pgDatabase } from '@tidings/outbox';
 * import { rabbitmqTransport } from '@tidings/relays/rabbitmq';
 *
 * const relay = createRelay({
 *   name: 'rabbitmq',
 *   database: pgDatabase(process.env.DATABASE_URL!),
 *   transport: rabbitmqTransport({ url: process.env.RABBITMQ_URL! }), // exchange "tidings", routing key = topic
 * });
 * await relay.start();
 */
export function rabbitmqTransport(options: RabbitmqTransportOptions): RabbitmqTransport {
  amqplib(); // a missing client is reported now, not as a broker that never answers
  return new RabbitmqPublisher(resolveTransportOptions(options));
}

class RabbitmqPublisher implements RabbitmqTransport {
  readonly name: string;
  readonly system = 'rabbitmq';
  readonly capabilities: TransportCapabilities;
  readonly #options: ResolvedTransportOptions;
  readonly #turns = new FifoLock();
  readonly #lifetime = new AbortController();
  readonly #active = new Set<Promise<unknown>>();
  readonly #counters: LinkCounters = { published: 0, acked: 0, returned: 0, nacked: 0, lost: 0, drainWaits: 0 };
  readonly #backoff: Backoff;
  #link: ConfirmLink | undefined;
  #connecting: Promise<ConfirmLink> | undefined;
  #retryAt = 0;
  #lastConnectError: Error | undefined;
  #closing: Promise<void> | undefined;
  #peak = 0;
  #windowWaits = 0;
  #connects = 0;

  constructor(options: ResolvedTransportOptions) {
    this.#options = options;
    this.name = options.name;
    this.capabilities = options.maxBatchSize === undefined ? rabbitmqCapabilities : Object.freeze({ ...rabbitmqCapabilities, maxBatchSize: options.maxBatchSize });
    this.#backoff = new Backoff(options.reconnect.minDelayMs, options.reconnect.maxDelayMs);
  }

  send(batch: readonly OutboxEvent[], signal: AbortSignal): Promise<readonly SendOutcome[]> {
    if (this.#closing) return Promise.reject(new TransportClosedError(this.name));
    if (signal.aborted) return Promise.reject(signal.reason);
    if (batch.length === 0) return Promise.resolve([]);
    // Registered before the first await, so that close() called right after waits for it.
    const sending = this.#send(batch, signal);
    const settled = sending.then(
      () => {},
      () => {},
    );
    this.#active.add(settled);
    void settled.then(() => this.#active.delete(settled));
    return sending;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.all([...this.#active]);
      this.#lifetime.abort(new TransportClosedError(this.name));
      await this.#connecting?.catch(() => {});
      await this.#link?.close(this.#options.sendTimeoutMs);
    })();
    return this.#closing;
  }

  stats(): RabbitmqTransportStats {
    const link = this.#link;
    return {
      connected: link !== undefined && !link.broken,
      unconfirmed: link?.unconfirmed ?? 0,
      peakUnconfirmed: this.#peak,
      ...this.#counters,
      windowWaits: this.#windowWaits,
      connects: this.#connects,
    };
  }

  async #send(batch: readonly OutboxEvent[], signal: AbortSignal): Promise<readonly SendOutcome[]> {
    const outcomes: (SendOutcome | undefined)[] = new Array(batch.length);
    const confirmations: (Promise<Confirmation> | undefined)[] = new Array(batch.length);
    const routes: (RabbitmqRoute | undefined)[] = new Array(batch.length);
    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(this.#timeoutError()), this.#options.sendTimeoutMs);
    const deadline = AbortSignal.any([signal, timeout.signal]);
    let link: ConfirmLink | undefined;
    try {
      const release = await this.#turns.acquire(deadline);
      try {
        link = await this.#connected(deadline);
        if (link.blocked) throw new RabbitmqConnectionError('blocked', `RabbitMQ is blocking publishers (${link.blocked}): a memory or disk alarm is raised on the broker`);
        await this.#publishAll(link, batch, outcomes, confirmations, routes, deadline);
      } finally {
        release();
      }
      for (let i = 0; i < batch.length; i++) {
        const confirmation = confirmations[i];
        if (confirmation) outcomes[i] = this.#outcome(batch[i]!, routes[i]!, await abortable(confirmation, deadline));
      }
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      // Not published, or published and not confirmed: the broker cannot be reached or did not
      // answer, which says nothing against the events: `unavailable`, never `delivered`.
      if (!timeout.signal.aborted) return fill(outcomes, unavailable(error));
      // Unconfirmed after sendTimeoutMs: this connection is unhealthy (blocked, stalled). Dropping
      // it settles everything it has in flight, and the next send opens a new one.
      const reason = timeout.signal.reason as RabbitmqConnectionError;
      if (link && confirmations.some((c) => c !== undefined)) link.destroy(reason);
      return fill(outcomes, unavailable(reason));
    } finally {
      clearTimeout(timer);
    }
    return fill(outcomes, unavailable(link?.broken ?? new RabbitmqConnectionError('connection-lost', 'not published: the connection was lost')));
  }

  async #publishAll(
    link: ConfirmLink,
    batch: readonly OutboxEvent[],
    outcomes: (SendOutcome | undefined)[],
    confirmations: (Promise<Confirmation> | undefined)[],
    routes: (RabbitmqRoute | undefined)[],
    deadline: AbortSignal,
  ): Promise<void> {
    const max = this.#options.maxUnconfirmed;
    for (let i = 0; i < batch.length; i++) {
      const event = batch[i]!;
      let message: EncodedMessage;
      let route: RabbitmqRoute;
      try {
        route = checkRoute(event, this.#options.route(event));
        message = encodeEvent(event, this.#options.cloudEvents);
      } catch (error) {
        outcomes[i] = failed(error);
        continue;
      }
      if (!link.knowsExchange(route.exchange) && !(await abortable(link.exchangeExists(route.exchange), deadline))) {
        outcomes[i] = this.#unroutable(new RabbitmqUnroutableError('no-exchange', event, route));
        continue;
      }
      if (link.unconfirmed >= max) {
        this.#windowWaits++;
        await link.waitUntil(() => link.unconfirmed < max, deadline);
      }
      if (link.draining) {
        this.#counters.drainWaits++;
        await link.waitUntil(() => !link.draining, deadline);
      }
      // A broken link leaves the rest of the batch unpublished: the caller reports it `retry`.
      if (link.broken) return;
      routes[i] = route;
      confirmations[i] = link.publish(route.exchange, route.routingKey, message);
      if (link.unconfirmed > this.#peak) this.#peak = link.unconfirmed;
    }
  }

  /** The open link, or a new one; fails fast while backing off after a failed attempt. */
  async #connected(signal: AbortSignal): Promise<ConfirmLink> {
    const current = this.#link;
    if (current && !current.broken) return current;
    if (current) {
      this.#link = undefined;
      current.destroy(current.broken!);
      this.#options.onEvent({ type: 'disconnected', error: current.broken! });
    }
    if (!this.#connecting && Date.now() < this.#retryAt) {
      throw new RabbitmqConnectionError(
        'backing-off',
        `not connected to RabbitMQ at ${describeUrl(this.#options.connection.url)}; reconnecting in ${this.#retryAt - Date.now()} ms ` +
          `(last attempt: ${this.#lastConnectError?.message ?? 'unknown error'})`,
        { cause: this.#lastConnectError },
      );
    }
    this.#connecting ??= this.#open().finally(() => {
      this.#connecting = undefined;
    });
    return abortable(this.#connecting, signal);
  }

  async #open(): Promise<ConfirmLink> {
    const { connection, exchanges, onEvent } = this.#options;
    try {
      const link = await ConfirmLink.open(connection, exchanges, this.#counters, this.#lifetime.signal, (reason) =>
        onEvent(reason === undefined ? { type: 'unblocked' } : { type: 'blocked', reason }),
      );
      this.#link = link;
      this.#connects++;
      this.#backoff.reset();
      onEvent({ type: 'connected' });
      return link;
    } catch (cause) {
      const retryInMs = Math.round(this.#backoff.next());
      this.#retryAt = Date.now() + retryInMs;
      const error = new RabbitmqConnectionError(
        'connect-failed',
        `could not connect to RabbitMQ at ${describeUrl(connection.url)}: ${(cause as Error)?.message ?? String(cause)}`,
        { cause },
      );
      this.#lastConnectError = error;
      onEvent({ type: 'connect-failed', error, retryInMs });
      throw error;
    }
  }

  #outcome(event: OutboxEvent, route: RabbitmqRoute, confirmation: Confirmation): SendOutcome {
    switch (confirmation.kind) {
      case 'ack':
        return delivered;
      case 'returned':
        return this.#unroutable(new RabbitmqUnroutableError('no-route', event, route, confirmation.reply));
      // A nack is the broker's own trouble (a queue process failed, or a full queue rejecting
      // publishes), not a verdict on this event.
      case 'nack':
        return unavailable(new RabbitmqNackError(event.eventId));
      case 'lost':
        return unavailable(confirmation.error);
    }
  }

  #unroutable(error: RabbitmqUnroutableError): SendOutcome {
    return this.#options.unroutable === 'failed' ? failed(error) : retry(error);
  }

  #timeoutError(): RabbitmqConnectionError {
    return new RabbitmqConnectionError(
      'confirm-timeout',
      `RabbitMQ did not confirm within ${this.#options.sendTimeoutMs} ms (sendTimeoutMs); the connection is dropped and reopened on the next send`,
    );
  }
}

function checkRoute(event: OutboxEvent, route: RabbitmqRoute): RabbitmqRoute {
  if (typeof route?.exchange !== 'string' || typeof route.routingKey !== 'string') {
    throw new RabbitmqEncodeError(event.eventId, `the route option returned ${JSON.stringify(route)}; expected { exchange, routingKey } strings`);
  }
  if (Buffer.byteLength(route.routingKey) > 255 || Buffer.byteLength(route.exchange) > 255) {
    throw new RabbitmqEncodeError(event.eventId, 'exchange names and routing keys hold at most 255 bytes');
  }
  return route;
}

function fill(outcomes: (SendOutcome | undefined)[], missing: SendOutcome): SendOutcome[] {
  for (let i = 0; i < outcomes.length; i++) outcomes[i] ??= missing;
  return outcomes as SendOutcome[];
}

import { failed, retry, TransportClosedError, unavailable, type OutboxEvent, type SendOutcome, type Transport, type TransportCapabilities } from '@tidings/outbox';
import { KafkaSendError } from './errors.ts';
import { PendingSend, ProduceQueue, type ProduceRequest } from './produce-queue.ts';
import type { KafkaProducerClient } from './producer-client.ts';
import { encodeEvent, type EncodedRecord } from './record-codec.ts';
import { resolveTransportOptions, type KafkaTransportOptions, type ResolvedTransportOptions } from './transport-options.ts';

/** What the transport has done so far. */
export interface KafkaTransportStats {
  /** Produce requests made (each may carry the records of several sends). */
  readonly requests: number;
  readonly failedRequests: number;
  /** Records Kafka acknowledged. */
  readonly acknowledged: number;
  /** Producer clients made: 1, plus one per replacement after a failed request. */
  readonly clients: number;
  /** Sends waiting for a request. */
  readonly waiting: number;
}

/** A {@link Transport} to Kafka, with its statistics. */
export interface KafkaTransport extends Transport {
  stats(): KafkaTransportStats;
}

/**
 * Records of one key go to one partition (murmur2 of the key, as Kafka's Java client), which Kafka
 * keeps in order; acknowledged records are on all in-sync replicas (acks=all).
 */
export const kafkaCapabilities: TransportCapabilities = Object.freeze({ orderedPerKey: true, persistent: true });

/**
 * A transport that publishes outbox events to Kafka, at least once and in order per key.
 *
 * Each event becomes a record on the event's topic (or the `topic` option's): key = the event's
 * key, value = the payload as JSON, and headers with the event id, outbox topic, tenant, creation
 * time and the event's own headers (e.g. `traceparent`). Records go through an idempotent producer
 * with acks=all and one request in flight; a send is `delivered` only once Kafka acknowledged it.
 *
 * Sends are produced one request at a time, in call order. A send usually goes out as one request,
 * together with the sends that arrived while the previous request was in flight (so a relay's
 * partitions share requests); one larger than `maxRequestBytes` is split into several, in order. A
 * failed or timed-out request reports `retry` for the records it carried and for the rest of their
 * sends, and its producer client is replaced, so a client left in an uncertain state is never used
 * again; the next send connects anew (this is also how the transport comes back after a broker
 * restart). `close()` lets every send already made finish, then disconnects.
 *
 * @example
 * import { createRelay, pgDatabase } from '@tidings/outbox';
 * import { kafkaTransport } from '@tidings/relays/kafka';
 *
 * const relay = createRelay({
 *   name: 'kafka',
 *   database: pgDatabase(process.env.DATABASE_URL!),
 *   transport: kafkaTransport({ brokers: process.env.KAFKA_BROKERS!, topic: (event) => `prod.${event.topic}` }),
 * });
 * await relay.start();
 */
export function kafkaTransport(options: KafkaTransportOptions): KafkaTransport {
  return new KafkaPublisher(resolveTransportOptions(options));
}

class KafkaPublisher implements KafkaTransport {
  readonly name: string;
  readonly system = 'kafka';
  readonly capabilities: TransportCapabilities;
  readonly #options: ResolvedTransportOptions;
  readonly #queue: ProduceQueue;
  #client: KafkaProducerClient | undefined;
  #pumping: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #requests = 0;
  #failedRequests = 0;
  #acknowledged = 0;
  #clients = 0;

  constructor(options: ResolvedTransportOptions) {
    this.#options = options;
    this.name = options.name;
    this.capabilities = options.maxBatchSize === undefined ? kafkaCapabilities : Object.freeze({ ...kafkaCapabilities, maxBatchSize: options.maxBatchSize });
    this.#queue = new ProduceQueue(options.maxRequestBytes);
  }

  send(batch: readonly OutboxEvent[], signal: AbortSignal): Promise<readonly SendOutcome[]> {
    if (this.#closing) return Promise.reject(new TransportClosedError(this.name));
    if (signal.aborted) return Promise.reject(signal.reason);
    const outcomes: (SendOutcome | undefined)[] = new Array(batch.length);
    const records = this.#encode(batch, outcomes);
    return new Promise((resolve) => {
      const send = new PendingSend(records, outcomes, resolve);
      if (records.length === 0) return send.settle(retry(new KafkaSendError('client', 'nothing to send')));
      const timer = setTimeout(() => send.settle(unavailable(this.#timeoutError('the send'))), this.#options.sendTimeoutMs);
      const onAbort = (): void =>
        send.settle(unavailable(new KafkaSendError('aborted', `the send was aborted (${describe(signal.reason)}); what Kafka had not acknowledged counts as not delivered`)));
      signal.addEventListener('abort', onAbort, { once: true });
      send.onSettle(() => {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.#queue.remove(send);
      });
      this.#queue.push(send);
      this.#pump();
    });
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      // Every send already made is produced (or times out) before the client goes.
      while (this.#pumping) await this.#pumping;
      const client = this.#client;
      this.#client = undefined;
      await client?.close();
    })();
    return this.#closing;
  }

  stats(): KafkaTransportStats {
    return {
      requests: this.#requests,
      failedRequests: this.#failedRequests,
      acknowledged: this.#acknowledged,
      clients: this.#clients,
      waiting: this.#queue.length,
    };
  }

  /** Records of the encodable prefix of `batch`; an event that cannot be encoded is `failed`, the ones after it are not sent. */
  #encode(batch: readonly OutboxEvent[], outcomes: (SendOutcome | undefined)[]): EncodedRecord[] {
    const records: EncodedRecord[] = [];
    for (let i = 0; i < batch.length; i++) {
      const event = batch[i]!;
      try {
        records.push(encodeEvent(event, this.#options.topic(event), this.#options.maxRecordBytes, this.#options.cloudEvents));
      } catch (error) {
        outcomes[i] = failed(error);
        const skipped = retry(new KafkaSendError('client', `not sent: event ${event.eventId} before it in the batch cannot be sent to Kafka`));
        for (let j = i + 1; j < batch.length; j++) outcomes[j] = skipped;
        break;
      }
    }
    return records;
  }

  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = (async () => {
      for (let request = this.#queue.next(); request; request = this.#queue.next()) await this.#produce(request);
    })().finally(() => {
      this.#pumping = undefined;
      // A send made after the loop saw an empty queue and before this line: pump again.
      if (this.#queue.length > 0) this.#pump();
    });
  }

  async #produce(request: ProduceRequest): Promise<void> {
    const giveUp = new AbortController();
    const timer = setTimeout(() => giveUp.abort(this.#timeoutError('a produce request')), this.#options.sendTimeoutMs);
    // Once no send waits for the request (they timed out or were aborted), waiting on is pointless:
    // the client is replaced at once, and the next request does not queue behind a dead broker.
    const abandon = (): void => {
      if (request.parts.every((part) => part.send.settled)) giveUp.abort(new KafkaSendError('aborted', 'every send waiting for this request ended'));
    };
    for (const part of request.parts) part.send.onSettle(abandon);
    this.#requests++;
    let client: KafkaProducerClient | undefined;
    try {
      client = this.#connected();
      await untilAborted(client.produce(request.records, giveUp.signal), giveUp.signal);
    } catch (cause) {
      const error = asSendError(cause);
      this.#failedRequests++;
      giveUp.abort(error);
      // Its state is uncertain (sequence numbers, a half-written request): never reuse it.
      if (client && this.#client === client) this.#client = undefined;
      const broken = client;
      if (broken) void Promise.resolve().then(() => broken.close()).catch(() => {});
      this.#options.onEvent({ type: 'request-failed', records: request.records.length, error });
      // Refused records fail the whole request, so the first event not acknowledged takes the
      // count; anything else (unreachable, timed out, leader moving) is the cluster's state.
      const outcome = refusesRecords(error) ? retry(error) : unavailable(error);
      for (const part of request.parts) part.send.settle(outcome);
      return;
    } finally {
      clearTimeout(timer);
    }
    this.#acknowledged += request.records.length;
    for (const part of request.parts) part.send.acknowledge(part.from, part.to);
  }

  #connected(): KafkaProducerClient {
    if (this.#client) return this.#client;
    this.#client = this.#options.producer();
    this.#clients++;
    this.#options.onEvent({ type: 'client-created', clients: this.#clients });
    return this.#client;
  }

  #timeoutError(what: string): KafkaSendError {
    return new KafkaSendError('timeout', `Kafka did not acknowledge ${what} within ${this.#options.sendTimeoutMs} ms (sendTimeoutMs); it will be sent again`);
  }
}

/** `promise`, or the signal's reason as soon as it aborts; a late rejection of `promise` is ignored. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  promise.catch(() => {});
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Kafka error types that refuse the records themselves rather than say the cluster is unavailable. */
const recordRefusals = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE', 'INVALID_RECORD', 'CORRUPT_MESSAGE', 'INVALID_TIMESTAMP']);

/** True when a protocol error in the cause chain says Kafka refuses the records as they are. */
function refusesRecords(error: unknown): boolean {
  for (let cause = error, depth = 0; cause instanceof Error && depth < 5; cause = cause.cause, depth++) {
    const type = (cause as { type?: unknown }).type;
    if (typeof type === 'string' && recordRefusals.has(type)) return true;
  }
  return false;
}

function asSendError(cause: unknown): KafkaSendError {
  if (cause instanceof KafkaSendError) return cause;
  const retriable = (cause as { retriable?: unknown } | null)?.retriable !== false;
  return new KafkaSendError('client', `Kafka did not acknowledge the request: ${describe(cause)}`, { cause, retriable });
}

function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const inner = error.cause instanceof Error && error.cause.message !== error.message ? ` (${error.cause.message})` : '';
  return `${error.name}: ${error.message}${inner}`;
}

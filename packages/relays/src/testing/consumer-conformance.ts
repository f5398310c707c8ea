import type { Json } from '@tidings/outbox';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, it } from 'vitest';
import type { Consumer, ReceivedEvent } from '../shared/consumer.ts';
import { runInTransaction, type TransactionSource } from '../shared/transaction-source.ts';
import { consumerChecks } from './consumer-conformance-checks.ts';
import { waitUntil } from './wait-until.ts';

/** What differs between consumer helpers, as data: the checks that do not fit are not generated. */
export interface ConsumerCapabilities {
  /** `event.delivery.transport` of every event the helper hands over. */
  readonly transport: 'rabbitmq' | 'kafka' | 'webhook' | 'sse' | 'polling' | 'websocket';
  /**
   * What running out of `retry.attempts` does: `dead-letter` (the event is set aside and the
   * consumer goes on), `stop` (`done` rejects with `HandlerFailedError`), or `sender-retries` (the
   * helper answers 5xx and the sender's own retry brings the event again).
   */
  readonly onExhausted: 'dead-letter' | 'stop' | 'sender-retries';
  /** Events of one key are applied in publish order. */
  readonly orderedPerKey: boolean;
  /** `event.attempt` grows with each run of a failing handler (a webhook receiver always says 1). */
  readonly countsAttempts: boolean;
  /** How the harness simulates a crash between the commit and the acknowledgement; named in the test. */
  readonly crash: string;
}

/** A transaction the checks' handlers can write through: a pg client inside BEGIN, or a tidings `Executor`. */
export interface SqlTransaction {
  query(text: string, params?: readonly unknown[]): Promise<unknown>;
}

/** What a check starts the helper under test with. */
export interface ConsumerRun {
  /** The inbox consumer name, fresh for each check. */
  readonly consumer: string;
  readonly handler: (trx: SqlTransaction, event: ReceivedEvent) => Promise<void>;
  readonly retry: { readonly attempts: number; readonly minDelayMs: number; readonly maxDelayMs: number };
  /** Pass every event the helper reports to this; it may throw (the helper must not mind). */
  readonly onEvent: (event: { readonly type: string }) => void;
  /**
   * Simulate one crash right after the first commit that applied an event, before the transport
   * heard of it: the acknowledgement is lost and the event must come again.
   */
  readonly crashAfterFirstCommit: boolean;
}

/** An event for the harness to publish through its transport; it chooses the topic. */
export interface ConsumerInput {
  readonly key: string | null;
  readonly payload: Json;
}

/** The helper under test, started by the harness on a topic or queue of its own. */
export interface ConsumerUnderTest {
  /** The running helper; after a simulated restart, the one running now. */
  readonly consumer: Consumer;
  /** Crashes simulated so far. */
  readonly crashes: number;
  /**
   * Publishes the events, in order, through the real transport and returns their ids; returns
   * once they are on their way, not when they were handled.
   */
  deliver(events: readonly ConsumerInput[]): Promise<string[]>;
  /** Delivers events already delivered once again, with the same ids, as the transport would after a lost acknowledgement. */
  redeliver(eventIds: readonly string[]): Promise<void>;
  /** How many delivered events the transport has not seen acknowledged (no ack, offset, 2xx or stored cursor). */
  pending(): Promise<number>;
  /** Ids of the events set aside as dead letters so far (for `onExhausted: 'dead-letter'`). */
  deadLettered?(): Promise<readonly string[]>;
  /** Stops the helper and removes what the run created. */
  close(): Promise<void>;
}

/** Starts one consumer helper against its real transport, once per check. */
export interface ConsumerHarness {
  /** Where the handlers' transactions run; each transaction has `query(text, params)`. */
  readonly database: TransactionSource;
  /** Schema of the inbox tables, migrated. */
  readonly schema: string;
  start(run: ConsumerRun): Promise<ConsumerUnderTest>;
  /**
   * Calls the helper with valid options, `overrides` replacing some of them; returns what it
   * returned (a promise is awaited). It must throw a `ConfigError` before connecting to anything.
   */
  configure(overrides: Readonly<Record<string, unknown>>): unknown;
  close(): Promise<void>;
}

/** One application of an event, as the checks' handlers record it in the effects table. */
export interface AppliedEvent {
  readonly eventId: string;
  readonly key: string | null;
}

/** What a check is given. */
export interface ConsumerCheckContext {
  readonly capabilities: ConsumerCapabilities;
  readonly harness: ConsumerHarness;
  /** A consumer name no other check uses. */
  readonly name: string;
  /** Starts the helper (closed after the check); defaults: a handler that records each event, retry 5 × 20 to 100 ms. */
  start(run?: Partial<ConsumerRun>): Promise<ConsumerUnderTest>;
  /** Records the event in the effects table, inside `trx`. */
  record(trx: SqlTransaction, event: ReceivedEvent): Promise<void>;
  /** Every committed application of this check's consumer, in commit order. */
  applied(): Promise<AppliedEvent[]>;
  /** Waits until `probe` holds, or fails saying what did not happen. */
  waitUntil<T>(what: string, probe: () => Promise<T | undefined | false> | T | undefined | false): Promise<T>;
}

/** One behaviour every consumer helper must show. */
export interface ConsumerCheck {
  readonly name: string | ((capabilities: ConsumerCapabilities) => string);
  readonly applies?: (capabilities: ConsumerCapabilities) => boolean;
  readonly run: (context: ConsumerCheckContext) => Promise<void>;
}

export interface ConsumerConformanceOptions {
  /** How long a check waits for a condition. Default 30 000 ms. */
  readonly waitTimeoutMs?: number;
  /** Timeout of each test. Default 120 000 ms. */
  readonly testTimeoutMs?: number;
}

const effectsTable = 'consumer_conformance_effects';

/**
 * The consumer conformance suite: one vitest test per promise of the consumer contract, against
 * the helper the harness starts over its real transport — a duplicate is applied once, a crash
 * between commit and acknowledgement is applied once, a failing handler is retried (then
 * dead-lettered, or the consumer stops), nothing is acknowledged before its commit, a handler that
 * swallows a SQL error is not acknowledged, per-key order where declared, and the contract's shape.
 *
 * @example
 * describeConsumer('consumeRabbitmq', {
 *   transport: 'rabbitmq', onExhausted: 'dead-letter', orderedPerKey: true, countsAttempts: true, crash: 'connection cut after the commit',
 * }, () => myRabbitmqConsumerHarness());
 *
 * The arguments come in the order of `describeTransport` and `describeFeed`: name, capabilities, harness.
 */
export function describeConsumer(
  name: string,
  capabilities: ConsumerCapabilities,
  factory: () => Promise<ConsumerHarness>,
  options: ConsumerConformanceOptions = {},
): void {
  const waitTimeoutMs = options.waitTimeoutMs ?? 30_000;
  const testTimeoutMs = options.testTimeoutMs ?? 120_000;
  describe(`${name} consumer conformance`, () => {
    let harness: ConsumerHarness | undefined;
    beforeAll(async () => {
      harness = await factory();
      const table = `"${harness.schema}".${effectsTable}`;
      await runInTransaction(harness.database, (trx) =>
        (trx as SqlTransaction).query(`CREATE TABLE IF NOT EXISTS ${table} (seq bigserial PRIMARY KEY, consumer text NOT NULL, event_id text NOT NULL, key text)`),
      );
    }, testTimeoutMs);
    afterAll(async () => {
      await harness?.close();
    }, testTimeoutMs);
    for (const check of consumerChecks) {
      if (check.applies && !check.applies(capabilities)) continue;
      const title = typeof check.name === 'string' ? check.name : check.name(capabilities);
      it(title, { timeout: testTimeoutMs }, async () => {
        if (!harness) throw new Error(`the ${name} harness factory failed; see the error of beforeAll`);
        await runConsumerCheck(check, harness, capabilities, waitTimeoutMs);
      });
    }
  });
}

async function runConsumerCheck(check: ConsumerCheck, harness: ConsumerHarness, capabilities: ConsumerCapabilities, waitTimeoutMs: number): Promise<void> {
  const name = `conformance-${randomBytes(5).toString('hex')}`;
  const table = `"${harness.schema}".${effectsTable}`;
  const started: ConsumerUnderTest[] = [];
  const record = async (trx: SqlTransaction, event: ReceivedEvent): Promise<void> => {
    await trx.query(`INSERT INTO ${table} (consumer, event_id, key) VALUES ($1, $2, $3)`, [name, event.eventId, event.key]);
  };
  const context: ConsumerCheckContext = {
    capabilities,
    harness,
    name,
    record,
    async start(run = {}) {
      const underTest = await harness.start({
        consumer: name,
        handler: record,
        retry: { attempts: 5, minDelayMs: 20, maxDelayMs: 100 },
        onEvent: () => {},
        crashAfterFirstCommit: false,
        ...run,
      });
      started.push(underTest);
      return underTest;
    },
    async applied() {
      const { rows } = (await runInTransaction(harness.database, (trx) =>
        (trx as SqlTransaction).query(`SELECT event_id, key FROM ${table} WHERE consumer = $1 ORDER BY seq`, [name]),
      )) as { rows: { event_id: string; key: string | null }[] };
      return rows.map((row) => ({ eventId: row.event_id, key: row.key }));
    },
    waitUntil: (what, probe) => waitUntil(what, probe, waitTimeoutMs),
  };
  let failure: unknown;
  try {
    await check.run(context);
  } catch (error) {
    failure = error;
  }
  const closed = await Promise.allSettled(started.map((underTest) => underTest.close()));
  if (failure !== undefined) throw failure;
  for (const result of closed) {
    if (result.status === 'rejected') throw new Error(`closing the consumer after the check failed: ${String(result.reason)}`, { cause: result.reason });
  }
}

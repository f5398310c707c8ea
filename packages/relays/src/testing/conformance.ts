import type { Transport, TransportCapabilities } from '@tidings/outbox';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { assertAllArrived, waitForIds, type ArrivalOptions } from './conformance-arrivals.ts';
import { deliveryChecks } from './conformance-delivery-checks.ts';
import { within } from './conformance-sending.ts';
import { faultChecks } from './conformance-fault-checks.ts';
import type { ReceivedMessage, Subscription, TransportHarness } from './harness.ts';

/** Time limits of the conformance suite; the defaults suit real brokers on loopback. */
export interface ConformanceOptions {
  /** How long sent events may take to reach the subscriber. Default 30 000 ms. */
  readonly arrivalTimeoutMs?: number;
  /** Once everything expected arrived, how long to keep watching for duplicates and strays. Default 250 ms. */
  readonly settleMs?: number;
  /** An aborted send must settle within this. Default 2 000 ms. */
  readonly abortWithinMs?: number;
  /** Deadline (an AbortSignal) of each send made while the destination is down. Default 2 000 ms. */
  readonly downSendTimeoutMs?: number;
  /** Deadline of each ordinary send. Default 30 000 ms. */
  readonly sendTimeoutMs?: number;
  /** After a fault, how long the suite keeps resending before it calls events lost. Default 60 000 ms. */
  readonly recoveryTimeoutMs?: number;
  /** Timeout of each test. Default 180 000 ms. */
  readonly testTimeoutMs?: number;
}

const defaults: Required<ConformanceOptions> = {
  arrivalTimeoutMs: 30_000,
  settleMs: 250,
  abortWithinMs: 2_000,
  downSendTimeoutMs: 2_000,
  sendTimeoutMs: 30_000,
  recoveryTimeoutMs: 60_000,
  testTimeoutMs: 180_000,
};

/** What a check is given: the harness, fresh topics, and transports and subscriptions it need not clean up. */
export interface CheckContext {
  readonly capabilities: TransportCapabilities;
  readonly harness: TransportHarness;
  readonly options: Required<ConformanceOptions>;
  /** A topic name no other check or run uses. */
  topic(label: string): string;
  /** `want`, or the declared `maxBatchSize` if smaller. */
  batchSize(want: number): number;
  /** A new transport from the harness, closed after the check. */
  transport(): Promise<Transport>;
  /** A subscription from the harness, closed after the check. */
  subscribe(topic: string): Promise<Subscription>;
  /**
   * Waits for every id, then `settleMs` more for strays and duplicates, then asserts that exactly
   * `ids` arrived (duplicates only if allowed). Returns what arrived.
   */
  expectArrivals(subscription: Subscription, ids: Iterable<string>, options?: ArrivalOptions): Promise<readonly ReceivedMessage[]>;
  /** Runs `body` with the destination down, and always brings it back. */
  whileDown<T>(body: () => Promise<T>): Promise<T>;
}

/** One behaviour every transport must show. */
export interface TransportCheck {
  /** A sentence about the behaviour: the test's name. */
  readonly name: string;
  /** When the check only makes sense for some capabilities; it is then not generated at all otherwise. */
  readonly applies?: (capabilities: TransportCapabilities) => boolean;
  readonly run: (context: CheckContext) => Promise<void>;
}

/**
 * Every check of the suite, in the order they run: `describeTransport` turns each into a test.
 *
 * @example
 * const abort = transportChecks.find((check) => check.name.includes('aborted'))!;
 * await runCheck(abort, await myHarness(), capabilities);
 */
export const transportChecks: readonly TransportCheck[] = [...deliveryChecks, ...faultChecks];

/**
 * The transport conformance suite (after watermill's universal pub/sub tests): declares one vitest
 * test per behaviour every transport must show, each on fresh topics, against the destination the
 * harness provides. The harness is created once for the suite and closed after it; the checks run
 * one after another because faults act on the whole destination.
 *
 * @example
 * // packages/relays/test/rabbitmq.conformance.test.ts
 * describeTransport('rabbitmq', { orderedPerKey: true, persistent: true }, () => rabbitHarness(url));
 */
export function describeTransport(
  name: string,
  capabilities: TransportCapabilities,
  factory: () => Promise<TransportHarness>,
  options: ConformanceOptions = {},
): void {
  const resolved = { ...defaults, ...options };
  describe(`${name} transport conformance`, () => {
    let harness: TransportHarness | undefined;
    beforeAll(async () => {
      harness = await factory();
    }, resolved.testTimeoutMs);
    afterAll(async () => {
      await harness?.close();
    }, resolved.testTimeoutMs);
    for (const check of transportChecks) {
      if (check.applies && !check.applies(capabilities)) continue;
      it(check.name, { timeout: resolved.testTimeoutMs }, async () => {
        if (!harness) throw new Error(`the ${name} harness factory failed; see the error of beforeAll`);
        await runCheck(check, harness, capabilities, resolved, name);
      });
    }
  });
}

/**
 * Runs one check against a harness outside `describeTransport`, then closes the transports and
 * subscriptions it opened (not the harness). Used to prove that each check fails against a
 * deliberately broken transport, or to run one check while debugging.
 *
 * @example
 * await expect(runCheck(check, brokenHarness, capabilities, { arrivalTimeoutMs: 500 })).rejects.toThrow(/missing/);
 */
export async function runCheck(
  check: TransportCheck,
  harness: TransportHarness,
  capabilities: TransportCapabilities,
  options: ConformanceOptions = {},
  suiteName = 'transport',
): Promise<void> {
  const resolved = { ...defaults, ...options };
  const transports: Transport[] = [];
  const subscriptions: Subscription[] = [];
  const topics = new Map<Subscription, string>();
  const checkSlug = slug(check.name).slice(0, 40);
  const context: CheckContext = {
    capabilities,
    harness,
    options: resolved,
    topic: (label) => `conformance.${slug(suiteName).slice(0, 40)}.${checkSlug}.${slug(label)}.${randomBytes(4).toString('hex')}`,
    batchSize: (want) => Math.min(want, capabilities.maxBatchSize ?? want),
    async transport() {
      const transport = await harness.createTransport();
      transports.push(transport);
      return transport;
    },
    async subscribe(topic) {
      const subscription = await harness.subscribe(topic);
      subscriptions.push(subscription);
      topics.set(subscription, topic);
      return subscription;
    },
    async expectArrivals(subscription, ids, arrivalOptions = {}) {
      const wanted = [...ids];
      await waitForIds(subscription, wanted, resolved.arrivalTimeoutMs);
      await sleep(resolved.settleMs);
      const label = arrivalOptions.label ?? `on topic "${topics.get(subscription) ?? '?'}"`;
      assertAllArrived(wanted, subscription.received, { ...arrivalOptions, label });
      return subscription.received;
    },
    async whileDown(body) {
      await harness.faults.takeDown();
      try {
        return await body();
      } finally {
        await harness.faults.recover();
      }
    },
  };
  let failure: unknown;
  try {
    await check.run(context);
  } catch (error) {
    failure = error;
  }
  const closing = Promise.allSettled([...transports.map((t) => t.close()), ...subscriptions.map((s) => s.close())]);
  const cleanup = await within(closing, resolved.sendTimeoutMs, 'closing the transports and subscriptions of the check').catch(
    (error: unknown): PromiseSettledResult<void>[] => [{ status: 'rejected', reason: error }],
  );
  if (failure !== undefined) throw failure;
  for (const result of cleanup) {
    if (result.status === 'rejected') throw new Error(`closing after the check failed: ${String(result.reason)}`, { cause: result.reason });
  }
}

function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '');
}

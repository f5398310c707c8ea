import type { OutboxEvent, Transport } from '@tidings/outbox';
import { setTimeout as sleep } from 'node:timers/promises';
import { compareArrivals, describeReport, waitForIds } from './conformance-arrivals.ts';
import {
  chunk,
  deliverAll,
  expectAllDelivered,
  expectNoneDelivered,
  expectNothingCounted,
  mergeRecord,
  sendAndRecord,
  settleWithin,
  type SendRecord,
} from './conformance-sending.ts';
import type { CheckContext, TransportCheck } from './conformance.ts';
import { testEvents } from './events.ts';
import type { Subscription } from './harness.ts';

/**
 * Checks under faults. The suite plays the relay: it trusts only `delivered` outcomes, resends
 * everything else, and accepts duplicates (at least once). Two properties are judged every time:
 * safety (an event reported delivered did arrive, so the relay's cursor never passes a lost event)
 * and liveness (after the fault, resending gets everything through).
 */
export const faultChecks: readonly TransportCheck[] = [
  {
    name: 'never reports delivery while the destination is down, counts the outage against no event, and delivers everything once it is back',
    async run(ctx) {
      const { topic, subscription, transport, warmUp } = await connected(ctx, 'down');
      const batch = testEvents(ctx.batchSize(100), { topic, key: (i) => `key-${i % 5}` });
      const single = testEvents(1, { topic, key: 'key-0' });
      await ctx.whileDown(async () => {
        for (const events of [batch, single]) {
          const record = await settledSend(ctx, transport, events, AbortSignal.timeout(ctx.options.downSendTimeoutMs));
          expectNoneDelivered(record, `a send of ${events.length} events while the destination was down`);
          expectNothingCounted(record, `a send of ${events.length} events while the destination was down`);
        }
      });
      await resendAndExpectAll(ctx, transport, subscription, [...batch, ...single], warmUp);
    },
  },
  {
    name: 'never reports an event delivered that did not arrive when connections are cut mid-batch, and delivers everything on resend',
    async run(ctx) {
      const { topic, subscription, transport, warmUp } = await connected(ctx, 'cut');
      const size = ctx.batchSize(500);
      const events = testEvents(size * 6, { topic, key: (i) => `key-${i % 11}` });
      const [first = [], ...rest] = chunk(events, size);
      const signal = () => AbortSignal.timeout(ctx.options.sendTimeoutMs);
      const record = await sendAndRecord(transport, first, signal());
      // Three batches in flight at once when the cut lands, then the rest one by one on new connections.
      const inFlight = rest.slice(0, 3).map((batch) => sendAndRecord(transport, batch, signal()));
      const cut = ctx.harness.faults.cutConnections();
      for (const result of await Promise.all(inFlight)) mergeRecord(record, result);
      await cut;
      for (const batch of rest.slice(3)) mergeRecord(record, await sendAndRecord(transport, batch, signal()));
      await expectDeliveredArrived(ctx, subscription, record, 'connections were cut mid-batch');
      await resendAndExpectAll(ctx, transport, subscription, record.undelivered, [...warmUp, ...record.delivered]);
    },
  },
  {
    name: 'ends a send promptly when its signal is aborted while the destination is down',
    async run(ctx) {
      const { topic, subscription, transport, warmUp } = await connected(ctx, 'abort-down');
      const aborted = testEvents(ctx.batchSize(100), { topic });
      const preAborted = testEvents(10, { topic });
      await ctx.whileDown(async () => {
        const controller = new AbortController();
        const sending = sendAndRecord(transport, aborted, controller.signal);
        await sleep(50);
        controller.abort();
        const record = await promptly(ctx, sending, 'a send whose signal was aborted while the destination was down');
        expectNoneDelivered(record, 'an aborted send while the destination was down');
        const early = await promptly(ctx, sendAndRecord(transport, preAborted, AbortSignal.abort()), 'a send given an already aborted signal');
        expectNoneDelivered(early, 'a send given an already aborted signal while the destination was down');
      });
      await resendAndExpectAll(ctx, transport, subscription, [...aborted, ...preAborted], warmUp);
    },
  },
  {
    name: 'reports as delivered only events that arrived when a send is aborted mid-batch or before it starts',
    async run(ctx) {
      const { topic, subscription, transport, warmUp } = await connected(ctx, 'abort-healthy');
      const big = testEvents(ctx.batchSize(500), { topic, key: (i) => `key-${i % 5}` });
      const small = testEvents(10, { topic });
      const controller = new AbortController();
      const sending = sendAndRecord(transport, big, controller.signal);
      controller.abort();
      const record = await promptly(ctx, sending, 'a send whose signal was aborted right after it started');
      mergeRecord(record, await promptly(ctx, sendAndRecord(transport, small, AbortSignal.abort()), 'a send given an already aborted signal'));
      await expectDeliveredArrived(ctx, subscription, record, 'sends were aborted');
      await resendAndExpectAll(ctx, transport, subscription, record.undelivered, [...warmUp, ...record.delivered]);
    },
  },
];

/** A fresh topic, its subscription, and a transport that has delivered once, so its connection is up before any fault. */
async function connected(ctx: CheckContext, label: string) {
  const topic = ctx.topic(label);
  const subscription = await ctx.subscribe(topic);
  const transport = await ctx.transport();
  const warmUp = testEvents(3, { topic, key: 'warm-up' });
  expectAllDelivered(await sendAndRecord(transport, warmUp, AbortSignal.timeout(ctx.options.sendTimeoutMs)), 'warming up before the fault');
  return { topic, subscription, transport, warmUp };
}

/** A send that must settle within its own deadline plus `abortWithinMs`: a transport that ignores its signal fails here. */
async function settledSend(ctx: CheckContext, transport: Transport, events: readonly OutboxEvent[], signal: AbortSignal): Promise<SendRecord> {
  const limit = ctx.options.downSendTimeoutMs + ctx.options.abortWithinMs;
  return promptly(ctx, sendAndRecord(transport, events, signal), `a send with a ${ctx.options.downSendTimeoutMs} ms deadline`, limit);
}

async function promptly(ctx: CheckContext, sending: Promise<SendRecord>, what: string, ms = ctx.options.abortWithinMs): Promise<SendRecord> {
  const result = await settleWithin(sending, ms, `${what} did not end after its signal was aborted; sends must honour their AbortSignal`);
  if (!result.ok) throw result.error; // sendAndRecord only rejects when the Transport contract is broken
  return result.value;
}

/** Safety: whatever a send reported delivered must be at the destination. */
async function expectDeliveredArrived(ctx: CheckContext, subscription: Subscription, record: SendRecord, when: string): Promise<void> {
  const delivered = record.delivered.map((event) => event.eventId);
  const received = await waitForIds(subscription, delivered, ctx.options.arrivalTimeoutMs);
  const report = compareArrivals(delivered, received);
  if (report.missing.length > 0) {
    throw new Error(
      `after ${when}, ${report.missing.length} events reported delivered never arrived; the relay would have moved its cursor past them.\n` +
        describeReport({ ...report, unexpected: [] }, false),
    );
  }
}

/** Liveness: resend what was not delivered; then everything (and nothing else) has arrived at least once. */
async function resendAndExpectAll(
  ctx: CheckContext,
  transport: Transport,
  subscription: Subscription,
  undelivered: readonly OutboxEvent[],
  alreadyDelivered: readonly OutboxEvent[],
): Promise<void> {
  const resent = await deliverAll(transport, undelivered, {
    batchSize: ctx.batchSize(500),
    timeoutMs: ctx.options.recoveryTimeoutMs,
    sendTimeoutMs: ctx.options.sendTimeoutMs,
  });
  const all = [...alreadyDelivered, ...resent.delivered].map((event) => event.eventId);
  await ctx.expectArrivals(subscription, all, { allowDuplicates: true });
}

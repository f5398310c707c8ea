import type { OutboxEvent } from '@tidings/outbox';
import { expect } from 'vitest';
import { assertAllArrived } from './conformance-arrivals.ts';
import {
  chunk,
  emptyRecord,
  expectAllDelivered,
  expectNoneDelivered,
  mergeRecord,
  recordOutcomes,
  sendAndRecord,
  settleWithin,
  within,
} from './conformance-sending.ts';
import type { TransportCheck } from './conformance.ts';
import { sampleEvents, testEvents } from './events.ts';
import type { ReceivedMessage } from './harness.ts';

/** Checks of a healthy destination: what arrives, in what order, and what close() does. */
export const deliveryChecks: readonly TransportCheck[] = [
  {
    name: 'declares the capabilities it is described with',
    async run(ctx) {
      const transport = await ctx.transport();
      expect(transport.name, 'transport.name').toMatch(/\S/);
      expect(transport.capabilities.orderedPerKey, 'capabilities.orderedPerKey').toBe(ctx.capabilities.orderedPerKey);
      expect(transport.capabilities.persistent, 'capabilities.persistent').toBe(ctx.capabilities.persistent);
      expect(transport.capabilities.maxBatchSize, 'capabilities.maxBatchSize').toBe(ctx.capabilities.maxBatchSize);
    },
  },
  {
    name: 'delivers every event with its id, topic, key, headers and payload intact',
    async run(ctx) {
      const topic = ctx.topic('intact');
      const subscription = await ctx.subscribe(topic);
      const transport = await ctx.transport();
      const samples = sampleEvents(topic);
      const record = emptyRecord();
      for (const batch of chunk(samples, ctx.batchSize(samples.length))) {
        const events = batch.map((sample) => sample.event);
        mergeRecord(record, await sendAndRecord(transport, events, AbortSignal.timeout(ctx.options.sendTimeoutMs)));
      }
      expectAllDelivered(record, 'sending the sample events');
      const received = await ctx.expectArrivals(subscription, samples.map((sample) => sample.event.eventId));
      const byId = new Map(received.map((message) => [message.eventId, message]));
      for (const { label, event } of samples) {
        const message = byId.get(event.eventId)!;
        expect(message.topic, `${label}: topic`).toBe(event.topic);
        expect(message.key, `${label}: key`).toBe(event.key);
        expect(message.payload, `${label}: payload`).toEqual(event.payload);
        // The destination may add headers of its own (ids, signatures); the event's must be there unchanged.
        expect(message.headers, `${label}: headers`).toMatchObject(event.headers);
      }
    },
  },
  {
    name: 'delivers every event of many sends made at the same time',
    async run(ctx) {
      const topic = ctx.topic('concurrent');
      const subscription = await ctx.subscribe(topic);
      const transport = await ctx.transport();
      const events = testEvents(1_000, { topic, key: (i) => `key-${i % 7}` });
      const records = await Promise.all(
        chunk(events, ctx.batchSize(50)).map((batch) => sendAndRecord(transport, batch, AbortSignal.timeout(ctx.options.sendTimeoutMs))),
      );
      expectAllDelivered(records.reduce(mergeRecord, emptyRecord()), `sending ${records.length} batches at once`);
      await ctx.expectArrivals(subscription, ids(events));
    },
  },
  {
    name: 'keeps topics apart: each subscriber receives its own topic only, even from mixed batches',
    async run(ctx) {
      const [a, b, silent] = [ctx.topic('a'), ctx.topic('b'), ctx.topic('silent')];
      const [subA, subB, subSilent] = await Promise.all([ctx.subscribe(a), ctx.subscribe(b), ctx.subscribe(silent)]);
      const transport = await ctx.transport();
      const eventsA = testEvents(100, { topic: a, key: (i) => `key-${i % 3}` });
      const eventsB = testEvents(100, { topic: b, key: (i) => `key-${i % 3}` });
      const mixed = eventsA.flatMap((event, i) => [event, eventsB[i]!]);
      const record = emptyRecord();
      for (const batch of chunk(mixed, ctx.batchSize(50))) {
        mergeRecord(record, await sendAndRecord(transport, batch, AbortSignal.timeout(ctx.options.sendTimeoutMs)));
      }
      expectAllDelivered(record, 'sending batches that mix two topics');
      await Promise.all([ctx.expectArrivals(subA, ids(eventsA)), ctx.expectArrivals(subB, ids(eventsB))]);
      assertAllArrived([], subSilent.received, { label: `on topic "${silent}", to which nothing was sent` });
      for (const [subscription, expected] of [[subA, a], [subB, b]] as const) {
        const strays = subscription.received.filter((message) => message.topic !== expected);
        expect(strays.map((message) => message.topic), `messages on "${expected}" that name another topic`).toEqual([]);
      }
    },
  },
  {
    name: 'delivers events that share a key in the order they were sent, while other keys are sent at the same time',
    applies: (capabilities) => capabilities.orderedPerKey,
    async run(ctx) {
      const topic = ctx.topic('ordered');
      const subscription = await ctx.subscribe(topic);
      const transport = await ctx.transport();
      // Four senders, like four relay partitions: each sends its own keys batch after batch.
      const streams = [0, 1, 2, 3].map((s) => testEvents(200, { topic, key: (i) => `stream-${s}-key-${i % 5}` }));
      const records = await Promise.all(
        streams.map(async (events) => {
          const record = emptyRecord();
          for (const batch of chunk(events, ctx.batchSize(25))) {
            mergeRecord(record, await sendAndRecord(transport, batch, AbortSignal.timeout(ctx.options.sendTimeoutMs)));
          }
          return record;
        }),
      );
      expectAllDelivered(records.reduce(mergeRecord, emptyRecord()), 'sending four ordered streams');
      const received = await ctx.expectArrivals(subscription, streams.flatMap(ids));
      const violations = orderViolations(streams.flat(), received);
      if (violations.length > 0) {
        throw new Error(`events with the same key arrived out of send order (${violations.length} keys):\n  ${violations.slice(0, 5).join('\n  ')}`);
      }
    },
  },
  {
    name: 'close() lets sends in flight finish, and closing twice is harmless',
    async run(ctx) {
      const topic = ctx.topic('close');
      const subscription = await ctx.subscribe(topic);
      const transport = await ctx.transport();
      const before = testEvents(50, { topic, key: 'k' });
      expectAllDelivered(await sendAndRecord(transport, before, AbortSignal.timeout(ctx.options.sendTimeoutMs)), 'sending before close()');
      const inFlight = testEvents(ctx.batchSize(200), { topic, key: 'k' });
      const sending = sendAndRecord(transport, inFlight, AbortSignal.timeout(ctx.options.sendTimeoutMs));
      await within(transport.close(), ctx.options.sendTimeoutMs, 'close() with a send in flight did not resolve');
      const finished = await Promise.race([sending.then(() => true), new Promise<false>((resolve) => setImmediate(resolve, false))]);
      expect(finished, 'the send in flight when close() was called was still pending after close() resolved').toBe(true);
      expectAllDelivered(await sending, 'close() must flush: the send in flight when close() was called');
      await within(Promise.all([transport.close(), transport.close()]), ctx.options.abortWithinMs, 'close() of a closed transport did not resolve');
      await ctx.expectArrivals(subscription, [...ids(before), ...ids(inFlight)]);
    },
  },
  {
    name: 'never delivers a send made after close(), and says so',
    async run(ctx) {
      const topic = ctx.topic('after-close');
      const subscription = await ctx.subscribe(topic);
      const transport = await ctx.transport();
      const before = testEvents(3, { topic });
      expectAllDelivered(await sendAndRecord(transport, before, AbortSignal.timeout(ctx.options.sendTimeoutMs)), 'sending before close()');
      await within(transport.close(), ctx.options.sendTimeoutMs, 'close() did not resolve');
      const events = testEvents(10, { topic });
      const result = await settleWithin(
        transport.send(events, AbortSignal.timeout(ctx.options.sendTimeoutMs)),
        ctx.options.abortWithinMs,
        'a send after close() did not settle',
      );
      if (result.ok) {
        expectNoneDelivered(recordOutcomes(events, result.value), 'a send after close()');
      } else {
        expect(result.error, 'a send after close() must reject with an Error that says why').toBeInstanceOf(Error);
      }
      // Only the events sent before close() may arrive; any of the others would be "unexpected".
      await ctx.expectArrivals(subscription, ids(before), { label: 'events sent before and after close()' });
    },
  },
];

function ids(events: readonly OutboxEvent[]): string[] {
  return events.map((event) => event.eventId);
}

/** For each key, the first place where the arrival order (first arrivals only) differs from the send order. */
export function orderViolations(sent: readonly OutboxEvent[], received: readonly ReceivedMessage[]): string[] {
  const sentByKey = new Map<string, string[]>();
  for (const event of sent) if (event.key !== null) (sentByKey.get(event.key) ?? sentByKey.set(event.key, []).get(event.key)!).push(event.eventId);
  const arrivedByKey = new Map<string, string[]>();
  const seen = new Set<string>();
  for (const message of received) {
    if (message.key === null || seen.has(message.eventId)) continue;
    seen.add(message.eventId);
    (arrivedByKey.get(message.key) ?? arrivedByKey.set(message.key, []).get(message.key)!).push(message.eventId);
  }
  const violations: string[] = [];
  for (const [key, sentIds] of sentByKey) {
    const arrived = arrivedByKey.get(key) ?? [];
    const at = sentIds.findIndex((id, i) => arrived[i] !== id);
    if (at === -1) continue;
    const got = arrived[at];
    const gotAt = got === undefined ? -1 : sentIds.indexOf(got);
    violations.push(`key "${key}": arrival #${at} should be ${sentIds[at]} (sent #${at}) but is ${got ?? 'nothing'}${gotAt >= 0 ? ` (sent #${gotAt})` : ''}`);
  }
  return violations;
}

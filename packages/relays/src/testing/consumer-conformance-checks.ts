import { ConfigError } from '@tidings/outbox';
import { expect } from 'vitest';
import { HandlerFailedError, type ReceivedEvent } from '../shared/consumer.ts';
import type { AppliedEvent, ConsumerCheck, ConsumerCheckContext, ConsumerUnderTest, SqlTransaction } from './consumer-conformance.ts';

const ids = (rows: readonly AppliedEvent[]): string[] => rows.map((row) => row.eventId);

/** Every id applied more than once, with its count. */
function appliedTwice(rows: readonly AppliedEvent[]): Record<string, number> {
  const counts = new Map<string, number>();
  for (const row of rows) counts.set(row.eventId, (counts.get(row.eventId) ?? 0) + 1);
  return Object.fromEntries([...counts].filter(([, n]) => n > 1));
}

/** Waits until every id was applied and the transport holds nothing unacknowledged. */
async function settled(context: ConsumerCheckContext, underTest: ConsumerUnderTest, wanted: readonly string[]): Promise<AppliedEvent[]> {
  await context.waitUntil(`${wanted.length} events were applied`, async () => {
    const applied = new Set(ids(await context.applied()));
    return wanted.every((id) => applied.has(id));
  });
  await context.waitUntil('every delivery was acknowledged', async () => (await underTest.pending()) === 0);
  return context.applied();
}

/**
 * Delivers one more event of `key` and waits for it: on a transport that keeps a key's order,
 * whatever was delivered before it of that key has been handled once it is applied.
 */
async function behindMarker(context: ConsumerCheckContext, underTest: ConsumerUnderTest, key: string): Promise<string> {
  const [marker] = await underTest.deliver([{ key, payload: { marker: true } }]);
  await settled(context, underTest, [marker!]);
  return marker!;
}

const duplicate: ConsumerCheck = {
  name: 'applies an event delivered twice once',
  async run(context) {
    const underTest = await context.start();
    const [id] = await underTest.deliver([{ key: 'k', payload: { n: 1 } }]);
    await settled(context, underTest, [id!]);
    await underTest.redeliver([id!]);
    const marker = await behindMarker(context, underTest, 'k');
    expect(ids(await context.applied())).toEqual([id, marker]);
  },
};

const crash: ConsumerCheck = {
  name: (capabilities) => `applies an event once when it crashes between the commit and the acknowledgement (${capabilities.crash})`,
  async run(context) {
    const underTest = await context.start({ crashAfterFirstCommit: true });
    const delivered = await underTest.deliver([1, 2, 3].map((n) => ({ key: 'k', payload: { n } })));
    // Every delivery is acknowledged in the end, the one whose acknowledgement the crash lost too,
    // without anything more arriving to carry it along.
    await settled(context, underTest, delivered);
    expect(underTest.crashes, 'crashes simulated').toBe(1);
    const marker = await behindMarker(context, underTest, 'k');
    const applied = await context.applied();
    expect(appliedTwice(applied), 'events applied more than once').toEqual({});
    expect(new Set(ids(applied))).toEqual(new Set([...delivered, marker]));
  },
};

const retried: ConsumerCheck = {
  name: (capabilities) =>
    capabilities.onExhausted === 'sender-retries'
      ? 'answers 5xx while the handler throws, and applies the event once when the sender tries again'
      : 'runs a throwing handler again, event.attempt growing, and applies the event once it succeeds',
  async run(context) {
    const attempts: number[] = [];
    const rejected: number[] = [];
    let runs = 0;
    const underTest = await context.start({
      handler: async (trx, event) => {
        attempts.push(event.attempt);
        await context.record(trx, event);
        if (++runs < 3) throw new Error(`refused on run ${runs}`);
      },
      onEvent: (event) => {
        if (event.type === 'rejected') rejected.push((event as unknown as { status: number }).status);
      },
    });
    const [id] = await underTest.deliver([{ key: 'k', payload: { flaky: true } }]);
    const applied = await settled(context, underTest, [id!]);
    expect(ids(applied)).toEqual([id]);
    expect(attempts).toEqual(context.capabilities.countsAttempts ? [1, 2, 3] : [1, 1, 1]);
    if (context.capabilities.onExhausted === 'sender-retries') expect(rejected).toEqual([500, 500]);
  },
};

const deadLettered: ConsumerCheck = {
  name: 'sets an event aside as a dead letter after retry.attempts runs of a failing handler, and goes on',
  applies: (capabilities) => capabilities.onExhausted === 'dead-letter',
  async run(context) {
    let poison: string | undefined;
    const attempts: number[] = [];
    const underTest = await context.start({
      retry: { attempts: 3, minDelayMs: 20, maxDelayMs: 50 },
      handler: async (trx, event) => {
        if ((event.payload as { poison?: boolean }).poison) {
          attempts.push(event.attempt);
          throw new Error(`refused on attempt ${event.attempt}`);
        }
        await context.record(trx, event);
      },
    });
    const [bad, healthy] = await underTest.deliver([
      { key: 'k', payload: { poison: true } },
      { key: 'k', payload: { poison: false } },
    ]);
    poison = bad;
    await context.waitUntil('the failing event was dead-lettered', async () => (await underTest.deadLettered!()).includes(poison!));
    await settled(context, underTest, [healthy!]);
    expect(await underTest.deadLettered!()).toEqual([poison]);
    expect(ids(await context.applied())).toEqual([healthy]);
    expect(attempts).toEqual([1, 2, 3]);
  },
};

const stops: ConsumerCheck = {
  name: 'stops, done rejecting with HandlerFailedError, after retry.attempts runs of a failing handler, applying nothing after the event',
  applies: (capabilities) => capabilities.onExhausted === 'stop',
  async run(context) {
    const underTest = await context.start({
      retry: { attempts: 3, minDelayMs: 20, maxDelayMs: 50 },
      handler: async (trx, event) => {
        if ((event.payload as { poison?: boolean }).poison) throw new Error(`refused on attempt ${event.attempt}`);
        await context.record(trx, event);
      },
    });
    const [first, poison] = await underTest.deliver([
      { key: 'k', payload: { poison: false } },
      { key: 'k', payload: { poison: true } },
      { key: 'k', payload: { poison: false } },
    ]);
    await expect(underTest.consumer.done).rejects.toBeInstanceOf(HandlerFailedError);
    await expect(underTest.consumer.done).rejects.toMatchObject({ eventId: poison, attempts: 3, cause: { message: 'refused on attempt 3' } });
    expect(ids(await context.applied())).toEqual([first]);
  },
};

const ackAfterCommit: ConsumerCheck = {
  name: 'acknowledges an event only after the transaction that applied it committed',
  async run(context) {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered = false;
    const underTest = await context.start({
      handler: async (trx, event) => {
        await context.record(trx, event);
        entered = true;
        await gate;
      },
    });
    const [id] = await underTest.deliver([{ key: 'k', payload: { held: true } }]);
    try {
      await context.waitUntil('the handler holds its transaction open', () => entered);
      expect(await underTest.pending(), 'deliveries acknowledged while the transaction was open').toBe(1);
      expect(await context.applied()).toEqual([]);
      expect(await underTest.pending(), 'deliveries acknowledged while the transaction was open').toBe(1);
    } finally {
      release();
    }
    expect(ids(await settled(context, underTest, [id!]))).toEqual([id]);
  },
};

const swallowed: ConsumerCheck = {
  name: 'does not acknowledge an event whose handler swallowed a SQL error: it comes again and is applied once',
  async run(context) {
    let runs = 0;
    const underTest = await context.start({
      handler: async (trx: SqlTransaction, event: ReceivedEvent) => {
        await context.record(trx, event);
        // A careless handler: the error aborts the transaction, and is swallowed.
        if (++runs <= 2) await trx.query('SELECT 1/0').catch(() => {});
      },
    });
    const [id] = await underTest.deliver([{ key: 'k', payload: { n: 1 } }]);
    const applied = await settled(context, underTest, [id!]);
    expect(ids(applied)).toEqual([id]);
    expect(runs, 'runs of the handler').toBe(3);
  },
};

const ordered: ConsumerCheck = {
  name: 'applies the events of one key in publish order',
  applies: (capabilities) => capabilities.orderedPerKey,
  async run(context) {
    const underTest = await context.start();
    const keys = ['a', 'b', 'c', 'd'];
    const inputs = Array.from({ length: 60 }, (_, i) => ({ key: keys[i % keys.length]!, payload: { i } }));
    const delivered = await underTest.deliver(inputs);
    const applied = await settled(context, underTest, delivered);
    for (const key of keys) {
      const published = delivered.filter((_, i) => inputs[i]!.key === key);
      expect(ids(applied.filter((row) => row.key === key)), `the order of key ${key}`).toEqual(published);
    }
  },
};

const shape: ConsumerCheck = {
  name: 'hands the handler one ReceivedEvent, and a throwing onEvent does not break delivery',
  async run(context) {
    const seen: ReceivedEvent[] = [];
    let heard = 0;
    const underTest = await context.start({
      handler: async (trx, event) => {
        seen.push(event);
        await context.record(trx, event);
      },
      onEvent: () => {
        heard++;
        throw new Error('an observer that throws changes nothing');
      },
    });
    const delivered = await underTest.deliver([
      { key: 'k', payload: { n: 1, text: 'ünïcødé' } },
      { key: null, payload: [1, null, true] },
    ]);
    expect(ids(await settled(context, underTest, delivered)).sort()).toEqual([...delivered].sort());
    expect(heard).toBeGreaterThan(0);
    const first = seen.find((event) => event.eventId === delivered[0])!;
    expect(first).toMatchObject({ key: 'k', tenant: null, payload: { n: 1, text: 'ünïcødé' }, headers: {}, attempt: 1 });
    expect(typeof first.topic).toBe('string');
    expect(first.createdAt).toBeInstanceOf(Date);
    expect(first.delivery.transport).toBe(context.capabilities.transport);
    expect(seen.find((event) => event.eventId === delivered[1])).toMatchObject({ key: null, payload: [1, null, true] });
  },
};

const lifecycle: ConsumerCheck = {
  name: 'resolves close() once stopped, and done after it; close() again resolves too',
  async run(context) {
    const underTest = await context.start();
    const delivered = await underTest.deliver([{ key: 'k', payload: {} }]);
    await settled(context, underTest, delivered);
    const { consumer } = underTest;
    let done = false;
    void consumer.done.then(() => (done = true));
    await Promise.resolve();
    expect(done, 'done resolved before close()').toBe(false);
    await consumer.close();
    await expect(consumer.done).resolves.toBeUndefined();
    await consumer.close();
  },
};

const configErrors: ConsumerCheck = {
  name: 'refuses bad options with a ConfigError naming the option, before connecting',
  async run(context) {
    const cases: [string, Record<string, unknown>][] = [
      ['consumer', { consumer: '' }],
      ['database', { database: { not: 'a transaction source' } }],
      ['handler', { handler: 'apply' }],
      ['schema', { schema: '' }],
      ['onEvent', { onEvent: 'log' }],
    ];
    if (context.capabilities.onExhausted !== 'sender-retries') {
      cases.push(['retry.attempts', { retry: { attempts: 0 } }], ['retry.minDelayMs', { retry: { minDelayMs: -1 } }], ['retry.maxDelayMs', { retry: { minDelayMs: 500, maxDelayMs: 100 } }]);
    }
    const refusals: Record<string, unknown> = {};
    for (const [option, overrides] of cases) {
      try {
        const made = await context.harness.configure(overrides);
        // Accepted: stop what it started, and report it.
        await (made as { close?: () => Promise<void> } | undefined)?.close?.();
        refusals[option] = 'accepted';
      } catch (error) {
        refusals[option] = error instanceof ConfigError ? error.option : String(error);
      }
    }
    expect(refusals).toEqual(Object.fromEntries(cases.map(([option]) => [option, option])));
  },
};

/** Every check of the consumer conformance suite, in the order they run. */
export const consumerChecks: readonly ConsumerCheck[] = [duplicate, crash, retried, deadLettered, stops, ackAfterCommit, swallowed, ordered, shape, lifecycle, configErrors];

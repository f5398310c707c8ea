import { delivered, retry, TransportClosedError, type SendOutcome, type Transport } from '@tidings/outbox';
import {
  ArrivalAssertionError,
  assertAllArrived,
  memoryCapabilities,
  memoryHarness,
  MemoryBroker,
  MemoryBrokerError,
  memoryTransport,
  newEventId,
  runCheck,
  testEvent,
  testEvents,
  transportChecks,
  type ConformanceOptions,
  type MemoryHarnessOptions,
  type TransportHarness,
} from '@tidings/relays/testing';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';

const signal = () => AbortSignal.timeout(5_000);

describe('memory transport', () => {
  it('delivers synchronously, in send order, the very event objects it was given', async () => {
    const transport = memoryTransport();
    const events = testEvents(5, { topic: 'orders', key: 'k' });
    const sending = transport.send(events, signal());
    expect(transport.broker.messages('orders')).toEqual(events);
    expect((await sending).map((outcome) => outcome.status)).toEqual(Array(5).fill('delivered'));
    expect(transport.broker.messages('orders')[0]).toBe(events[0]);
    expect(transport.broker.count()).toBe(5);
  });

  it('fails the next events on purpose, and fails the rest of a batch after a retryable failure', async () => {
    const transport = memoryTransport();
    const events = testEvents(4, { topic: 't' });
    transport.broker.failNext(1, 'failed');
    expect((await transport.send(events, signal())).map((o) => o.status)).toEqual(['failed', 'delivered', 'delivered', 'delivered']);
    transport.broker.failNext(1, 'retry');
    const outcomes = await transport.send(events, signal());
    expect(outcomes.map((o) => o.status)).toEqual(['retry', 'retry', 'retry', 'retry']);
    expect(reasons(outcomes)).toEqual(['injected', 'not-attempted', 'not-attempted', 'not-attempted']);
    transport.broker.failWhen((event) => event === events[2] && 'retry');
    expect((await transport.send(events, signal())).map((o) => o.status)).toEqual(['delivered', 'delivered', 'retry', 'retry']);
    expect(transport.broker.messages('t').length).toBe(3 + 2);
  });

  it('answers retry, rejects, or holds sends until it recovers while down, as asked', async () => {
    const transport = memoryTransport();
    const { broker } = transport;
    const events = testEvents(3, { topic: 't' });
    broker.takeDown();
    expect(reasons(await transport.send(events, signal()))).toEqual(['down', 'down', 'down']);
    broker.takeDown('throw');
    await expect(transport.send(events, signal())).rejects.toBeInstanceOf(MemoryBrokerError);
    broker.takeDown('hang');
    const held = transport.send(events, signal());
    await sleep(20);
    expect(broker.inFlight).toBe(1);
    expect(broker.count('t')).toBe(0);
    broker.recover();
    expect((await held).every((o) => o.status === 'delivered')).toBe(true);
    expect(broker.count('t')).toBe(3);
  });

  it('fails sends in flight with retry when connections are cut, after half of each batch arrived', async () => {
    const broker = new MemoryBroker({ latencyMs: 1_000 });
    const transport = memoryTransport({ broker });
    const events = testEvents(10, { topic: 't' });
    const sending = transport.send(events, signal());
    expect(broker.cutConnections()).toBe(1);
    expect(reasons(await sending)).toEqual(Array(10).fill('connection-cut'));
    expect(broker.messages('t')).toEqual(events.slice(0, 5));
    broker.setLatency(0);
    expect((await transport.send(events, signal()))[0]).toBe(delivered);
  });

  it("rejects an aborted send with the signal's reason and records nothing", async () => {
    const broker = new MemoryBroker({ latencyMs: 10_000 });
    const transport = memoryTransport({ broker });
    const controller = new AbortController();
    const sending = transport.send(testEvents(3, { topic: 't' }), controller.signal);
    controller.abort(new Error('stop'));
    await expect(sending).rejects.toThrow('stop');
    await expect(transport.send(testEvents(1, { topic: 't' }), AbortSignal.abort())).rejects.toMatchObject({ name: 'AbortError' });
    expect(broker.inFlight).toBe(0);
    expect(broker.count('t')).toBe(0);
  });

  it('waits in close() for sends in flight, then refuses new sends with TransportClosedError', async () => {
    const transport = memoryTransport({ broker: new MemoryBroker({ latencyMs: 20 }), name: 'memory-a' });
    const sending = transport.send(testEvents(3, { topic: 't' }), signal());
    await transport.close();
    expect(transport.broker.count('t')).toBe(3);
    expect((await sending).every((o) => o.status === 'delivered')).toBe(true);
    expect(transport.close()).toBe(transport.close());
    await expect(transport.send(testEvents(1, { topic: 't' }), signal())).rejects.toThrow(TransportClosedError);
    await expect(transport.send([], signal())).rejects.toThrow(/"memory-a" is closed/);
  });

  it('does not wait in close() for sends held by a broker that is down: they answer unavailable', async () => {
    const transport = memoryTransport();
    transport.broker.takeDown('hang');
    const sending = transport.send(testEvents(2, { topic: 't' }), signal());
    await transport.close();
    expect((await sending).map((o) => o.status)).toEqual(['unavailable', 'unavailable']);

    const slow = memoryTransport({ broker: new MemoryBroker({ latencyMs: 20 }) });
    const caught = slow.send(testEvents(2, { topic: 't' }), signal());
    slow.broker.takeDown('hang'); // the send is held when its latency is over, after close() began
    await slow.close();
    expect((await caught).map((o) => o.status)).toEqual(['unavailable', 'unavailable']);
  });

  it('refuses batches over maxBatchSize and bad options', async () => {
    const transport = memoryTransport({ maxBatchSize: 2 });
    expect(transport.capabilities).toEqual({ orderedPerKey: true, persistent: false, maxBatchSize: 2 });
    await expect(transport.send(testEvents(3, { topic: 't' }), signal())).rejects.toThrow(/over this transport's maxBatchSize of 2/);
    expect(() => memoryTransport({ maxBatchSize: 0 })).toThrow(/maxBatchSize/);
    expect(() => new MemoryBroker({ latencyMs: -1 })).toThrow(/latencyMs/);
  });

  it('keeps only the latest messages when told to, with exact counts', async () => {
    const broker = new MemoryBroker({ retain: 10 });
    const transport = memoryTransport({ broker });
    const events = testEvents(100, { topic: 't' });
    for (const event of events) await transport.send([event], signal());
    expect(broker.count('t')).toBe(100);
    expect(broker.messages('t').length).toBeLessThanOrEqual(20);
    expect(broker.messages('t').at(-1)).toBe(events.at(-1));
  });

  it('lets tests watch and wait for topics', async () => {
    const transport = memoryTransport();
    const seen: string[] = [];
    const unwatch = transport.broker.watch('t', (event) => seen.push(event.eventId));
    const waiting = transport.broker.waitFor('t', 2, 1_000);
    await transport.send(testEvents(2, { topic: 't' }), signal());
    expect(await waiting).toHaveLength(2);
    unwatch();
    await transport.send(testEvents(1, { topic: 't' }), signal());
    expect(seen).toHaveLength(2);
    await expect(transport.broker.waitFor('t', 10, 20)).rejects.toThrow('only 3 of 10 events arrived on "t" within 20 ms');
  });
});

describe('synthetic events and arrival assertions', () => {
  it('makes ULIDs that increase within one millisecond', () => {
    const ids = Array.from({ length: 1_000 }, newEventId);
    expect(ids.every((id) => /^[0-9A-HJKMNP-TV-Z]{26}$/.test(id))).toBe(true);
    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(1_000);
  });

  it('makes events shaped like stored ones', () => {
    const event = testEvent({ topic: 'orders', key: 'order-1' });
    expect(event).toMatchObject({ topic: 'orders', key: 'order-1', headers: {}, tenant: null });
    expect(event.partition).toBeGreaterThanOrEqual(0);
    expect(event.partition).toBeLessThan(16);
    expect(testEvent({ topic: 'orders', key: 'order-1' }).partition).toBe(event.partition);
  });

  it('reports missing, unexpected and duplicated ids separately', () => {
    const received = ['a', 'b', 'b', 'x'].map((eventId) => ({ eventId }));
    const error = catchError(() => assertAllArrived(['a', 'b', 'c'], received));
    expect(error).toBeInstanceOf(ArrivalAssertionError);
    expect(error.message).toContain('missing (1): c');
    expect(error.message).toContain('unexpected (1): x');
    expect(error.message).toContain('duplicated (1): b ×2');
    expect(() => assertAllArrived(['a', 'b'], received.slice(0, 3), { allowDuplicates: true })).not.toThrow();
  });
});

/** Test the tests: each check must fail against a transport broken in the way it guards against. */
describe('the conformance suite', () => {
  const quick: ConformanceOptions = { arrivalTimeoutMs: 300, settleMs: 20, abortWithinMs: 300, downSendTimeoutMs: 100, recoveryTimeoutMs: 500, sendTimeoutMs: 1_000 };
  const mutants: Array<[string, RegExp, RegExp, Breakage, MemoryHarnessOptions?]> = [
    ['loses every tenth event but reports it delivered', /many sends/, /missing \(100\)/, {
      send: (t, batch, s) => t.send(batch.filter((_, i) => i % 10 !== 0), s).then(() => batch.map(() => delivered)),
    }],
    ['sends every batch twice', /many sends/, /duplicated \(1000\)/, { send: (t, batch, s) => t.send(batch, s).then(() => t.send(batch, s)) }],
    ['drops headers', /intact/, /headers/, { send: (t, batch, s) => t.send(batch.map((e) => ({ ...e, headers: {} })), s) }],
    ['answers fewer outcomes than events', /intact/, /one outcome per event/, { send: (t, batch, s) => t.send(batch, s).then((o) => o.slice(1)) }],
    ['routes a mixed batch to the topic of its first event', /topics apart/, /missing|unexpected/, {
      send: (t, batch, s) => t.send(batch.map((e) => ({ ...e, topic: batch[0]!.topic })), s),
    }],
    ['reverses each batch', /order they were sent/, /out of send order/, { send: (t, batch, s) => t.send([...batch].reverse(), s).then((o) => [...o].reverse()) }],
    ['counts an outage against its events (refusing them while the destination is down)', /destination is down, counts/, /rather than "unavailable"/, {
      send: (t, batch, s) => t.send(batch, s).then((o) => o.map((x) => (x.status === 'unavailable' ? retry(x.error) : x))),
    }],
    ['reports delivered while the destination is down', /destination is down, counts/, /while the destination was down: send reported/, {
      send: (t, batch, s) => (t.broker.isDown ? Promise.resolve(batch.map(() => delivered)) : t.send(batch, s)),
    }],
    ['reports delivered when its connection is cut', /connections are cut/, /reported delivered never arrived/, {
      send: (t, batch, s) => t.send(batch, s).then((o) => o.map((x) => (reason(x) === 'connection-cut' ? delivered : x))),
    }, { latencyMs: 5 }],
    ['ignores its abort signal', /aborted while the destination is down/, /did not end after its signal was aborted/, {
      send: (t, batch) => t.send(batch, new AbortController().signal),
    }, { whenDown: 'hang' }],
    ['resolves close() before sends in flight finish', /close\(\) lets sends/, /still pending after close\(\) resolved/, {
      close: (t) => {
        void t.close();
        return Promise.resolve();
      },
    }, { latencyMs: 20 }],
    ['keeps sending after close()', /after close\(\)/, /send reported 10 events delivered/, { close: async () => {} }],
    ['keeps sending after close() while reporting failure', /after close\(\)/, /unexpected \(10\)/, sendsAfterClose()],
  ];

  for (const [breakage, checkName, failure, broken, options] of mutants) {
    it(`catches a transport that ${breakage}`, async () => {
      const check = transportChecks.find((c) => checkName.test(c.name));
      if (!check) throw new Error(`no check matches ${checkName}`);
      const harness = await brokenHarness(broken, options);
      try {
        await expect(runCheck(check, harness, memoryCapabilities, quick)).rejects.toThrow(failure);
      } finally {
        await harness.close();
      }
    });
  }

  it('cuts sends in flight in its connection-cut check when the destination is slow', async () => {
    const harness = await memoryHarness({ latencyMs: 5 });
    try {
      await runCheck(transportChecks.find((c) => /connections are cut/.test(c.name))!, harness, memoryCapabilities, quick);
      const topic = harness.broker.topics().find((name) => name.includes('.cut.'))!;
      const unique = new Set(harness.broker.messages(topic).map((event) => event.eventId)).size;
      expect(harness.broker.count(topic), 'duplicates show that the cut caught batches in flight').toBeGreaterThan(unique);
    } finally {
      await harness.close();
    }
  });

  it('catches a transport that declares capabilities it does not have', async () => {
    const harness = await memoryHarness();
    const check = transportChecks.find((c) => /capabilities/.test(c.name))!;
    await expect(runCheck(check, harness, { orderedPerKey: true, persistent: true }, quick)).rejects.toThrow(/persistent/);
    await harness.close();
  });
});

type MemoryT = ReturnType<typeof memoryTransport>;
interface Breakage {
  send?: (transport: MemoryT, batch: Parameters<Transport['send']>[0], signal: AbortSignal) => Promise<readonly SendOutcome[]>;
  close?: (transport: MemoryT) => Promise<void>;
}

function sendsAfterClose(): Breakage {
  let closed = false;
  return {
    close: async () => {
      closed = true;
    },
    send: (t, batch, s) => t.send(batch, s).then((outcomes) => (closed ? outcomes.map(() => retry(new Error('closed'))) : outcomes)),
  };
}

async function brokenHarness(broken: Breakage, options: MemoryHarnessOptions = {}): Promise<TransportHarness> {
  const base = await memoryHarness(options);
  return {
    ...base,
    async createTransport() {
      const transport = (await base.createTransport()) as MemoryT;
      return {
        name: transport.name,
        capabilities: transport.capabilities,
        send: (batch, s) => (broken.send ? broken.send(transport, batch, s) : transport.send(batch, s)),
        close: () => (broken.close ? broken.close(transport) : transport.close()),
      };
    },
  };
}

function reason(outcome: SendOutcome): string | undefined {
  return outcome.status !== 'delivered' && outcome.error instanceof MemoryBrokerError ? outcome.error.reason : undefined;
}

function reasons(outcomes: readonly SendOutcome[]): Array<string | undefined> {
  return outcomes.map(reason);
}

function catchError(body: () => unknown): Error {
  try {
    body();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected an error');
}

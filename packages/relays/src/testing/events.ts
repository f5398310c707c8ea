import { partitionOf, type Json, type OutboxEvent } from '@tidings/outbox';

/** Fields of a synthetic event; everything but `topic` has a realistic default. */
export interface TestEventInit {
  readonly topic: string;
  readonly key?: string | null;
  /** Default `{ seq: n }`, where n counts the events this module built. */
  readonly payload?: Json;
  readonly headers?: Readonly<Record<string, string>>;
  readonly tenant?: string | null;
  /** Default: a fresh ULID from {@link newEventId}. */
  readonly eventId?: string;
  /** Default: the key's (or, without a key, the id's) hash over 16 partitions, as `publish()` computes it. */
  readonly partition?: number;
  readonly createdAt?: Date;
}

/** How {@link testEvents} builds each of its events; functions receive the event's index in the list. */
export interface TestEventsInit {
  readonly topic: string;
  readonly key?: string | null | ((index: number) => string | null);
  /** Default `{ seq: index }`. */
  readonly payload?: (index: number) => Json;
  /** Shared by every event of the list (not copied). */
  readonly headers?: Readonly<Record<string, string>>;
  readonly tenant?: string | null;
}

/**
 * One synthetic `OutboxEvent`, shaped like an event read from the outbox: ULID id, partition,
 * position and creation time filled in. For transport tests and benchmarks that need no database.
 *
 * @example
 * const event = testEvent({ topic: 'orders.created', key: 'order-1', payload: { total: 42 } });
 * await transport.send([event], AbortSignal.timeout(5_000));
 */
export function testEvent(init: TestEventInit): OutboxEvent {
  const seq = nextSeq++;
  const eventId = init.eventId ?? newEventId();
  const key = init.key ?? null;
  return {
    eventId,
    topic: init.topic,
    key,
    partition: init.partition ?? partitionOf(key, eventId, 16),
    payload: init.payload === undefined ? { seq } : init.payload,
    headers: init.headers ?? noHeaders,
    tenant: init.tenant ?? null,
    createdAt: init.createdAt ?? new Date(),
    position: { seq: String(nextTx++), id: String(seq) },
  };
}

/**
 * `count` synthetic events for one topic, as one transaction would have written them: one
 * commit number, increasing row ids, one creation time.
 *
 * @example
 * // 1000 events spread over 10 ordering keys
 * const events = testEvents(1000, { topic: 'orders.created', key: (i) => `order-${i % 10}` });
 */
export function testEvents(count: number, init: TestEventsInit): OutboxEvent[] {
  const commitSeq = String(nextTx++);
  const createdAt = new Date();
  const headers = init.headers ?? noHeaders;
  const tenant = init.tenant ?? null;
  const keyOf = typeof init.key === 'function' ? init.key : undefined;
  const fixedKey = typeof init.key === 'function' ? null : (init.key ?? null);
  const events: OutboxEvent[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const eventId = newEventId();
    const key = keyOf ? keyOf(i) : fixedKey;
    const seq = nextSeq++;
    events[i] = {
      eventId,
      topic: init.topic,
      key,
      partition: partitionOf(key, eventId, 16),
      payload: init.payload ? init.payload(i) : { seq: i },
      headers,
      tenant,
      createdAt,
      position: { seq: commitSeq, id: String(seq) },
    };
  }
  return events;
}

/** A synthetic event and what makes it interesting. */
export interface SampleEvent {
  readonly label: string;
  readonly event: OutboxEvent;
}

/**
 * Events that stress what a transport must carry unchanged: every JSON type, unicode in payloads,
 * keys and header values, deep nesting, unusual object keys, a payload of about 100 KiB, the
 * longest key `publish()` accepts, many headers and none. Everything here is something
 * `publish()` accepts, so a transport that cannot carry it loses real events.
 *
 * @example
 * for (const { label, event } of sampleEvents('conformance.intact')) console.log(label, event.eventId);
 */
export function sampleEvents(topic: string): SampleEvent[] {
  const deep: Json = Array.from({ length: 32 }).reduce<Json>((inner, _, depth) => ({ depth, inner }), 'bottom');
  const manyHeaders: Record<string, string> = {};
  for (let i = 0; i < 40; i++) manyHeaders[`x-header-${i}`] = `value ${i}`;
  const samples: Array<[string, Omit<TestEventInit, 'topic'>]> = [
    ['null payload', { payload: null }],
    ['boolean payload', { payload: false, key: 'flags' }],
    ['number payloads', { payload: [0, 42, -17, 3.141592653589793, 1e-7, 2 ** 53 - 1, -(2 ** 53 - 1), 1.5e300] }],
    ['empty string payload', { payload: '' }],
    ['empty object and array', { payload: { object: {}, array: [], nested: [[], [{}]] } }],
    [
      'unicode text',
      {
        payload: {
          text: 'héllo wörld — ñ, 日本語, 中文, 한국어, العربية, עברית, Ελληνικά, русский',
          emoji: '🎉 👩‍👩‍👧‍👦 🏳️‍🌈 🇫🇷 𝄞',
          combining: 'e\u0301 a\u030a', // decomposed forms must not be normalised away
          invisible: 'zero\u200bwidth, bom\ufeff, nbsp\u00a0',
          escapes: 'quote " apostrophe \' backslash \\ slash / newline \n tab \t cr \r control \u0001\u001f',
        },
        key: 'clé-🔑-ключ',
      },
    ],
    ['unusual object keys', { payload: { '': 'empty key', 'with space': 1, 'dotted.key': 2, 'ünïcödé': 3, '🔑': 4, constructor: 'x', toString: 'y', '0': 'numeric' } }],
    ['deep nesting', { payload: { deep } }],
    [
      'business-like document',
      {
        key: 'order-1001',
        payload: {
          orderId: 'order-1001',
          customer: { name: 'Zoë Ångström', email: 'zoe@example.com', vip: true, tags: ['b2b', 'eu'] },
          lines: [
            { sku: 'SKU-1', qty: 2, price: 19.99, options: null },
            { sku: 'SKU-2', qty: 1, price: 0.1, options: { colour: 'vert', size: 'XL' } },
          ],
          total: 40.08,
          placedAt: '2024-02-29T23:59:59.999Z',
        },
      },
    ],
    ['about 100 KiB payload', { payload: { blob: largeText(100 * 1024), items: Array.from({ length: 500 }, (_, i) => ({ i, even: i % 2 === 0 })) } }],
    ['longest key publish() accepts (1024 characters)', { key: 'k'.repeat(1023) + '€', payload: { longKey: true } }],
    ['trace context header', { headers: { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', tracestate: 'vendor=a,other=b' } }],
    ['unicode, mixed-case and spaced header values', { headers: { 'X-Mixed-Case': 'Value', note: 'café ☕ – naïve', spaced: 'a b=c; d' } }],
    ['forty headers', { headers: manyHeaders }],
    ['no headers', { headers: {} }],
  ];
  return samples.map(([label, init]) => ({ label, event: testEvent({ topic, ...init }) }));
}

const crockford = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const randomDigits = new Uint8Array(16);
let lastTime = -1;
let timePart = '';

/**
 * A monotonic ULID, as `publish()` gives every event: 48 bits of milliseconds then 80 random bits,
 * incremented within one millisecond so ids made in a row sort in creation order.
 *
 * @example
 * const eventId = newEventId(); // e.g. '01J5Z8Q7X3M4K2N6P8R0S2T4V6'
 */
export function newEventId(): string {
  const now = Date.now();
  if (now > lastTime) {
    lastTime = now;
    let time = now;
    timePart = '';
    for (let i = 0; i < 10; i++) {
      timePart = crockford[time % 32] + timePart;
      time = Math.floor(time / 32);
    }
    crypto.getRandomValues(randomDigits);
    for (let i = 0; i < 16; i++) randomDigits[i]! &= 31;
  } else {
    // Same millisecond (or the clock went back): count up so ids keep increasing.
    let i = 15;
    while (i >= 0 && randomDigits[i] === 31) randomDigits[i--] = 0;
    if (i >= 0) randomDigits[i]!++;
  }
  let id = timePart;
  for (let i = 0; i < 16; i++) id += crockford[randomDigits[i]!];
  return id;
}

const noHeaders: Readonly<Record<string, string>> = Object.freeze({});
let nextSeq = 1;
let nextTx = 1;

function largeText(bytes: number): string {
  const words = ['delivery', 'guarantee', 'outbox', 'relay', 'inbox', 'événement', 'идемпотентность', '配達', '✓'];
  let text = '';
  for (let i = 0; text.length < bytes; i++) text += `${words[i % words.length]} ${i} `;
  return text.slice(0, bytes);
}

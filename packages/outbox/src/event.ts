/** A JSON value as stored in the outbox. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** What a service hands to `publish()`. */
export interface EventInput {
  /** Routing name, e.g. `orders.created`: letters, digits, `.`, `_`, `-`; at most 249 characters. */
  readonly topic: string;
  /** Ordering key: events with the same key are delivered in commit order. */
  readonly key?: string | null | undefined;
  /** Any JSON-serializable value (plain objects, arrays, strings, finite numbers, booleans, null, Dates). */
  readonly payload: unknown;
  /** String map carried to every transport, e.g. `traceparent`. */
  readonly headers?: Readonly<Record<string, string>> | undefined;
  /**
   * Tenant the event belongs to. Feeds and webhooks scoped to a tenant deliver only that tenant's
   * events; events without a tenant reach only unscoped readers.
   */
  readonly tenant?: string | null | undefined;
}

/**
 * A position in the outbox log: the commit sequence number of the event's transaction (given at
 * COMMIT, in commit order within a partition), then the event's row id. A position stands for
 * every event of a smaller `seq`, and those of commit `seq` whose id is at most `id`.
 */
export interface Position {
  readonly seq: string;
  readonly id: string;
}

/** An event as stored, and as every transport receives it. */
export interface OutboxEvent {
  /** ULID: the one id every transport carries and every inbox deduplicates on. */
  readonly eventId: string;
  readonly topic: string;
  readonly key: string | null;
  readonly partition: number;
  readonly payload: Json;
  readonly headers: Readonly<Record<string, string>>;
  readonly tenant: string | null;
  readonly createdAt: Date;
  /**
   * Where the event stands in the log. Its `seq` is given when its transaction commits, so the
   * events `publish()` returns carry `seq` '0' (not numbered yet); events read from the log carry
   * their commit's number.
   */
  readonly position: Position;
}

/**
 * Columns selected wherever events are read, in the order `rowToEvent` expects: `e` is the event,
 * `c` its row in `commits`.
 */
export const eventColumns =
  'e.id::text AS id, c.seq::text AS seq, e.event_id, e.topic, e.key, e.partition, e.payload::text AS payload, e.headers, e.tenant, ' +
  // Epoch milliseconds: a number is far cheaper for the client to decode than a timestamp text.
  '(extract(epoch FROM e.created_at) * 1000)::float8 AS created_ms';

/**
 * The FROM clause that reads events in commit order `(c.seq, e.id)` after the cursor `(afterSeq,
 * afterId)` (SQL expressions), for the commits `commitWhere` selects (`c.seq >= afterSeq` among its
 * conditions), with `eventWhere` on the events: each commit's events come from one bounded
 * range scan, at most `limit` of them, starting at the cursor inside the cursor's own commit (the
 * cursor's own event is the one row read and passed over; no `id + 1`, which overflows at the
 * largest id a client may send).
 * So a page of a transaction that published 100 000 events reads one page of rows, not the whole
 * transaction again, and the caller's `ORDER BY c.seq, e.id LIMIT limit` sorts at most what it
 * returns per commit. Use it with `eventColumns`. The commits' subquery is LATERAL, so `commitWhere`
 * may name what comes before it in the same FROM list.
 */
export function commitOrderFrom(s: string, o: { commitWhere: string; afterSeq: string; afterId: string; eventWhere: string; limit: string }): string {
  return `LATERAL (SELECT c.partition, c.seq, c.tx_id, c.first_id, c.last_id FROM ${s}.commits c WHERE ${o.commitWhere} ORDER BY c.seq) c
      CROSS JOIN LATERAL (
        SELECT e.* FROM ${s}.events e
        WHERE e.partition = c.partition AND e.tx_id = c.tx_id
          AND e.id BETWEEN CASE WHEN c.seq = ${o.afterSeq} THEN greatest(c.first_id, ${o.afterId}) ELSE c.first_id END AND c.last_id
          AND (c.seq <> ${o.afterSeq} OR e.id > ${o.afterId})
          ${o.eventWhere}
        ORDER BY e.id
        LIMIT ${o.limit}
      ) e`;
}

export interface EventRow {
  id: string;
  seq: string;
  event_id: string;
  topic: string;
  key: string | null;
  partition: number;
  /** The payload as JSON text: parsed only if someone reads `payload`. */
  payload: string;
  headers: Record<string, string>;
  tenant: string | null;
  created_ms: number;
}

const jsonText = Symbol.for('tidings.payloadJson');

/**
 * The event's payload as JSON text. Events read from the outbox keep the text the database sent,
 * so a transport that sends JSON (RabbitMQ, Kafka, webhooks) neither parses nor re-serialises it.
 */
export function payloadJson(event: OutboxEvent): string {
  return (event as { [jsonText]?: string })[jsonText] ?? JSON.stringify(event.payload);
}

export function rowToEvent(row: EventRow): OutboxEvent {
  return withJsonPayload(
    {
      eventId: row.event_id,
      topic: row.topic,
      key: row.key,
      partition: row.partition,
      headers: row.headers,
      tenant: row.tenant,
      createdAt: new Date(row.created_ms),
      position: { seq: row.seq, id: row.id },
    },
    row.payload,
  );
}

/**
 * An event whose payload is parsed from its JSON text on first read. Relays hand most payloads on
 * as text (`payloadJson`), so most are never parsed at all.
 */
class JsonPayloadEvent implements OutboxEvent {
  readonly eventId: string;
  readonly topic: string;
  readonly key: string | null;
  readonly partition: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly tenant: string | null;
  readonly createdAt: Date;
  readonly position: Position;
  declare readonly [jsonText]: string;
  #parsed: Json | undefined;

  constructor(fields: Omit<OutboxEvent, 'payload'>, text: string) {
    this.eventId = fields.eventId;
    this.topic = fields.topic;
    this.key = fields.key;
    this.partition = fields.partition;
    this.headers = fields.headers;
    this.tenant = fields.tenant;
    this.createdAt = fields.createdAt;
    this.position = fields.position;
    // Not enumerable: a copy made by spreading (`{ ...event, payload: redacted }`) must not carry
    // the original text along, or a transport would send the payload the copy replaced.
    Object.defineProperty(this, jsonText, { value: text, enumerable: false });
  }

  get payload(): Json {
    if (this.#parsed === undefined) this.#parsed = JSON.parse(this[jsonText]) as Json;
    return this.#parsed;
  }

  /** JSON.stringify and structured logging see the payload like any other field. */
  toJSON(): Omit<OutboxEvent, 'payload'> & { payload: Json } {
    const { eventId, topic, key, partition, payload, headers, tenant, createdAt, position } = this;
    return { eventId, topic, key, partition, payload, headers, tenant, createdAt, position };
  }
}

/** Completes an event with a payload that is parsed from `text` on first read. */
export function withJsonPayload(event: Omit<OutboxEvent, 'payload'>, text: string): OutboxEvent {
  return new JsonPayloadEvent(event, text);
}

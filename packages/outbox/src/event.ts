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

/** A position in the outbox log: the writing transaction's id, then the row id. */
export interface Position {
  readonly txId: string;
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
  readonly position: Position;
}

/** Columns selected wherever events are read, in the order `rowToEvent` expects. */
export const eventColumns =
  'e.id::text AS id, e.tx_id::text AS tx_id, e.event_id, e.topic, e.key, e.partition, e.payload, e.headers, e.tenant, e.created_at';

export interface EventRow {
  id: string;
  tx_id: string;
  event_id: string;
  topic: string;
  key: string | null;
  partition: number;
  payload: Json;
  headers: Record<string, string>;
  tenant: string | null;
  created_at: Date | string;
}

export function rowToEvent(row: EventRow): OutboxEvent {
  return {
    eventId: row.event_id,
    topic: row.topic,
    key: row.key,
    partition: row.partition,
    payload: row.payload,
    headers: row.headers,
    tenant: row.tenant,
    createdAt: row.created_at instanceof Date ? row.created_at : new Date(row.created_at),
    position: { txId: row.tx_id, id: row.id },
  };
}

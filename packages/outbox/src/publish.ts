import { newEventId } from './event-id.ts';
import { translateDriverError, translatingErrors } from './driver-errors.ts';
import { withJsonPayload, type EventInput, type OutboxEvent } from './event.ts';
import { toExecutor, type TransactionHandle } from './executor.ts';
import { defaults, notifyChannel, wholeOption, resolveSchema } from './options.ts';
import { keyHash } from './partition.ts';
import { quoteIdent } from './sql.ts';
import { activeTraceHeaders, instruments } from './telemetry.ts';
import { requireTransaction } from './transaction-check.ts';
import { validateEvent, type ValidEvent } from './validate.ts';

export interface PublishOptions {
  /** Schema the outbox was migrated into. Default `tidings`. */
  readonly schema?: string;
  /** Largest payload accepted, in bytes of JSON. Default 1 MiB. */
  readonly maxPayloadBytes?: number;
  /** Send a NOTIFY on commit so relays wake at once (they poll anyway). Default true. */
  readonly notify?: boolean;
}

/**
 * Writes events into the outbox inside the caller's transaction: they are relayed if and only if
 * that transaction commits. Every event is validated before anything is written; many events are
 * one multi-row insert. `trx` is the transaction you write the business data with: kysely, pg,
 * PGlite, or an ORM's (Drizzle, Prisma, TypeORM, MikroORM) or postgres.js's (see `TransactionHandle`).
 *
 * @example
 * await db.transaction().execute(async (trx) => {
 *   await trx.insertInto('orders').values(order).execute();
 *   await publish(trx, { topic: 'orders.created', key: order.id, payload: order });
 * });
 */
export async function publish(
  trx: TransactionHandle,
  events: EventInput | readonly EventInput[],
  options: PublishOptions = {},
): Promise<OutboxEvent[]> {
  const list: readonly EventInput[] = Array.isArray(events) ? events : [events as EventInput];
  const schema = resolveSchema(options.schema);
  const maxPayloadBytes = wholeOption('maxPayloadBytes', options.maxPayloadBytes, defaults.maxPayloadBytes);
  const traced = activeTraceHeaders();
  const valid = list.map((event, index) => withTrace(validateEvent(event, index, maxPayloadBytes), event, traced));
  const executor = toExecutor(trx, 'trx');
  await requireTransaction(trx, executor, 'publish()', `${quoteIdent(schema)}.events`, (error) => translateDriverError(error, schema));
  if (valid.length === 0) return [];

  const ids = valid.map(() => newEventId());
  const single = valid.length === 1;
  const column = <T>(value: (event: (typeof valid)[number], i: number) => T): T | T[] => (single ? value(valid[0]!, 0) : valid.map(value));
  const params: unknown[] = [
    single ? ids[0] : ids,
    column((e) => e.topic),
    column((e) => e.key),
    column((e, i) => keyHash(e.key ?? ids[i]!)),
    column((e) => e.payloadText),
    column((e) => e.headersText),
    column((e) => e.tenant),
  ];
  const notify = options.notify ?? true;
  if (notify) params.push(notifyChannel(schema));
  const text = insertStatement(schema, notify, single);
  const { rows } = await translatingErrors(schema, () => executor.query<InsertedRow>(text, params));
  instruments().published.add(valid.length);
  const byId = new Map(rows.map((row) => [row.event_id, row]));
  return valid.map((event, i) => {
    const row = byId.get(ids[i]!)!;
    return withJsonPayload(
      {
        eventId: ids[i]!,
        topic: event.topic,
        key: event.key,
        partition: row.partition,
        headers: JSON.parse(event.headersText) as Record<string, string>,
        tenant: event.tenant,
        createdAt: new Date(row.created_at),
        // Numbered when the transaction commits.
        position: { seq: '0', id: row.id },
      },
      event.payloadText,
    );
  });
}

/**
 * Carries the active trace into the event's headers (W3C `traceparent`, and `tracestate` when the
 * trace has one), so relays link their sends to it and consumers run their handlers in it. Headers
 * the caller set for the trace are kept as they are.
 */
function withTrace(valid: ValidEvent, input: EventInput, traced: ReturnType<typeof activeTraceHeaders>): ValidEvent {
  if (traced === undefined) return valid;
  const own = input.headers as Record<string, unknown> | undefined | null;
  if (own != null && (own.traceparent !== undefined || own.tracestate !== undefined)) return valid;
  const added = JSON.stringify(traced);
  const headersText = valid.headersText === '{}' ? added : `${valid.headersText.slice(0, -1)},${added.slice(1)}`;
  return { ...valid, headersText };
}

interface InsertedRow {
  id: string;
  event_id: string;
  partition: number;
  created_at: Date | string;
}

const statements = new Map<string, string>();

/**
 * One statement, without a CTE: the partition is the key hash modulo the partition count fixed at
 * migrate time, and the NOTIFY rides in RETURNING (PostgreSQL sends each distinct payload once per
 * transaction). One event is a plain VALUES insert, the cheapest statement to plan; many are one
 * insert from unnest(), kept in order by ORDER BY n.
 */
function insertStatement(schema: string, notify: boolean, single: boolean): string {
  const cacheKey = `${schema}:${notify}:${single}`;
  let text = statements.get(cacheKey);
  if (text) return text;
  const s = quoteIdent(schema);
  const partition = (hash: string) => `mod(${hash}, (SELECT st.partitions FROM ${s}.settings st))::smallint`;
  const rows = single
    ? `VALUES ($1::text, $2::text, $3::text, ${partition('$4::bigint')}, $5::json, $6::json, $7::text)`
    : `SELECT e.event_id, e.topic, e.key, ${partition('e.hash')}, e.payload, e.headers, e.tenant
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::json[], $6::json[], $7::text[])
      WITH ORDINALITY AS e(event_id, topic, key, hash, payload, headers, tenant, n)
    ORDER BY e.n`;
  text = `INSERT INTO ${s}.events (event_id, topic, key, partition, payload, headers, tenant)
    ${rows}
    RETURNING id::text AS id, event_id, partition, created_at${notify ? ', pg_notify($8::text, partition::text) IS NULL AS notified' : ''}`;
  statements.set(cacheKey, text);
  return text;
}

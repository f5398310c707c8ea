import { ulid } from 'ulid';
import { translatingErrors } from './driver-errors.ts';
import { NotInTransactionError } from './errors.ts';
import { withJsonPayload, type EventInput, type OutboxEvent } from './event.ts';
import { toExecutor } from './executor.ts';
import { defaults, notifyChannel, positiveInteger, resolveSchema } from './options.ts';
import { keyHash } from './partition.ts';
import { quoteIdent } from './sql.ts';
import { transactionVerdict } from './transaction-check.ts';
import { validateEvent } from './validate.ts';

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
 * one multi-row insert.
 *
 * @example
 * await db.transaction().execute(async (trx) => {
 *   await trx.insertInto('orders').values(order).execute();
 *   await publish(trx, { topic: 'orders.created', key: order.id, payload: order });
 * });
 */
export async function publish(
  trx: unknown,
  events: EventInput | readonly EventInput[],
  options: PublishOptions = {},
): Promise<OutboxEvent[]> {
  const list: readonly EventInput[] = Array.isArray(events) ? events : [events as EventInput];
  const schema = resolveSchema(options.schema);
  const maxPayloadBytes = positiveInteger('maxPayloadBytes', options.maxPayloadBytes, defaults.maxPayloadBytes);
  const valid = list.map((event, index) => validateEvent(event, index, maxPayloadBytes));
  rejectAutocommitHandles(trx);
  const executor = toExecutor(trx);
  if (valid.length === 0) return [];

  const ids = valid.map(() => ulid());
  const params: unknown[] = [
    ids,
    valid.map((e) => e.topic),
    valid.map((e) => e.key),
    valid.map((e, i) => keyHash(e.key ?? ids[i]!)),
    valid.map((e) => e.payloadText),
    valid.map((e) => e.headersText),
    valid.map((e) => e.tenant),
  ];
  const notify = options.notify ?? true;
  if (notify) params.push(notifyChannel(schema));
  const { rows } = await translatingErrors(schema, () => executor.query<InsertedRow>(insertStatement(schema, notify), params));
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
        position: { txId: row.tx_id, id: row.id },
      },
      event.payloadText,
    );
  });
}

interface InsertedRow {
  id: string;
  tx_id: string;
  event_id: string;
  partition: number;
  created_at: Date | string;
}

const statements = new Map<string, string>();

function insertStatement(schema: string, notify: boolean): string {
  const cacheKey = `${schema}:${notify}`;
  let text = statements.get(cacheKey);
  if (text) return text;
  const s = quoteIdent(schema);
  // One statement: the rows keep their order (ORDER BY n), the partition is the key hash modulo the
  // partition count fixed at migrate time, and PostgreSQL coalesces repeated NOTIFYs per transaction.
  text = `WITH ins AS (
    INSERT INTO ${s}.events (event_id, topic, key, partition, payload, headers, tenant)
    SELECT e.event_id, e.topic, e.key, mod(e.hash, st.partitions)::smallint, e.payload, e.headers, e.tenant
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::jsonb[], $6::jsonb[], $7::text[])
      WITH ORDINALITY AS e(event_id, topic, key, hash, payload, headers, tenant, n)
    CROSS JOIN ${s}.settings st
    ORDER BY e.n
    RETURNING id, tx_id, event_id, partition, created_at
  )${
    notify
      ? `, woke AS (
    SELECT count(pg_notify($8::text, d.partition::text)) FROM (SELECT DISTINCT partition FROM ins) d
  )
  SELECT ins.id::text AS id, ins.tx_id::text AS tx_id, ins.event_id, ins.partition, ins.created_at FROM ins, woke`
      : `
  SELECT ins.id::text AS id, ins.tx_id::text AS tx_id, ins.event_id, ins.partition, ins.created_at FROM ins`
  }`;
  statements.set(cacheKey, text);
  return text;
}

/**
 * A pool, a plain kysely instance or a pg client outside BEGIN would commit the events on their
 * own, apart from the business data: refuse before writing. Handles that cannot tell are trusted.
 */
function rejectAutocommitHandles(trx: unknown): void {
  if (transactionVerdict(trx) === 'outside') throw new NotInTransactionError('publish()');
}

import { withJsonPayload, type OutboxEvent } from '../event.ts';
import { quoteIdent } from '../sql.ts';
import type { ResolvedRelayOptions } from './options.ts';

interface ClaimedRow {
  id: string;
  partition: number;
  event_id: string;
  topic: string;
  key: string | null;
  /** The stored JSON text, sent on as it is. */
  payload: string;
  headers: Record<string, string>;
  tenant: string | null;
  event_created_at: Date;
  attempts: number;
}

const claimBatch = 100;

/**
 * Sends the dead letters that an operator asked to retry (`retryDeadLetters`). They are claimed
 * with a lease of their own, so any worker of the relay may take them, and one that dies mid-send
 * leaves them to another. Delivered ones are deleted; failed ones become dead letters again.
 */
export class DeadLetterRetrier {
  readonly #options: ResolvedRelayOptions;
  readonly #abort = new AbortController();
  #running: Promise<void> | undefined;
  #again = false;

  constructor(options: ResolvedRelayOptions) {
    this.#options = options;
  }

  wake(): void {
    if (this.#abort.signal.aborted) return;
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = this.#drain()
      .catch((error: unknown) => this.#options.onEvent({ type: 'error', error: error as Error }))
      .finally(() => {
        this.#running = undefined;
        if (this.#again) {
          this.#again = false;
          this.wake();
        }
      });
  }

  async stop(): Promise<void> {
    this.#abort.abort(new Error('relay stopping'));
    await this.#running;
  }

  async #drain(): Promise<void> {
    const { database, schema, name, workerId, leaseTtlMs, transport } = this.#options;
    const s = quoteIdent(schema);
    while (!this.#abort.signal.aborted) {
      const { rows } = await database.query<ClaimedRow>(
        `UPDATE ${s}.dead_letters d
         SET status = 'retrying', claimed_by = $2, claimed_until = now() + $3 * interval '1 millisecond'
         FROM (
           SELECT id FROM ${s}.dead_letters
           WHERE relay = $1 AND (status = 'retry' OR (status = 'retrying' AND claimed_until < now()))
           ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED
         ) c
         WHERE d.id = c.id
         RETURNING d.id::text AS id, d.partition, d.event_id, d.topic, d.key, d.payload::text AS payload, d.headers, d.tenant,
                   d.event_created_at, jsonb_array_length(d.errors) AS attempts`,
        [name, workerId, leaseTtlMs, claimBatch],
      );
      if (rows.length === 0) return;
      const events: OutboxEvent[] = rows.map((row) =>
        withJsonPayload(
          {
            eventId: row.event_id,
            topic: row.topic,
            key: row.key,
            partition: row.partition,
            headers: row.headers,
            tenant: row.tenant,
            createdAt: row.event_created_at,
            position: { seq: '0', id: '0' },
          },
          row.payload,
        ),
      );
      let outcomes;
      try {
        outcomes = await transport.send(events, this.#abort.signal);
      } catch (error) {
        outcomes = events.map(() => ({ status: 'retry' as const, error: error as Error }));
      }
      const done = rows.filter((_, i) => outcomes[i]?.status === 'delivered').map((row) => row.id);
      const failures = rows.flatMap((row, i) => {
        const outcome = outcomes[i];
        if (!outcome || outcome.status === 'delivered') return [];
        const message = outcome.error.message;
        return [{ id: row.id, error: { attempt: row.attempts + 1, at: new Date().toISOString(), message } }];
      });
      await database.query(`DELETE FROM ${s}.dead_letters WHERE id = ANY($1::bigint[]) AND claimed_by = $2`, [done, workerId]);
      await database.query(
        `UPDATE ${s}.dead_letters d
         SET status = 'dead', claimed_by = NULL, claimed_until = NULL, dead_at = now(), errors = d.errors || jsonb_build_array(f.error)
         FROM unnest($1::bigint[], $2::jsonb[]) AS f(id, error)
         WHERE d.id = f.id AND d.claimed_by = $3`,
        [failures.map((f) => f.id), failures.map((f) => JSON.stringify(f.error)), workerId],
      );
      if (failures.length > 0) return; // the destination is failing: leave the rest for the next heartbeat
    }
  }
}

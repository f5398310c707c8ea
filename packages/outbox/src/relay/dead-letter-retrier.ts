import { withJsonPayload, type OutboxEvent } from '../event.ts';
import { quoteIdent } from '../sql.ts';
import { unavailable } from '../transport.ts';
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
 * leaves them to another; the claim is renewed every heartbeat while the send lasts, so a slow
 * destination never lets a second worker send the same letters. A claim takes at most what the
 * transport accepts in one send. Delivered ones are deleted; failed ones become dead letters again.
 */
export class DeadLetterRetrier {
  readonly #options: ResolvedRelayOptions;
  readonly #abort = new AbortController();
  /** Says cheaply whether the relay may have letters to claim; without one, the claim itself looks. */
  readonly #waiting: ((relay: string) => Promise<boolean>) | undefined;
  #running: Promise<void> | undefined;
  #again = false;

  constructor(options: ResolvedRelayOptions, waiting?: (relay: string) => Promise<boolean>) {
    this.#options = options;
    this.#waiting = waiting;
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
    const { database, schema, name, workerId, leaseTtlMs, heartbeatIntervalMs, transport } = this.#options;
    const s = quoteIdent(schema);
    const batch = Math.min(claimBatch, transport.capabilities?.maxBatchSize ?? claimBatch);
    if (this.#waiting && !(await this.#waiting(name))) return;
    while (!this.#abort.signal.aborted) {
      const { rows } = await database.query<ClaimedRow>(
        `UPDATE ${s}.dead_letters d
         SET status = 'retrying', claimed_by = $2, claimed_until = now() + $3 * interval '1 millisecond'
         FROM (
           SELECT id FROM ${s}.dead_letters
           WHERE relay = $1 AND (status = 'retry' OR (status = 'retrying' AND claimed_until < now()))
             -- A dead letter that parks its key is sent by the partition's runner, before the parked events.
             AND NOT EXISTS (SELECT 1 FROM ${s}.parked_keys pk WHERE pk.relay = $1 AND pk.event_id = dead_letters.event_id)
           ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED
         ) c
         WHERE d.id = c.id
         RETURNING d.id::text AS id, d.partition, d.event_id, d.topic, d.key, d.payload::text AS payload, d.headers, d.tenant,
                   d.event_created_at, jsonb_array_length(d.errors) AS attempts`,
        [name, workerId, leaseTtlMs, batch],
      );
      if (rows.length === 0) return;
      const ids = rows.map((row) => row.id);
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
      const renewal = setInterval(() => {
        database
          .query(
            `UPDATE ${s}.dead_letters SET claimed_until = now() + $3 * interval '1 millisecond'
             WHERE id = ANY($1::bigint[]) AND claimed_by = $2 AND status = 'retrying'`,
            [ids, workerId, leaseTtlMs],
          )
          .catch((error: unknown) => this.#options.onEvent({ type: 'error', error: error as Error }));
      }, heartbeatIntervalMs);
      let outcomes;
      try {
        outcomes = await transport.send(events, this.#abort.signal);
      } catch (error) {
        outcomes = events.map(() => unavailable(error));
      } finally {
        clearInterval(renewal);
      }
      const done = rows.filter((_, i) => outcomes[i]?.status === 'delivered').map((row) => row.id);
      // An unavailable destination counts against no dead letter: those wait for the next look.
      const waiting = rows.filter((_, i) => outcomes[i]?.status === 'unavailable').map((row) => row.id);
      const failures = rows.flatMap((row, i) => {
        const outcome = outcomes[i];
        if (!outcome || outcome.status === 'delivered' || outcome.status === 'unavailable') return [];
        const message = outcome.error.message;
        return [{ id: row.id, error: { attempt: row.attempts + 1, at: new Date().toISOString(), message } }];
      });
      await database.query(`DELETE FROM ${s}.dead_letters WHERE id = ANY($1::bigint[]) AND claimed_by = $2`, [done, workerId]);
      await database.query(
        `UPDATE ${s}.dead_letters SET status = 'retry', claimed_by = NULL, claimed_until = NULL WHERE id = ANY($1::bigint[]) AND claimed_by = $2`,
        [waiting, workerId],
      );
      await database.query(
        `UPDATE ${s}.dead_letters d
         SET status = 'dead', claimed_by = NULL, claimed_until = NULL, dead_at = now(), errors = d.errors || jsonb_build_array(f.error)
         FROM unnest($1::bigint[], $2::jsonb[]) AS f(id, error)
         WHERE d.id = f.id AND d.claimed_by = $3`,
        [failures.map((f) => f.id), failures.map((f) => JSON.stringify(f.error)), workerId],
      );
      if (failures.length > 0 || waiting.length > 0) return; // the destination is failing: leave the rest for the next heartbeat
    }
  }
}

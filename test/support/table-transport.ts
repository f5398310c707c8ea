import type { OutboxEvent, SendOutcome, Transport } from '@tidings/outbox';
import { delivered, retry } from '@tidings/outbox';
import type pg from 'pg';

/** Decides the fate of one event; undefined delivers it. */
export type FaultRule = (event: OutboxEvent) => SendOutcome | undefined;

/**
 * A destination that several relay processes can share and a test can read back: a table in the
 * test's own schema. Rows are inserted in one statement per batch, acknowledged when it commits,
 * and `seq` records arrival order across all writers.
 */
export async function createSink(pool: pg.Pool, schema: string): Promise<void> {
  await pool.query(`CREATE TABLE IF NOT EXISTS "${schema}".received (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id text NOT NULL, topic text NOT NULL, key text, payload jsonb, worker text NOT NULL
  )`);
}

export function tableTransport(pool: pg.Pool, schema: string, options: { worker?: string; fault?: FaultRule } = {}): Transport {
  let closed = false;
  return {
    name: 'table',
    capabilities: { orderedPerKey: true, persistent: true },
    async send(batch, signal) {
      if (closed) throw new Error('table transport is closed');
      signal.throwIfAborted();
      // Ordered: the first event that fails holds back everything after it.
      const outcomes: SendOutcome[] = [];
      let firstFailure = batch.length;
      for (let i = 0; i < batch.length; i++) {
        const outcome = options.fault?.(batch[i]!);
        if (outcome) {
          firstFailure = i;
          outcomes.push(outcome);
          break;
        }
        outcomes.push(delivered);
      }
      const sent = batch.slice(0, firstFailure);
      if (sent.length > 0) {
        await pool.query(
          `INSERT INTO "${schema}".received (event_id, topic, key, payload, worker)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[])`,
          [
            sent.map((e) => e.eventId),
            sent.map((e) => e.topic),
            sent.map((e) => e.key),
            sent.map((e) => JSON.stringify(e.payload)),
            sent.map(() => options.worker ?? 'main'),
          ],
        );
      }
      const notSent = retry(new Error('not sent: an earlier event of the batch failed'));
      while (outcomes.length < batch.length) outcomes.push(notSent);
      return outcomes;
    },
    async close() {
      closed = true;
    },
  };
}

export interface ReceivedRow {
  seq: string;
  event_id: string;
  topic: string;
  key: string | null;
  payload: unknown;
  worker: string;
}

export async function received(pool: pg.Pool, schema: string): Promise<ReceivedRow[]> {
  const { rows } = await pool.query<ReceivedRow>(`SELECT seq, event_id, topic, key, payload, worker FROM "${schema}".received ORDER BY seq`);
  return rows;
}

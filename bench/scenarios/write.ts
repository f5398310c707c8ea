import { publish } from '@tidings/outbox';
import pg from 'pg';
import { benchOutbox, databaseUrl, median, medianRatio, orderPayload, sideBySide, topic, transactionRate } from '../support.ts';

export interface WritePlan {
  readonly transactions: number;
  readonly concurrency: number;
  readonly rounds: number;
}

export interface WriteResult {
  readonly overhead_ratio: number;
  readonly overhead_ratio_no_notify: number;
  readonly plain_tx_per_s: number;
  readonly event_tx_per_s: number;
  readonly event_no_notify_tx_per_s: number;
}

/**
 * `write.overhead_ratio`: a business transaction (insert one order row) with `publish()` of one
 * event in it, against the same transaction without the event; with and without NOTIFY. The
 * three variants take turns, round by round, over the same pool of connections.
 */
export async function writeOverhead(plan: WritePlan): Promise<WriteResult> {
  const outbox = await benchOutbox('write');
  const pool = new pg.Pool({ connectionString: databaseUrl, max: plan.concurrency });
  const orders = `"${outbox.schema}".orders`;
  try {
    await pool.query(`CREATE TABLE ${orders} (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer text NOT NULL, total integer NOT NULL,
      body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
    const run = (withEvent: boolean, notify: boolean) => (round: number) =>
      transactionRate(pool, plan.transactions, plan.concurrency, async (client, i) => {
        const order = orderPayload(round * plan.transactions + i);
        await client.query(`INSERT INTO ${orders} (customer, total, body) VALUES ($1, $2, $3)`, [order.customer, order.total, order]);
        if (withEvent) await publish(client, { topic, key: order.customer as string, payload: order }, { schema: outbox.schema, notify });
      });
    const samples = await sideBySide('write', plan.rounds, { plain: run(false, false), event: run(true, true), event_no_notify: run(true, false) });
    return {
      overhead_ratio: medianRatio(samples.plain, samples.event),
      overhead_ratio_no_notify: medianRatio(samples.plain, samples.event_no_notify),
      plain_tx_per_s: median(samples.plain),
      event_tx_per_s: median(samples.event),
      event_no_notify_tx_per_s: median(samples.event_no_notify),
    };
  } finally {
    await pool.end();
    await outbox.close();
  }
}

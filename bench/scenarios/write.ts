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
  /**
   * The same transaction with a second order row instead of the event: what any one more INSERT
   * costs, the floor for writing the event as a statement of its own.
   */
  readonly one_more_insert_ratio: number;
}

/**
 * `write.overhead_ratio`: a business transaction (insert one order row) with `publish()` of one
 * event in it, against the same transaction without the event; with and without NOTIFY, and with a
 * second order row in place of the event. The four variants take turns, round by round, over the same pool of connections.
 */
export async function writeOverhead(plan: WritePlan): Promise<WriteResult> {
  const outbox = await benchOutbox('write');
  const pool = new pg.Pool({ connectionString: databaseUrl, max: plan.concurrency });
  const orders = `"${outbox.schema}".orders`;
  try {
    await pool.query(`CREATE TABLE ${orders} (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer text NOT NULL, total integer NOT NULL,
      body jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`);
    const insertOrder = (client: pg.PoolClient, order: Record<string, unknown>) =>
      client.query(`INSERT INTO ${orders} (customer, total, body) VALUES ($1, $2, $3)`, [order.customer, order.total, order]);
    const run = (extra: 'none' | 'event' | 'event_no_notify' | 'order') => (round: number) =>
      transactionRate(pool, plan.transactions, plan.concurrency, async (client, i) => {
        const order = orderPayload(round * plan.transactions + i);
        await insertOrder(client, order);
        if (extra === 'order') await insertOrder(client, order);
        else if (extra !== 'none') {
          await publish(client, { topic, key: order.customer as string, payload: order }, { schema: outbox.schema, notify: extra === 'event' });
        }
      });
    const samples = await sideBySide('write', plan.rounds, {
      plain: run('none'),
      event: run('event'),
      event_no_notify: run('event_no_notify'),
      two_orders: run('order'),
    });
    return {
      overhead_ratio: medianRatio(samples.plain, samples.event),
      overhead_ratio_no_notify: medianRatio(samples.plain, samples.event_no_notify),
      plain_tx_per_s: median(samples.plain),
      event_tx_per_s: median(samples.event),
      event_no_notify_tx_per_s: median(samples.event_no_notify),
      one_more_insert_ratio: medianRatio(samples.plain, samples.two_orders),
    };
  } finally {
    await pool.end();
    await outbox.close();
  }
}

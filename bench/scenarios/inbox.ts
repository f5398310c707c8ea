import { inbox, migrateInbox } from '@tidings/inbox';
import pg from 'pg';
import { benchOutbox, databaseUrl, median, medianRatio, orderPayload, sideBySide, transactionRate } from '../support.ts';

export interface InboxPlan {
  readonly transactions: number;
  readonly concurrency: number;
  readonly rounds: number;
}

export interface InboxResult {
  readonly overhead_ratio: number;
  readonly plain_tx_per_s: number;
  readonly inbox_tx_per_s: number;
  /** The same transaction with a second invoice row instead of the inbox: what any one more INSERT costs. */
  readonly one_more_insert_ratio: number;
}

/**
 * `inbox.overhead_ratio`: a consumer's handler transaction (insert one invoice row for an order
 * event) through `inbox.handle()`, against the same transaction without the inbox. Every event id
 * is new, so each inbox transaction writes its dedup mark and runs the handler.
 */
export async function inboxOverhead(plan: InboxPlan): Promise<InboxResult> {
  const outbox = await benchOutbox('inbox');
  const pool = new pg.Pool({ connectionString: databaseUrl, max: plan.concurrency });
  const invoices = `"${outbox.schema}".invoices`;
  const billing = inbox({ consumer: 'billing', schema: outbox.schema });
  try {
    await migrateInbox(outbox.db, { schema: outbox.schema });
    await pool.query(`CREATE TABLE ${invoices} (
      id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, order_id bigint NOT NULL, total integer NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now())`);
    const apply = (client: pg.PoolClient, n: number) => {
      const order = orderPayload(n);
      return client.query(`INSERT INTO ${invoices} (order_id, total) VALUES ($1, $2)`, [order.order, order.total]);
    };
    const samples = await sideBySide('inbox', plan.rounds, {
      plain: (round) => transactionRate(pool, plan.transactions, plan.concurrency, (client, i) => apply(client, round * plan.transactions + i)),
      two_invoices: (round) =>
        transactionRate(pool, plan.transactions, plan.concurrency, async (client, i) => {
          await apply(client, round * plan.transactions + i);
          await apply(client, round * plan.transactions + i);
        }),
      inbox: (round) =>
        transactionRate(pool, plan.transactions, plan.concurrency, (client, i) => {
          const n = round * plan.transactions + i;
          return billing.handle(client, `bench-event-${n}`, (trx) => apply(trx, n));
        }),
    });
    return {
      overhead_ratio: medianRatio(samples.plain, samples.inbox),
      plain_tx_per_s: median(samples.plain),
      inbox_tx_per_s: median(samples.inbox),
      one_more_insert_ratio: medianRatio(samples.plain, samples.two_invoices),
    };
  } finally {
    await pool.end();
    await outbox.close();
  }
}

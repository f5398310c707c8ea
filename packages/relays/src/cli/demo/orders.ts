import { randomInt } from 'node:crypto';
import { publish, type Database } from '@tidings/outbox';

export interface OrderLedger {
  /** Event ids of orders whose transaction committed. */
  readonly committed: Set<string>;
  /** Event ids published in transactions that then rolled back. */
  readonly rolledBack: Set<string>;
}

/**
 * The example order service: each order is one transaction that inserts the order row and
 * publishes `orders.created` with it. About one in six transactions then fails a business rule
 * and rolls back, taking its event with it.
 */
export async function placeOrder(db: Database, schema: string, shop: string, n: number, ledger: OrderLedger): Promise<void> {
  const orderId = `order-${String(n).padStart(5, '0')}`;
  const customer = `customer-${randomInt(1, 9)}`;
  const total = randomInt(5, 500);
  let published: string | undefined;
  try {
    await db.transaction(async (trx) => {
      await trx.query(`INSERT INTO ${shop}.orders (id, customer, total) VALUES ($1, $2, $3)`, [orderId, customer, total]);
      const [event] = await publish(trx, { topic: 'orders.created', key: customer, payload: { orderId, customer, total } }, { schema });
      published = event!.eventId;
      if (randomInt(0, 6) === 0) throw new RollBack();
    });
    ledger.committed.add(published!);
  } catch (error) {
    if (!(error instanceof RollBack)) throw error;
    ledger.rolledBack.add(published!);
  }
}

class RollBack extends Error {
  override readonly name = 'RollBack';
  constructor() {
    super('payment declined');
  }
}

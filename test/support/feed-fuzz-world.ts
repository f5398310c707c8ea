import { encodePosition, publish } from '@tidings/outbox';
import { freshOutbox, inCommitOrder, inTransaction, type TestOutbox } from './db.ts';
import { startGuardedFeed, type GuardedFeed } from './feed-guard.ts';

/** A fresh outbox with events of several tenants and topics, served by feeds in a process of their own. */
export interface FuzzWorld {
  readonly outbox: TestOutbox;
  readonly feed: GuardedFeed;
  /** The cursors of the published events. */
  readonly cursors: string[];
  /** The tenants requests are scoped to (events of other tenants and of none exist too). */
  readonly tenants: string[];
  close(): Promise<void>;
}

export async function startFuzzWorld(label: string, options: { sse?: object; polling?: object } = {}): Promise<FuzzWorld> {
  const outbox = await freshOutbox(label);
  const cursors: string[] = [];
  for (const tenant of ['mallory', 'alice', 'bob', null]) {
    for (const topic of ['fuzz.a', 'fuzz.b', 'other.x']) {
      const published = await inTransaction(outbox.pool, (client) =>
        publish(client, [1, 2].map((n) => ({ topic, tenant, key: `k${n}`, payload: { tenant, n } })), { schema: outbox.schema }),
      );
      // A position is numbered at COMMIT: read the committed ones back.
      const events = await inCommitOrder(outbox.db, outbox.schema, published);
      cursors.push(...events.map((e) => encodePosition(e.position)));
    }
  }
  const feed = await startGuardedFeed(outbox.schema, options);
  return {
    outbox,
    feed,
    cursors,
    tenants: ['mallory', 'alice'],
    async close() {
      await feed.stop();
      await outbox.close();
    },
  };
}

/** `{ 200: 12, 400: 30, … }` */
export function countStatuses(statuses: readonly number[]): Record<number, number> {
  const counts: Record<number, number> = {};
  for (const status of statuses) counts[status] = (counts[status] ?? 0) + 1;
  return counts;
}

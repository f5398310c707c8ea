/**
 * The table transport (test/support/table-transport.ts): relay worker processes insert what they
 * send into a `received` table, reached through a fault proxy that plays the broker's network, while
 * their own database connections go through a second proxy. The run polls `received` in arrival
 * order and applies each row through the inbox.
 */
import pg from 'pg';
import { createSink } from '../../support/table-transport.ts';
import { services } from '../../support/env.ts';
import { processFleet } from '../../support/property-fleet.ts';
import type { DestinationSpec } from '../destination.ts';
import type { Arrival } from '../history.ts';
import { InboxConsumer, readEffects } from '../inbox-consumer.ts';
import { postgresProxy } from '../proxies.ts';

export const tableDestination: DestinationSpec = {
  name: 'table',
  ordered: true,
  ciRuns: 5,
  faults: ['crash-relay', 'pause-relay', 'join-relay', 'cut-broker', 'broker-outage', 'cut-relay-db', 'duplicate-delivery', 'consumer-crash'],
  async create(context) {
    const { schema } = context;
    const pool = new pg.Pool({ connectionString: services.postgres, max: 3 });
    pool.on('error', () => {});
    await createSink(pool, schema);
    const sink = await postgresProxy();
    const relayDb = await postgresProxy();
    const consumer = new InboxConsumer(pool, schema, context.swallower);
    // Rows of two workers inserting at once may commit out of seq order: rather than follow a
    // seq cursor (and skip a late commit), read the small table whole and hand over unseen rows.
    let arrivals: Arrival[] = [];
    const seen = new Set<string>();
    let polling = true;
    const poll = async (): Promise<void> => {
      while (polling) {
        try {
          const { rows } = await pool.query<{ seq: string; event_id: string; key: string | null; payload: unknown }>(
            `SELECT seq, event_id, key, payload FROM "${schema}".received ORDER BY seq`,
          );
          arrivals = rows.map((row) => ({ eventId: row.event_id, key: row.key }));
          for (const row of rows) {
            if (seen.has(row.seq)) continue;
            seen.add(row.seq);
            consumer.push({ eventId: row.event_id, key: row.key, payload: row.payload });
          }
        } catch {
          // the next poll tries again
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    };
    const poller = poll();
    return {
      fleet: processFleet({
        databaseUrl: relayDb.url,
        schema,
        relay: context.relay,
        leaseMs: context.leaseMs,
        transport: () => ({ kind: 'table', url: sink.url, schema }),
      }),
      cutBroker: async () => sink.proxy.cutAll(),
      brokerDown: async () => {
        sink.proxy.refuseNew(true);
        sink.proxy.cutAll();
      },
      brokerUp: async () => sink.proxy.refuseNew(false),
      cutRelayDatabase: async () => relayDb.proxy.cutAll(),
      duplicateDelivery: async (count) => consumer.duplicateNext(count),
      consumerCrash: async () => consumer.crashNext(),
      heal: async () => sink.proxy.refuseNew(false),
      observe: async () => ({ arrivals: [...arrivals], effects: await readEffects(pool, schema) }),
      async close() {
        polling = false;
        consumer.stop();
        await poller;
        await Promise.all([sink.proxy.close(), relayDb.proxy.close()]);
        await pool.end();
      },
    };
  },
};

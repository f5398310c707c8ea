/**
 * The in-memory reference transport: relays in the test process send to a MemoryBroker (with a
 * little latency, so sends are in flight when connections are cut); what arrives on the run's topic
 * is applied through the inbox by an InboxConsumer.
 */
import { MemoryBroker, memoryTransport } from '@tidings/relays/testing';
import pg from 'pg';
import { services } from '../../support/env.ts';
import type { DestinationSpec } from '../destination.ts';
import type { Arrival } from '../history.ts';
import { InboxConsumer, readEffects } from '../inbox-consumer.ts';
import { inProcessFleet } from '../in-process-fleet.ts';

export const memoryDestination: DestinationSpec = {
  name: 'memory',
  ordered: true,
  ciRuns: 25,
  faults: ['crash-relay', 'join-relay', 'cut-broker', 'broker-outage', 'duplicate-delivery', 'consumer-crash'],
  async create(context) {
    const broker = new MemoryBroker({ latencyMs: 5 });
    const pool = new pg.Pool({ connectionString: services.postgres, max: 3 });
    pool.on('error', () => {});
    const consumer = new InboxConsumer(pool, context.schema, context.swallower);
    const arrivals: Arrival[] = [];
    const unwatch = broker.watch(context.topic, (event) => {
      arrivals.push({ eventId: event.eventId, key: event.key });
      consumer.push({ eventId: event.eventId, key: event.key, payload: event.payload });
    });
    let outages = 0;
    return {
      fleet: inProcessFleet({ ...context, transport: () => memoryTransport({ broker }) }),
      cutBroker: async () => void broker.cutConnections(),
      // Alternately refusing sends and hanging them until the broker returns.
      brokerDown: async () => broker.takeDown(outages++ % 2 === 0 ? 'retry' : 'hang'),
      brokerUp: async () => broker.recover(),
      duplicateDelivery: async (count) => consumer.duplicateNext(count),
      consumerCrash: async () => consumer.crashNext(),
      heal: async () => broker.recover(),
      observe: async () => ({ arrivals: [...arrivals], effects: await readEffects(pool, context.schema) }),
      async close() {
        unwatch();
        consumer.stop();
        await pool.end();
      },
    };
  },
};

/**
 * One relay worker process for `scaling.workers`: relays the bench outbox to an in-memory broker
 * of its own and reports on stdout (JSON lines) how many partitions it holds, when it acquired a
 * lease and how many events it delivered, each with the wall-clock time. Stops when stdin closes.
 *
 * Usage: relay-worker.ts <database url> <schema> <relay name>
 */
import { createRelay, pgDatabase } from '@tidings/outbox';
import { memoryTransport, MemoryBroker } from '@tidings/relays/testing';
import { commands, tell } from '../child.ts';
import { epochMs } from '../support.ts';

const [url, schema, name, batchSize] = process.argv.slice(2);
const db = pgDatabase(url!, { max: 8 });
let delivered = 0;
const relay = createRelay({
  name: name!,
  database: db,
  schema,
  transport: memoryTransport({ broker: new MemoryBroker({ retain: 1 }) }),
  batchSize: Number(batchSize),
  startFrom: 'now',
  // Short leases, so that the workers share the partitions out within a second of starting.
  leaseTtlMs: 3_000,
  heartbeatIntervalMs: 200,
  onEvent(event) {
    if (event.type === 'delivered') tell({ type: 'delivered', total: (delivered += event.count), at: epochMs() });
    else if (event.type === 'lease-acquired') tell({ type: 'acquired', at: epochMs(), held: relay.status().partitions.length });
    else if (event.type === 'lease-released' || event.type === 'lease-lost') tell({ type: 'released', held: relay.status().partitions.length });
    else if (event.type === 'dead-letter' || event.type === 'unavailable' || event.type === 'error') tell({ type: 'warning', message: event.error.message });
  },
});
await relay.start();
tell({ type: 'started', held: relay.status().partitions.length });
await commands(async () => {});
await relay.stop();
await db.close();

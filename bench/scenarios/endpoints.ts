import http from 'node:http';
import v8 from 'node:v8';
import vm from 'node:vm';
import { publish } from '@tidings/outbox';
import { generateSecretKey, migrateWebhooks, secretKeyring, startWebhookDispatcher, webhookEndpoints } from '@tidings/relays/webhook';
import { countingStatements } from '../../test/support/counting-database.ts';
import { benchOutbox, progress, topic, waitFor, type BenchOutbox } from '../support.ts';

export interface EndpointsPlan {
  /** Endpoint counts, each measured in an outbox of its own. */
  readonly counts: readonly number[];
  /** Deliveries per count: events published × endpoints. */
  readonly deliveries: number;
  /** How long the statements of an idle dispatcher are counted. */
  readonly idleSeconds: number;
}

export interface EndpointsFigures {
  /** Deliveries per second, every endpoint receiving every event. */
  readonly deliveries_per_s: number;
  /** Statements the dispatcher sends while nothing is published, per second. */
  readonly idle_queries_per_s: number;
  /** Heap the dispatcher holds per running endpoint, in KiB. */
  readonly heap_kib_per_endpoint: number;
}

/**
 * `scaling.endpoints.<n>`: one webhook dispatcher in this process delivering to `n` endpoints of a
 * receiver on 127.0.0.1 (it answers 204 and counts), each endpoint subscribed to every event. First
 * idle: the statements it sends per second with nothing to deliver; then the rate at which it
 * delivers `deliveries / n` events to all `n` endpoints. Statements are counted on tidings' side
 * (every `query`, inside transactions too).
 */
export async function endpointScaling(plan: EndpointsPlan): Promise<Record<string, EndpointsFigures>> {
  const results: Record<string, EndpointsFigures> = {};
  for (const count of plan.counts) results[count] = await oneCount(count, plan);
  return results;
}

v8.setFlagsFromString('--expose-gc');
/** A full collection, so heap figures count what is held, not what waits to be collected. */
const gc = vm.runInNewContext('gc') as () => void;

async function oneCount(count: number, plan: EndpointsPlan): Promise<EndpointsFigures> {
  const outbox = await benchOutbox(`endpoints_${count}`, 10);
  const received = new Map<string, number>();
  let deliveries = 0;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      deliveries++;
      received.set(req.url!, (received.get(req.url!) ?? 0) + 1);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const counter = countingStatements(outbox.db);
  const keyring = secretKeyring({ current: generateSecretKey() });
  const addressPolicy = { allow: ['127.0.0.1/32'] };
  let dispatcher: Awaited<ReturnType<typeof startWebhookDispatcher>> | undefined;
  try {
    await migrateWebhooks(outbox.db, { schema: outbox.schema });
    const endpoints = webhookEndpoints({ schema: outbox.schema, addressPolicy, keyring });
    for (let i = 0; i < count; i++) {
      await endpoints.create(outbox.db, { url: `http://127.0.0.1:${port}/hooks/${i}`, topics: ['orders.*'] });
    }
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    dispatcher = await startWebhookDispatcher({ database: counter.db, schema: outbox.schema, addressPolicy, keyring });
    await waitFor(`${count} endpoints running`, () => dispatcher!.endpoints.length === count, 120_000);
    await settle(outbox, count);
    gc();
    const heap = (process.memoryUsage().heapUsed - heapBefore) / 1024 / count;

    counter.statements = 0;
    const idleStarted = performance.now();
    await new Promise((resolve) => setTimeout(resolve, plan.idleSeconds * 1000));
    const idle = counter.statements / ((performance.now() - idleStarted) / 1000);
    progress(`endpoints ${count}: idle ${Math.round(idle)} statements/s, ${heap.toFixed(1)} KiB heap per endpoint`);

    const events = Math.max(1, Math.round(plan.deliveries / count));
    const expected = events * count;
    const started = performance.now();
    await outbox.db.transaction((trx) =>
      publish(trx, Array.from({ length: events }, (_, i) => ({ topic, key: `customer-${i % 50}`, payload: { order: i } })), { schema: outbox.schema }),
    );
    await waitFor(`${expected} deliveries`, () => deliveries >= expected, 600_000);
    const rate = expected / ((performance.now() - started) / 1000);
    if (deliveries !== expected || received.size !== count) {
      throw new Error(`bench: ${deliveries} deliveries to ${received.size} endpoints, expected ${expected} to ${count}`);
    }
    progress(`endpoints ${count}: ${Math.round(rate)} deliveries/s`);
    return { deliveries_per_s: rate, idle_queries_per_s: idle, heap_kib_per_endpoint: heap };
  } finally {
    await dispatcher?.stop();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await outbox.close();
  }
}

/** Every relay has taken its partitions: registration and the first reads are behind us. */
async function settle(outbox: BenchOutbox, count: number): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const { rows: owned } = await outbox.db.query<{ relays: number }>(
      `SELECT count(DISTINCT relay)::int AS relays FROM "${outbox.schema}".relay_partitions WHERE owner IS NOT NULL AND lease_until > now()`,
    );
    if (owned[0]!.relays >= count) break;
    if (Date.now() > deadline) throw new Error(`bench: only ${owned[0]!.relays} of ${count} endpoint relays hold their partitions`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  await new Promise((resolve) => setTimeout(resolve, 2_000));
}

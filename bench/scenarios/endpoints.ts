import { randomBytes } from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import { pgDatabase, publish } from '@tidings/outbox';
import { generateSecretKey, migrateWebhooks, secretKeyring, startWebhookDispatcher, webhookEndpoints } from '@tidings/relays/webhook';
import { countingStatements } from '../../test/support/counting-database.ts';
import { startChild } from '../child.ts';
import { benchOutbox, databaseUrl, partitions, progress, topic, type BenchOutbox } from '../support.ts';

export interface EndpointsPlan {
  /** Endpoint counts, each measured in an outbox of its own. */
  readonly counts: readonly number[];
  /** Deliveries per count: events published × endpoints. */
  readonly deliveries: number;
  /** How long the statements of an idle dispatcher are counted. */
  readonly idleSeconds: number;
  /** How long every endpoint may take to run before the bench gives up. */
  readonly runningTimeoutMs: number;
  /** How long the deliveries may take before the bench gives up. */
  readonly deliveryTimeoutMs: number;
}

export interface EndpointsFigures {
  /** Deliveries per second, every endpoint receiving every event. */
  readonly deliveries_per_s: number;
  /** Statements the dispatcher sends while nothing is published, per second. */
  readonly idle_queries_per_s: number;
  /** Heap the dispatcher holds per running endpoint, in KiB. */
  readonly heap_kib_per_endpoint: number;
  /** Most server connections of the dispatcher's database seen at once (pg_stat_activity, by its application_name), from its start to its stop. */
  readonly server_connections: number;
  /** From starting the dispatcher until every endpoint's relay held all its partitions, in seconds. */
  readonly running_s: number;
  /** Creating one endpoint (`endpoints.create`), the median over the last 100 created, in ms. */
  readonly create_ms: number;
}

/**
 * `scaling.endpoints.<n>`: one webhook dispatcher in this process delivering to `n` endpoints of a
 * receiver process of its own on 127.0.0.1 (it answers 204 and counts), each endpoint subscribed
 * to every event. The dispatcher runs on a database of its own (pool of 10) whose connections are
 * told apart in pg_stat_activity by their application_name; the bench's own statements (creating
 * the endpoints, publishing, sampling) go through another. First the time until every endpoint
 * runs; then idle: the statements it sends per second with nothing to deliver (counted on
 * tidings' side, every `query`, inside transactions too); then the rate at which it delivers
 * `deliveries / n` events to all `n` endpoints.
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
  const outbox = await benchOutbox(`endpoints_${count}`, 4);
  const receiver = startChild('webhook-receiver');
  const app = `tidings_bench_dispatcher_${randomBytes(4).toString('hex')}`;
  const url = new URL(databaseUrl);
  url.searchParams.set('application_name', app);
  const database = pgDatabase(url.toString(), { max: 10 });
  const counter = countingStatements(database);
  const keyring = secretKeyring({ current: generateSecretKey() });
  const addressPolicy = { allow: ['127.0.0.1/32'] };
  let dispatcher: Awaited<ReturnType<typeof startWebhookDispatcher>> | undefined;
  let connections = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const { rows } = await outbox.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`, [app]);
      connections = Math.max(connections, rows[0]!.n);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  try {
    const { port } = (await receiver.next('listening')) as unknown as { port: number };
    await migrateWebhooks(outbox.db, { schema: outbox.schema });
    const endpoints = webhookEndpoints({ schema: outbox.schema, addressPolicy, keyring });
    const createMs: number[] = [];
    for (let i = 0; i < count; i++) {
      const started = performance.now();
      await endpoints.create(outbox.db, { url: `http://127.0.0.1:${port}/hooks/${i}`, topics: ['orders.*'] });
      createMs.push(performance.now() - started);
    }
    const create = median(createMs.slice(-100));
    progress(`endpoints ${count}: created, ${create.toFixed(1)} ms each (median of the last 100)`);
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const starting = performance.now();
    dispatcher = await startWebhookDispatcher({ database: counter.db, schema: outbox.schema, addressPolicy, keyring });
    await allRunning(outbox, count, plan.runningTimeoutMs);
    const running = (performance.now() - starting) / 1000;
    progress(`endpoints ${count}: all running after ${running.toFixed(1)} s`);
    await new Promise((resolve) => setTimeout(resolve, 2_000)); // the first reads are behind us
    gc();
    const heap = (process.memoryUsage().heapUsed - heapBefore) / 1024 / count;

    counter.statements = 0;
    const idleStarted = performance.now();
    await new Promise((resolve) => setTimeout(resolve, plan.idleSeconds * 1000));
    const idle = counter.statements / ((performance.now() - idleStarted) / 1000);
    progress(`endpoints ${count}: idle ${Math.round(idle)} statements/s, ${heap.toFixed(1)} KiB heap per endpoint`);

    const events = Math.max(1, Math.round(plan.deliveries / count));
    const expected = events * count;
    const reached = receiver.next('reached', plan.deliveryTimeoutMs);
    receiver.send({ type: 'expect', deliveries: expected });
    const started = performance.now();
    await outbox.db.transaction((trx) =>
      publish(trx, Array.from({ length: events }, (_, i) => ({ topic, key: `customer-${i % 50}`, payload: { order: i } })), { schema: outbox.schema }),
    );
    const { deliveries, paths } = (await reached) as unknown as { deliveries: number; paths: number };
    const rate = expected / ((performance.now() - started) / 1000);
    if (deliveries !== expected || paths !== count) {
      throw new Error(`bench: ${deliveries} deliveries to ${paths} endpoints, expected ${expected} to ${count}`);
    }
    progress(`endpoints ${count}: ${Math.round(rate)} deliveries/s, at most ${connections} server connections`);
    return { deliveries_per_s: rate, idle_queries_per_s: idle, heap_kib_per_endpoint: heap, server_connections: connections, running_s: running, create_ms: create };
  } finally {
    await dispatcher?.stop();
    sampling = false;
    await sampler;
    await receiver.stop();
    await database.close();
    await outbox.close();
  }
}

/** Every endpoint's relay holds every partition: registration, the first heartbeat and its leases are behind us. */
async function allRunning(outbox: BenchOutbox, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await outbox.db.query<{ held: number }>(
      `SELECT count(*)::int AS held FROM "${outbox.schema}".relay_partitions WHERE owner IS NOT NULL AND lease_until > now()`,
    );
    if (rows[0]!.held >= count * partitions) return;
    if (Date.now() > deadline) throw new Error(`bench: ${rows[0]!.held} of ${count * partitions} endpoint partitions held after ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

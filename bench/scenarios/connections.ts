import { randomBytes } from 'node:crypto';
import { createRelay, delivered, migrate, pgDatabase, publish, type Relay, type Transport } from '@tidings/outbox';
import { databaseUrl, format, progress, topic, waitFor } from '../support.ts';

export interface ConnectionsPlan {
  /** Relays started in one process, on one `pgDatabase`. */
  readonly relays: number;
  /** `max` of that `pgDatabase`. */
  readonly poolSize: number;
}

export interface ConnectionsResult {
  /** Most server connections of the process seen at once, while the relays started and delivered. */
  readonly server_connections: number;
  /** Of those, the connections that LISTEN. */
  readonly listening: number;
  /** From one commit until every relay had sent its event: the shared listener's fan-out. */
  readonly wake_all_ms: number;
}

/**
 * `connections`: `relays` relays on one `pgDatabase({ max: poolSize })`, counted in
 * pg_stat_activity by the application_name of this run while they start and while one event
 * reaches all of them. The target is the pool size plus one (the shared LISTEN connection). The
 * outbox has one partition and relays poll once a minute: the figure is about connections, and
 * 16 partitions would only add reads.
 */
export async function connectionScaling(plan: ConnectionsPlan): Promise<ConnectionsResult> {
  const schema = `bench_connections_${randomBytes(3).toString('hex')}`;
  const app = `tidings_bench_${randomBytes(4).toString('hex')}`;
  const url = new URL(databaseUrl);
  url.searchParams.set('application_name', app);
  const admin = pgDatabase(databaseUrl, { max: 2 });
  // The long heartbeat keeps LISTEN as the listener's last statement, which is how it is counted.
  const database = pgDatabase(url.toString(), { max: plan.poolSize, listenHeartbeatMs: 600_000 });
  const relays: Relay[] = [];
  const sent = new Map<string, number>();
  let highest = 0;
  let listening = 0;
  const sample = async (): Promise<void> => {
    const { rows } = await admin.query<{ n: number; listening: number }>(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE query ~* '^\\s*LISTEN')::int AS listening FROM pg_stat_activity WHERE application_name = $1`,
      [app],
    );
    highest = Math.max(highest, rows[0]!.n);
    listening = Math.max(listening, rows[0]!.listening);
  };
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      await sample();
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  })();
  try {
    await migrate(admin, { schema, partitions: 1 });
    for (let i = 0; i < plan.relays; i++) {
      const name = `bench-connections-${i}`;
      const transport: Transport = {
        name: 'count',
        capabilities: { orderedPerKey: true, persistent: false },
        async send(batch) {
          sent.set(name, (sent.get(name) ?? 0) + batch.length);
          return batch.map(() => delivered);
        },
        async close() {},
      };
      relays.push(createRelay({ name, database, schema, transport, pollIntervalMs: 60_000 }));
    }
    progress(`connections: starting ${format(plan.relays)} relays on pgDatabase({ max: ${plan.poolSize} })`);
    for (let i = 0; i < relays.length; i += 50) await Promise.all(relays.slice(i, i + 50).map((relay) => relay.start()));
    const committed = performance.now();
    await admin.transaction((trx) => publish(trx, { topic, key: 'k', payload: { n: 1 } }, { schema }));
    await waitFor('every relay sent the event', () => sent.size === plan.relays, 120_000);
    const wakeAllMs = performance.now() - committed;
    await sample();
    return { server_connections: highest, listening, wake_all_ms: Math.round(wakeAllMs) };
  } finally {
    sampling = false;
    await sampler;
    await Promise.all(relays.map((relay) => relay.stop({ graceMs: 1_000 })));
    await database.close();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.close();
  }
}

/** The report's rows of this scenario. */
export function connectionRows(result: ConnectionsResult, plan: ConnectionsPlan) {
  const relays = format(plan.relays);
  return [
    {
      figure: 'connections.server',
      value: result.server_connections,
      target: { atMost: plan.poolSize + 1 },
      note: `${relays} relays on pgDatabase({ max: ${plan.poolSize} }), most at once in pg_stat_activity`,
    },
    { figure: 'connections.listening', value: result.listening, target: { atMost: 1 }, note: 'of them LISTENing' },
    { figure: 'connections.wake_all_ms', value: result.wake_all_ms, unit: ' ms', note: `one commit until all ${relays} relays sent it` },
  ];
}

import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { logStart, migrate, pgDatabase, readPartition, type Database, type OutboxEvent } from '@tidings/outbox';

export const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const rabbitmqUrl = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const kafkaBrokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';

/** Partitions of every bench outbox: the default of `migrate()`. */
export const partitions = 16;
/** Topic of every bench event. */
export const topic = 'orders.created';

export interface BenchOutbox {
  readonly schema: string;
  readonly db: Database & { close(): Promise<void> };
  close(): Promise<void>;
}

/** A freshly migrated outbox in a schema of its own, dropped again by `close()`. */
export async function benchOutbox(label: string, poolSize = 12): Promise<BenchOutbox> {
  const schema = `bench_${label}_${randomBytes(3).toString('hex')}`;
  const db = pgDatabase(databaseUrl, { max: poolSize });
  await migrate(db, { schema, partitions });
  return {
    schema,
    db,
    async close() {
      await db.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await db.close();
    },
  };
}

/** A ~200-byte order, the payload of every bench event. */
export function orderPayload(n: number): Record<string, unknown> {
  return {
    order: n,
    customer: `customer-${n % 1000}`,
    total: n % 977,
    currency: 'EUR',
    lines: [{ sku: `SKU-${n % 50}`, qty: 1 + (n % 3) }],
    note: 'x'.repeat(64),
  };
}

/**
 * Writes a backlog straight into the log table (the drain is what is measured, not the writes):
 * keyed events shaped like `orderPayload()`, spread over the partitions by key, each with the
 * traceparent of a request of its own (as events published by many requests have). A VACUUM then
 * settles the table (hint bits, visibility map, statistics), so every variant reads the same state.
 */
export async function seedBacklog(outbox: BenchOutbox, count: number, chunk = 50_000): Promise<void> {
  const s = `"${outbox.schema}"`;
  for (let done = 0; done < count; done += chunk) {
    const n = Math.min(chunk, count - done);
    await outbox.db.query(
      `INSERT INTO ${s}.events (event_id, topic, key, partition, payload, headers)
       SELECT 'bench-' || ($1::bigint + g), $3, 'customer-' || (g % 1000), (g % 1000) % st.partitions,
              jsonb_build_object('order', $1::bigint + g, 'customer', 'customer-' || (g % 1000), 'total', g % 977,
                                 'currency', 'EUR', 'lines', jsonb_build_array(jsonb_build_object('sku', 'SKU-' || (g % 50), 'qty', 1 + g % 3)),
                                 'note', repeat('x', 64)),
              jsonb_build_object('traceparent', '00-' || md5('trace' || ($1::bigint + g)) || '-' || left(md5('span' || ($1::bigint + g)), 16) || '-01')
       FROM generate_series(1, $2::bigint) g, ${s}.settings st`,
      [done, n, topic],
    );
  }
  await outbox.db.query(`VACUUM (ANALYZE) ${s}.events`);
}

/** Every event of the log, per partition in log order, read with the bare log-read statement. */
export async function readAll(outbox: BenchOutbox, pageSize = 1000): Promise<OutboxEvent[][]> {
  return Promise.all(
    Array.from({ length: partitions }, async (_, partition) => {
      const events: OutboxEvent[] = [];
      let after = logStart;
      for (;;) {
        const page = await readPartition(outbox.db, outbox.schema, { partition, after, limit: pageSize });
        events.push(...page.events);
        after = page.scannedTo;
        if (page.events.length < pageSize) return events;
      }
    }),
  );
}

/** Wall-clock milliseconds with sub-millisecond resolution, comparable across processes on one machine. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Runs every variant once per round, rotating their order each round so that a slow spell of the
 * machine does not always land on the same one. Returns each variant's samples, in round order.
 */
export async function sideBySide<K extends string>(
  label: string,
  rounds: number,
  variants: Record<K, (round: number) => Promise<number>>,
): Promise<Record<K, number[]>> {
  const names = Object.keys(variants) as K[];
  const samples = Object.fromEntries(names.map((name) => [name, [] as number[]])) as Record<K, number[]>;
  for (let round = 0; round < rounds; round++) {
    const order = names.map((_, i) => names[(i + round) % names.length]!);
    for (const name of order) {
      const value = await variants[name](round);
      samples[name].push(value);
      progress(`${label} round ${round + 1}/${rounds} ${name}: ${format(value)}`);
    }
  }
  return samples;
}

/** The median of the per-round ratios `a[i] / b[i]`: each ratio comes from one round, side by side. */
export function medianRatio(a: readonly number[], b: readonly number[]): number {
  return median(a.map((value, i) => value / b[i]!));
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Resolves once `probe()` holds, checking every few milliseconds. */
export async function waitFor(what: string, probe: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`bench: timed out after ${timeoutMs} ms waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Progress goes to stderr, so stdout holds only the report. */
export function progress(line: string): void {
  process.stderr.write(`  ${line}\n`);
}

export function format(value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (Math.abs(value) >= 100) return Math.round(value).toLocaleString('en-US');
  if (Math.abs(value) >= 10) return value.toFixed(1);
  return value.toFixed(2);
}

/**
 * Transactions per second of `body` run `count` times over `concurrency` connections, each time
 * inside BEGIN … COMMIT on a pooled pg client, as a service's request handlers would.
 */
export async function transactionRate(
  pool: pg.Pool,
  count: number,
  concurrency: number,
  body: (client: pg.PoolClient, i: number) => Promise<unknown>,
): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      const client = await pool.connect();
      try {
        for (let i = next++; i < count; i = next++) {
          await client.query('BEGIN');
          await body(client, i);
          await client.query('COMMIT');
        }
      } finally {
        client.release();
      }
    }),
  );
  return count / ((performance.now() - started) / 1000);
}

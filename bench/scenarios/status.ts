import { status } from '@tidings/outbox';
import { benchOutbox, median, partitions, seedBacklog, sideBySide, type BenchOutbox } from '../support.ts';

export interface StatusPlan {
  /** Events in each of the two outboxes. */
  readonly events: number;
  /** Relays of the second outbox (the first has one). */
  readonly relays: number;
  /** How far behind the head of each partition every relay's cursor stands, in events. */
  readonly behind: number;
  readonly rounds: number;
}

export interface StatusResult {
  readonly one_relay_ms: number;
  readonly many_relays_ms: number;
  /** The time per relay with many relays. */
  readonly per_relay_ms: number;
}

/**
 * `status`: how long `status()` takes, side by side in two outboxes of the same size, one with a
 * single relay and one with `relays` relays. Every relay stands `behind` events behind the head of
 * every partition; every second relay of the large set has a topic filter of its own (as webhook
 * endpoints do), passed to `status()` in `filters`, so lag counting sees both kinds.
 */
export async function statusScaling(plan: StatusPlan): Promise<StatusResult> {
  const one = await benchOutbox('status_one');
  const many = await benchOutbox('status_many');
  try {
    for (const outbox of [one, many]) {
      await seedBacklog(outbox, plan.events);
    }
    await register(one, 1, plan.behind);
    await register(many, plan.relays, plan.behind);
    const filters = Object.fromEntries(
      Array.from({ length: plan.relays }, (_, r) => r)
        .filter((r) => r % 2 === 1)
        .map((r) => [`relay-${r}`, { topics: [`orders.created`, `endpoint-${r}.*`] }]),
    );
    const expected = (relays: number) => relays * partitions * plan.behind;
    const time = async (outbox: BenchOutbox, relays: number): Promise<number> => {
      const started = performance.now();
      const report = await status(outbox.db, { schema: outbox.schema, filters });
      const ms = performance.now() - started;
      const lag = report.relays.reduce((sum, relay) => sum + relay.lagEvents, 0);
      if (report.relays.length !== relays || lag !== expected(relays)) {
        throw new Error(`bench: status saw ${report.relays.length} relays ${lag} events behind, expected ${relays} relays ${expected(relays)} behind`);
      }
      return ms;
    };
    const samples = await sideBySide('status', plan.rounds, {
      one: () => time(one, 1),
      many: () => time(many, plan.relays),
    });
    const manyMs = median(samples.many);
    return { one_relay_ms: median(samples.one), many_relays_ms: manyMs, per_relay_ms: manyMs / plan.relays };
  } finally {
    await one.close();
    await many.close();
  }
}

/** `count` relays, each with its cursor `behind` events before the head of every partition. */
export async function register(outbox: BenchOutbox, count: number, behind: number): Promise<void> {
  const s = `"${outbox.schema}"`;
  await outbox.db.query(
    `WITH ranked AS (
       SELECT e.partition, c.seq, e.id, row_number() OVER (PARTITION BY e.partition ORDER BY c.seq DESC, e.id DESC) AS n
       FROM ${s}.events e
       JOIN ${s}.commits c ON c.partition = e.partition AND c.tx_id = e.tx_id AND e.id BETWEEN c.first_id AND c.last_id
     )
     INSERT INTO ${s}.relay_partitions (relay, partition, cursor_seq, cursor_id)
     SELECT 'relay-' || r, ranked.partition, ranked.seq, ranked.id
     FROM ranked, generate_series(0, $1::int - 1) r
     WHERE ranked.n = $2::int + 1`,
    [count, behind],
  );
  await outbox.db.query(`ANALYZE ${s}.relay_partitions`);
}

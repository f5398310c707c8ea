import { cleanup } from '@tidings/outbox';
import { benchOutbox, median, medianRatio, partitions, seedBacklog, sideBySide, type BenchOutbox } from '../support.ts';

export interface CleanupPlan {
  /** Events in each of the two outboxes. */
  readonly events: number;
  /** Relays of the second outbox (the first has one). */
  readonly relays: number;
  readonly rounds: number;
}

export interface CleanupResult {
  readonly one_relay_rows_per_s: number;
  readonly many_relays_rows_per_s: number;
  /** Many relays against one; retention should not care how many relays there are. */
  readonly relays_ratio: number;
}

/**
 * `cleanup`: retention deletes a slice of a large outbox per round, side by side in two outboxes of
 * the same size: one with a single relay, one with `relays` relays (all but one past the whole log,
 * the last one lagging at the end of the slice, so each round deletes the same slice in both).
 * Each round moves the lagging cursors one slice on and times `cleanup()`. Every event is old
 * enough (retention of 1 ms), so only the cursors decide.
 */
export async function cleanupScaling(plan: CleanupPlan): Promise<CleanupResult> {
  const one = await benchOutbox('cleanup_one');
  const many = await benchOutbox('cleanup_many');
  try {
    for (const outbox of [one, many]) await seedBacklog(outbox, plan.events);
    const bounds = [await sliceBounds(one, plan.rounds), await sliceBounds(many, plan.rounds)];
    await register(one, 1);
    await register(many, plan.relays);
    const step = async (outbox: BenchOutbox, slices: Bound[][], round: number): Promise<number> => {
      await moveLaggard(outbox, slices[round]!);
      const started = performance.now();
      const deleted = (await cleanup(outbox.db, { schema: outbox.schema, retentionMs: 1 })).events;
      const seconds = (performance.now() - started) / 1000;
      const expected = slices[round]!.reduce((sum, b) => sum + b.count, 0);
      if (deleted !== expected) throw new Error(`bench: cleanup deleted ${deleted} events in round ${round + 1}, expected ${expected}`);
      return deleted / seconds;
    };
    const samples = await sideBySide('cleanup', plan.rounds, {
      one: (round) => step(one, bounds[0]!, round),
      many: (round) => step(many, bounds[1]!, round),
    });
    return {
      one_relay_rows_per_s: median(samples.one),
      many_relays_rows_per_s: median(samples.many),
      relays_ratio: medianRatio(samples.many, samples.one),
    };
  } finally {
    await one.close();
    await many.close();
  }
}

interface Bound {
  readonly partition: number;
  readonly seq: string;
  readonly id: string;
  /** Events of the partition in this slice. */
  readonly count: number;
}

/** Per round, per partition: the last position of the round's slice of the log (equal slices). */
async function sliceBounds(outbox: BenchOutbox, rounds: number): Promise<Bound[][]> {
  const s = `"${outbox.schema}"`;
  const { rows } = await outbox.db.query<{ partition: number; slice: number; bound_seq: string; bound_id: string; count: number }>(
    `WITH numbered AS (
       SELECT e.partition, c.seq, e.id,
              ntile($1::int) OVER (PARTITION BY e.partition ORDER BY c.seq, e.id) - 1 AS slice
       FROM ${s}.events e
       JOIN ${s}.commits c ON c.partition = e.partition AND c.tx_id = e.tx_id AND e.id BETWEEN c.first_id AND c.last_id
     )
     SELECT DISTINCT ON (partition, slice) partition, slice, seq::text AS bound_seq, id::text AS bound_id,
            count(*) OVER (PARTITION BY partition, slice)::int AS count
     FROM numbered ORDER BY partition, slice, seq DESC, id DESC`,
    [rounds],
  );
  return Array.from({ length: rounds }, (_, round) => rows.filter((r) => r.slice === round).map((r) => ({ partition: r.partition, seq: r.bound_seq, id: r.bound_id, count: r.count })));
}

/** `count` relays with a cursor in every partition: relay 0 lags (at the start), the others are past the whole log. */
async function register(outbox: BenchOutbox, count: number): Promise<void> {
  await outbox.db.query(
    `INSERT INTO "${outbox.schema}".relay_partitions (relay, partition, cursor_seq, cursor_id)
     SELECT 'relay-' || r, p, CASE WHEN r = 0 THEN 0 ELSE 9223372036854775807 END, 0
     FROM generate_series(0, $1::int - 1) r, generate_series(0, $2::int - 1) p`,
    [count, partitions],
  );
  // As autovacuum would by then: the planner knows how many cursors there are.
  await outbox.db.query(`ANALYZE "${outbox.schema}".relay_partitions`);
}

async function moveLaggard(outbox: BenchOutbox, bounds: readonly Bound[]): Promise<void> {
  await outbox.db.query(
    `UPDATE "${outbox.schema}".relay_partitions rp SET cursor_seq = b.seq, cursor_id = b.id
     FROM unnest($1::int[], $2::bigint[], $3::bigint[]) AS b(partition, seq, id)
     WHERE rp.relay = 'relay-0' AND rp.partition = b.partition`,
    [bounds.map((b) => b.partition), bounds.map((b) => b.seq), bounds.map((b) => b.id)],
  );
}

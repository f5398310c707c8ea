/**
 * The service of the latency scenario, in a process of its own as a real service is: on a `run`
 * command it commits one event per transaction at the plan's rate over its own pool, and tells
 * each COMMIT's return on the machine's monotonic clock (`committed`, in groups), then `done`.
 */
import pg from 'pg';
import { commands, tell } from '../child.ts';
import { commitOne, machineMs, paced, type PacePlan } from '../load.ts';

await commands(async (command) => {
  const { url, schema, plan, concurrency } = command as { url: string; schema: string; plan: PacePlan; concurrency: number };
  const pool = new pg.Pool({ connectionString: url, max: concurrency });
  try {
    // Open the pool's connections before the clock starts.
    await Promise.all(Array.from({ length: concurrency }, () => pool.connect())).then((clients) => clients.forEach((c) => c.release()));
    let pending: Array<[string, number, number]> = [];
    const flush = setInterval(() => {
      if (pending.length === 0) return;
      tell({ type: 'committed', events: pending });
      pending = [];
    }, 20);
    const started = performance.now();
    try {
      const total = await paced(plan, async (i) => {
        const eventId = await commitOne(pool, schema, i);
        pending.push([eventId, machineMs(), i]);
      });
      const seconds = (performance.now() - started) / 1000;
      clearInterval(flush);
      if (pending.length > 0) tell({ type: 'committed', events: pending });
      tell({ type: 'done', total, seconds });
    } finally {
      clearInterval(flush);
    }
  } finally {
    await pool.end();
  }
});

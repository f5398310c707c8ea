/**
 * The service under test: business transactions that update an account row per key and publish one
 * event per key into the outbox, each recorded in the history as invoked and then ok, fail or
 * unknown. Transactions can commit, roll back, stay open and end later in any order (out-of-order
 * commits), run concurrently, publish without NOTIFY, lose their connection during COMMIT, or get
 * their transaction id early and commit late behind another's row lock on the same key.
 *
 * Each transaction bumps the version of its keys' account rows under the row lock and records it
 * with its events (and in their payloads, where it is known when publishing): a key's versions are
 * the commit order of its transactions, which the order checker compares every destination with.
 */
import { publish } from '@tidings/outbox';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { HistoryRecorder, TransactionOp } from './history.ts';
import { postgresProxy } from './proxies.ts';

export interface OpenTransaction {
  readonly op: TransactionOp;
  readonly client: pg.PoolClient;
}

export interface TransactionSpec {
  readonly keys: readonly string[];
  /** Publish with `notify: false`: the relays must find the events by polling. */
  readonly silent: boolean;
}

export class Business {
  readonly #pool: pg.Pool;
  readonly #schema: string;
  readonly #topic: string;
  readonly #recorder: HistoryRecorder;
  readonly open: OpenTransaction[] = [];

  constructor(options: { pool: pg.Pool; schema: string; topic: string; recorder: HistoryRecorder }) {
    this.#pool = options.pool;
    this.#schema = options.schema;
    this.#topic = options.topic;
    this.#recorder = options.recorder;
  }

  /**
   * The table the transactions update, so that two transactions on one key conflict (its balance
   * is the key's version), and an unrelated one a transaction can write first to get its id early.
   */
  static async migrate(pool: pg.Pool, schema: string): Promise<void> {
    await pool.query(`CREATE TABLE IF NOT EXISTS "${schema}".accounts (key text PRIMARY KEY, balance bigint NOT NULL)`);
    await pool.query(`CREATE TABLE IF NOT EXISTS "${schema}".audit (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text NOT NULL)`);
  }

  /** A transaction that writes its rows, publishes, and commits or rolls back. */
  async run(spec: TransactionSpec, end: 'commit' | 'rollback'): Promise<void> {
    const op = this.#recorder.invoke(end, spec.silent);
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      await this.#write(client, op, spec, true);
      await this.#end(client, op, end);
    } catch (error) {
      broken = error as Error;
      if (op.outcome === undefined) {
        await client.query('ROLLBACK').catch(() => {});
        this.#recorder.complete(op, 'fail', error);
      }
    } finally {
      client.release(broken);
    }
  }

  /** Several transactions at once: their commits interleave. */
  async concurrently(specs: readonly (TransactionSpec & { end: 'commit' | 'rollback' })[]): Promise<void> {
    await Promise.all(specs.map((spec) => this.run(spec, spec.end)));
  }

  /**
   * A transaction that publishes and stays open (it got its id on its first write) while later
   * transactions commit; `finish` ends it. It takes its account rows' locks (and versions) only
   * when it commits, so it blocks nobody while open, and commits after transactions with later ids.
   */
  async begin(spec: TransactionSpec): Promise<void> {
    const op = this.#recorder.invoke('held-open', spec.silent);
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      await this.#write(client, op, spec, false);
      this.open.push({ op, client });
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      this.#recorder.complete(op, 'fail', error);
      client.release(error as Error);
    }
  }

  /** Ends the `index`-th open transaction (modulo how many are open). */
  async finish(index: number, end: 'commit' | 'rollback'): Promise<void> {
    if (this.open.length === 0) return;
    const [{ op, client }] = this.open.splice(index % this.open.length, 1) as [OpenTransaction];
    let broken: Error | undefined;
    try {
      if (end === 'commit') {
        const keys = [...new Set(op.events.flatMap((e) => (e.key === null ? [] : [e.key])))];
        this.#recorder.versioned(op, await this.#bump(client, keys));
      }
      await this.#end(client, op, end);
    } catch (error) {
      broken = error as Error;
      if (op.outcome === undefined) {
        await client.query('ROLLBACK').catch(() => {});
        this.#recorder.complete(op, 'fail', error);
      }
    } finally {
      client.release(broken);
    }
  }

  /** Commits whatever is still open (before the run drains: what is open is not delivered yet). */
  async finishAll(): Promise<void> {
    while (this.open.length > 0) await this.finish(0, 'commit');
  }

  /**
   * A transaction whose connection is cut while COMMIT is on its way: through a fault proxy that
   * delays it by 40 ms, cut after 0-80 ms, so the server may never see COMMIT (rolled back), or
   * commit and never answer. The client sees `unknown` unless the answer made it back.
   */
  async commitCut(spec: TransactionSpec, cutAfterMs: number): Promise<void> {
    const op = this.#recorder.invoke('commit-cut', spec.silent);
    const { proxy, url } = await postgresProxy();
    const client = new pg.Client({ connectionString: url });
    client.on('error', () => {});
    try {
      await client.connect();
      await client.query('BEGIN');
      await this.#write(client, op, spec, true);
      proxy.setLatency(40);
      const commit = client.query('COMMIT');
      commit.catch(() => {});
      await sleep(cutAfterMs);
      proxy.cutAll();
      await commit;
      this.#recorder.complete(op, 'ok');
    } catch (error) {
      // Before COMMIT was sent, a failure is a plain rollback; after, nobody knows.
      this.#recorder.complete(op, op.events.length > 0 ? 'unknown' : 'fail', error);
    } finally {
      await client.end().catch(() => {});
      await proxy.close();
    }
  }

  /**
   * A transaction T1 that gets its id first with an unrelated write, then waits on T2's row lock on
   * the same keys; T2 publishes and commits; then T1 publishes and commits. T1 is older by id and
   * younger by commit: its events must come after T2's.
   */
  async earlyIdLateCommit(spec: TransactionSpec): Promise<void> {
    const late = this.#recorder.invoke('early-id-late-commit', spec.silent);
    const first = this.#recorder.invoke('commit', spec.silent);
    const [t1, t2] = [await this.#pool.connect(), await this.#pool.connect()];
    const broken: (Error | undefined)[] = [undefined, undefined];
    try {
      const { rows } = await t1.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      await t1.query('BEGIN');
      await t2.query('BEGIN');
      await t1.query(`INSERT INTO "${this.#schema}".audit (note) VALUES ('early id')`);
      await this.#write(t2, first, spec, true);
      const blocked = this.#write(t1, late, spec, true);
      blocked.catch(() => {});
      await this.#untilWaiting(rows[0]!.pid);
      await this.#end(t2, first, 'commit');
      await blocked;
      await this.#end(t1, late, 'commit');
    } catch (error) {
      for (const [i, [client, op]] of ([[t1, late], [t2, first]] as const).entries()) {
        if (op.outcome === undefined) {
          await client.query('ROLLBACK').catch(() => {});
          this.#recorder.complete(op, 'fail', error);
        }
        broken[i] = error as Error;
      }
    } finally {
      t1.release(broken[0]);
      t2.release(broken[1]);
    }
  }

  /** Until the backend waits on a lock, as PostgreSQL reports it (at most 10 s: the run goes on either way). */
  async #untilWaiting(pid: number): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      const { rows } = await this.#pool.query<{ waiting: boolean }>(
        `SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) AS waiting FROM pg_stat_activity WHERE pid = $1`,
        [pid],
      );
      if (rows[0]!.waiting) return;
      await sleep(5);
    }
  }

  /**
   * Bumps the keys' account rows under their locks (in a fixed order, so concurrent transactions
   * wait for each other instead of deadlocking) and returns each key's new version.
   */
  async #bump(client: pg.ClientBase, keys: readonly string[]): Promise<Map<string, number>> {
    const versions = new Map<string, number>();
    for (const key of [...new Set(keys)].sort()) {
      const { rows } = await client.query<{ balance: string }>(
        `INSERT INTO "${this.#schema}".accounts (key, balance) VALUES ($1, 1)
         ON CONFLICT (key) DO UPDATE SET balance = accounts.balance + 1
         RETURNING balance`,
        [key],
      );
      versions.set(key, Number(rows[0]!.balance));
    }
    return versions;
  }

  async #write(client: pg.ClientBase, op: TransactionOp, spec: TransactionSpec, touchAccounts: boolean): Promise<void> {
    const versions = touchAccounts ? await this.#bump(client, spec.keys) : new Map<string, number>();
    const events = await publish(
      client,
      spec.keys.map((key, i) => ({ topic: this.#topic, key, payload: { tx: op.tx, i, version: versions.get(key) ?? null } })),
      { schema: this.#schema, notify: !spec.silent },
    );
    this.#recorder.published(
      op,
      events.map((e) => ({ eventId: e.eventId, key: e.key, version: e.key === null ? undefined : versions.get(e.key), id: e.position.id })),
    );
  }

  async #end(client: pg.ClientBase, op: TransactionOp, end: 'commit' | 'rollback'): Promise<void> {
    if (end === 'rollback') {
      await client.query('ROLLBACK');
      this.#recorder.complete(op, 'fail');
      return;
    }
    try {
      await client.query('COMMIT');
    } catch (error) {
      this.#recorder.complete(op, 'unknown', error);
      throw error;
    }
    this.#recorder.complete(op, 'ok');
  }
}

/**
 * The service under test: business transactions that update an account row per key and publish one
 * event per key into the outbox, each recorded in the history as invoked and then ok, fail or
 * unknown. Transactions can commit, roll back, stay open and end later in any order (out-of-order
 * commits), run concurrently, publish without NOTIFY, or lose their connection during COMMIT.
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

  /** The table the transactions update, so that two transactions on one key conflict. */
  static async migrate(pool: pg.Pool, schema: string): Promise<void> {
    await pool.query(`CREATE TABLE IF NOT EXISTS "${schema}".accounts (key text PRIMARY KEY, balance bigint NOT NULL)`);
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
   * A transaction that publishes and stays open, holding the visibility watermark back while later
   * transactions commit; `finish` ends it. It writes no account row, so it blocks nobody.
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
      await this.#end(client, op, end);
    } catch (error) {
      broken = error as Error;
    } finally {
      client.release(broken);
    }
  }

  /** Commits whatever is still open (before the run drains: open transactions hold the watermark). */
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

  async #write(client: pg.ClientBase, op: TransactionOp, spec: TransactionSpec, touchAccounts: boolean): Promise<void> {
    if (touchAccounts) {
      // Rows in a fixed order, so concurrent transactions wait for each other instead of deadlocking.
      for (const key of [...new Set(spec.keys)].sort()) {
        await client.query(
          `INSERT INTO "${this.#schema}".accounts (key, balance) VALUES ($1, 1)
           ON CONFLICT (key) DO UPDATE SET balance = accounts.balance + 1`,
          [key],
        );
      }
    }
    const events = await publish(
      client,
      spec.keys.map((key, i) => ({ topic: this.#topic, key, payload: { tx: op.tx, i } })),
      { schema: this.#schema, notify: !spec.silent },
    );
    this.#recorder.published(
      op,
      events.map((e) => ({ eventId: e.eventId, key: e.key, txId: e.position.txId, id: e.position.id })),
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

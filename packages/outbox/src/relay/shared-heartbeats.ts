import type { Executor } from '../executor.ts';
import { quoteIdent } from '../sql.ts';
import type { Lease } from './store.ts';

/** Items asked for within one window, sent together when it ends. */
class Gathering<T, R> {
  readonly #windowMs: number;
  readonly #send: (items: readonly T[]) => Promise<R[]>;
  #items: T[] = [];
  #answers: Array<{ resolve(result: R): void; reject(error: unknown): void }> = [];
  #timer: NodeJS.Timeout | undefined;

  constructor(windowMs: number, send: (items: readonly T[]) => Promise<R[]>) {
    this.#windowMs = windowMs;
    this.#send = send;
  }

  add(item: T): Promise<R> {
    this.#timer ??= setTimeout(() => this.#flush(), this.#windowMs);
    return new Promise<R>((resolve, reject) => {
      this.#items.push(item);
      this.#answers.push({ resolve, reject });
    });
  }

  #flush(): void {
    const answers = this.#answers;
    const items = this.#items;
    this.#items = [];
    this.#answers = [];
    this.#timer = undefined;
    this.#send(items).then(
      (results) => answers.forEach((answer, i) => answer.resolve(results[i]!)),
      (error: unknown) => answers.forEach((answer) => answer.reject(error)),
    );
  }
}

interface Beat {
  readonly relay: string;
  readonly worker: string;
  readonly ttlMs: number;
}

interface Renewal extends Beat {
  readonly leases: readonly Lease[];
}

/**
 * @internal The periodic statements of many relays of one process (a webhook dispatcher's
 * endpoints, one worker each), gathered for `windowMs` and sent as one statement per kind: the
 * heartbeat of each worker, the renewal of its leases, and the look for dead letters an operator
 * asked to retry. N relays then cost a few statements per window instead of three each per
 * heartbeat. Each relay's heartbeat waits at most `windowMs` longer, far less than its lease.
 */
export class SharedHeartbeats {
  readonly #executor: Executor;
  readonly #s: string;
  readonly #beats: Gathering<Beat, number>;
  readonly #renewals: Gathering<Renewal, Set<number>>;
  readonly #retries: Gathering<string, boolean>;

  constructor(executor: Executor, schema: string, { windowMs = 100 }: { readonly windowMs?: number } = {}) {
    this.#executor = executor;
    this.#s = quoteIdent(schema);
    this.#beats = new Gathering(windowMs, (items) => this.#sendBeats(items));
    this.#renewals = new Gathering(windowMs, (items) => this.#sendRenewals(items));
    this.#retries = new Gathering(windowMs, (items) => this.#sendRetries(items));
  }

  /** `RelayStore.heartbeat` of `worker`: records it alive, returns how many workers of `relay` are. */
  heartbeat(relay: string, worker: string, ttlMs: number): Promise<number> {
    return this.#beats.add({ relay, worker, ttlMs });
  }

  /** `RelayStore.renew`: extends the leases `worker` still holds; returns the partitions kept. */
  renew(relay: string, worker: string, leases: readonly Lease[], ttlMs: number): Promise<Set<number>> {
    if (leases.length === 0) return Promise.resolve(new Set());
    return this.#renewals.add({ relay, worker, ttlMs, leases });
  }

  /** Whether `relay` may have dead letters to send again (asked to retry, or a claim that ran out). */
  retryWaiting(relay: string): Promise<boolean> {
    return this.#retries.add(relay);
  }

  async #sendBeats(items: readonly Beat[]): Promise<number[]> {
    const unique = [...new Map(items.map((b) => [`${b.relay}\u0000${b.worker}`, b])).values()];
    const { rows } = await this.#executor.query<{ relay: string; worker: string; others: number }>(
      `WITH input AS (SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[]) AS i(relay, worker, ttl)),
       me AS (
         INSERT INTO ${this.#s}.relay_workers (relay, worker, expires_at)
         SELECT relay, worker, now() + ttl * interval '1 millisecond' FROM input
         ON CONFLICT (relay, worker) DO UPDATE SET expires_at = EXCLUDED.expires_at
       ), gone AS (
         DELETE FROM ${this.#s}.relay_workers w USING input i
         WHERE w.relay = i.relay AND w.worker <> i.worker AND w.expires_at < now()
           AND NOT EXISTS (SELECT 1 FROM input j WHERE j.relay = w.relay AND j.worker = w.worker)
       )
       SELECT i.relay, i.worker,
              (SELECT count(*)::int FROM ${this.#s}.relay_workers w WHERE w.relay = i.relay AND w.worker <> i.worker AND w.expires_at >= now()) AS others
       FROM input i`,
      [unique.map((b) => b.relay), unique.map((b) => b.worker), unique.map((b) => b.ttlMs)],
    );
    const live = new Map(rows.map((row) => [`${row.relay}\u0000${row.worker}`, row.others + 1]));
    return items.map((b) => live.get(`${b.relay}\u0000${b.worker}`) ?? 1);
  }

  async #sendRenewals(items: readonly Renewal[]): Promise<Array<Set<number>>> {
    const leases = items.flatMap((r) => r.leases.map((lease) => ({ ...lease, relay: r.relay, worker: r.worker, ttlMs: r.ttlMs })));
    const { rows } = await this.#executor.query<{ relay: string; worker: string; partition: number }>(
      `UPDATE ${this.#s}.relay_partitions rp
       SET lease_until = now() + l.ttl * interval '1 millisecond'
       FROM unnest($1::text[], $2::text[], $3::smallint[], $4::bigint[], $5::bigint[]) AS l(relay, worker, partition, fence, ttl)
       WHERE rp.relay = l.relay AND rp.owner = l.worker AND rp.partition = l.partition AND rp.fence = l.fence
       RETURNING rp.relay, rp.owner AS worker, rp.partition`,
      [leases.map((l) => l.relay), leases.map((l) => l.worker), leases.map((l) => l.partition), leases.map((l) => l.fence), leases.map((l) => l.ttlMs)],
    );
    const kept = new Map<string, Set<number>>();
    for (const row of rows) {
      const key = `${row.relay}\u0000${row.worker}`;
      kept.set(key, (kept.get(key) ?? new Set()).add(row.partition));
    }
    return items.map((r) => new Set(kept.get(`${r.relay}\u0000${r.worker}`)));
  }

  async #sendRetries(items: readonly string[]): Promise<boolean[]> {
    const { rows } = await this.#executor.query<{ relay: string }>(
      `SELECT DISTINCT relay FROM ${this.#s}.dead_letters
       WHERE relay = ANY($1::text[]) AND (status = 'retry' OR (status = 'retrying' AND claimed_until < now()))`,
      [[...new Set(items)]],
    );
    const waiting = new Set(rows.map((row) => row.relay));
    return items.map((relay) => waiting.has(relay));
  }
}

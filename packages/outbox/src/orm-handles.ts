import type { Executor, QueryResult } from './executor.ts';
import type { TransactionVerdict } from './transaction-check.ts';

// The transactions of ORMs and of postgres.js, recognised by their shape: tidings imports none of
// these libraries, so an application pays only for the one it already uses. Each adapter finds
// the connection the library's transaction runs on and sends tidings' statements there, inside
// that transaction; none of them begins or commits anything.

/**
 * A postgres.js transaction: the `sql` that `sql.begin(sql => …)` (or `sql.savepoint`) hands to
 * its callback. The root `sql` (a pool) has the same shape but is refused: it is not inside a
 * transaction.
 */
export interface PostgresJsTransactionLike {
  (first: never, ...rest: never[]): unknown;
  unsafe(query: string, parameters?: never[]): PromiseLike<ArrayLike<unknown> & { count?: number | null }>;
}

/**
 * A Drizzle transaction (the `tx` of `db.transaction(tx => …)`) on the node-postgres or postgres.js
 * driver. A Drizzle database itself is refused: its statements run on pooled connections.
 */
export interface DrizzleTransactionLike {
  readonly _: { readonly session: object };
  transaction(...args: never[]): Promise<unknown>;
}

/** A TypeORM `QueryRunner` after `startTransaction()`. */
export interface TypeormQueryRunnerLike {
  readonly isTransactionActive: boolean;
  readonly isReleased: boolean;
  query(query: string, parameters: never[] | undefined, useStructuredResult: true): Promise<unknown>;
}

/**
 * A TypeORM `EntityManager` bound to a transaction: the one `dataSource.transaction(manager => …)`
 * or `manager.transaction(…)` passes, or `queryRunner.manager` after `startTransaction()`.
 */
export interface TypeormEntityManagerLike {
  readonly '@instanceof': symbol;
  readonly queryRunner?: TypeormQueryRunnerLike;
  transaction(...args: never[]): Promise<unknown>;
}

/** A MikroORM `EntityManager` inside `em.transactional(em => …)` (or after `em.begin()`). */
export interface MikroOrmEntityManagerLike {
  transactional(...args: never[]): Promise<unknown>;
  getTransactionContext(): unknown;
}

/** The client Prisma's interactive `$transaction(async tx => …)` passes to its callback. */
export interface PrismaTransactionLike {
  $queryRawUnsafe(query: string, ...values: never[]): PromiseLike<unknown>;
  $executeRawUnsafe(query: string, ...values: never[]): PromiseLike<number>;
}

/** The ORM and driver transaction handles recognised by shape, in addition to kysely, pg and PGlite. */
export type OrmTransactionHandle =
  | PostgresJsTransactionLike
  | DrizzleTransactionLike
  | TypeormQueryRunnerLike
  | TypeormEntityManagerLike
  | MikroOrmEntityManagerLike
  | PrismaTransactionLike;

/** What tidings makes of an ORM handle: where its statements go and what it says about its transaction. */
export interface OrmAdapter {
  /** The library, for messages. */
  readonly library: string;
  readonly executor: Executor;
  verdict(): TransactionVerdict;
}

/** How a driver connection found inside an ORM (a pg client, a postgres.js `sql`) is treated: as if it had been passed itself. */
export interface PlainHandles {
  executor(connection: unknown): Executor;
  verdict(connection: unknown): TransactionVerdict;
}

/** The adapter for `handle` when it is one of the ORM or postgres.js handles above, else undefined. */
export function ormAdapter(handle: unknown, inner: PlainHandles): OrmAdapter | undefined {
  if (isPostgresJs(handle)) return postgresJsAdapter(handle);
  if (typeof handle !== 'object' || handle === null) return undefined;
  const h = handle as Record<string | symbol, unknown>;
  if (typeof h.$queryRawUnsafe === 'function' && typeof h.$executeRawUnsafe === 'function') return prismaAdapter(handle as PrismaTransactionLike);
  if (h['@instanceof'] === Symbol.for('EntityManager')) return typeormManagerAdapter(handle as TypeormEntityManagerLike);
  // A TypeORM DataSource is a pool: its manager has no query runner, so it is refused the same way.
  if (h['@instanceof'] === Symbol.for('DataSource')) return typeormManagerAdapter(h.manager as TypeormEntityManagerLike);
  if (isTypeormQueryRunner(h)) return typeormRunnerAdapter(handle as TypeormQueryRunnerLike);
  if (typeof h.transactional === 'function' && typeof h.getTransactionContext === 'function') {
    return mikroOrmAdapter(handle as MikroOrmEntityManagerLike, inner);
  }
  const session = drizzleSession(h);
  if (session) {
    return { library: 'Drizzle', executor: inner.executor(session.client), verdict: () => inner.verdict(session.client) };
  }
  return undefined;
}

/** Whether `handle` is one of the ORM or postgres.js handles above (cheap: it looks at the shape only). */
export function isOrmHandle(handle: unknown): boolean {
  return ormAdapter(handle, { executor: () => noExecutor, verdict: () => 'ask-server' }) !== undefined;
}
const noExecutor: Executor = {
  query: () => Promise.reject(new Error('not used')),
};

// postgres.js ----------------------------------------------------------------------------------

interface PostgresJsResult extends ArrayLike<unknown> {
  readonly count?: number | null;
}
interface PostgresJsSql {
  unsafe(query: string, parameters?: unknown[]): PromiseLike<PostgresJsResult>;
  typed?(value: unknown, oid: number): unknown;
  savepoint?: unknown;
  begin?: unknown;
  reserve?: unknown;
  release?: unknown;
}

function isPostgresJs(handle: unknown): handle is PostgresJsSql {
  return typeof handle === 'function' && typeof (handle as Partial<PostgresJsSql>).unsafe === 'function';
}

function postgresJsAdapter(sql: PostgresJsSql): OrmAdapter {
  return {
    library: 'postgres.js',
    executor: {
      async query<R>(text: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
        const result = await sql.unsafe(text, params.map((value) => asUntyped(sql, value)));
        const rows = Array.from(result) as R[];
        return { rows, rowCount: result.count ?? rows.length };
      },
    },
    verdict() {
      // sql.begin() and sql.savepoint() hand out an `sql` with savepoint(); the root `sql` is a
      // pool (it has reserve()), and a reserved connection (release()) may or may not be in one.
      if (typeof sql.savepoint === 'function') return 'inside';
      if (typeof sql.reserve === 'function' && typeof sql.release !== 'function') return 'outside';
      return 'ask-server';
    },
  };
}

/** PostgreSQL's `unknown` type: a parameter declared with it is typed by the statement, as an unspecified one is. */
const unknownOid = 705;

/**
 * postgres.js serialises a parameter by the type PostgreSQL infers for it, so a string bound to
 * `$1::json` would be JSON-encoded a second time. tidings sends JSON as text it already encoded
 * (the publisher's exact bytes), so strings and string arrays go as `unknown`: sent as they are,
 * typed by the statement's casts, as node-postgres sends them.
 */
function asUntyped(sql: PostgresJsSql, value: unknown): unknown {
  if (typeof sql.typed !== 'function') return value;
  const text = typeof value === 'string' || (Array.isArray(value) && value.every((v) => typeof v === 'string' || v === null));
  return text ? sql.typed(value, unknownOid) : value;
}

// Prisma ---------------------------------------------------------------------------------------

/** Prisma marks the client of an interactive transaction with this scope (Prisma 7). */
const prismaScope = Symbol.for('prisma.client.transaction.scope_context');

/** Statements that answer with rows go through `$queryRawUnsafe`, the others through `$executeRawUnsafe` (which counts). */
const answersWithRows = /^\s*(select|with|values|show)\b|\breturning\b/i;

function prismaAdapter(client: PrismaTransactionLike): OrmAdapter {
  const raw = client as unknown as {
    $queryRawUnsafe(query: string, ...values: unknown[]): PromiseLike<unknown>;
    $executeRawUnsafe(query: string, ...values: unknown[]): PromiseLike<number>;
  };
  return {
    library: 'Prisma',
    executor: {
      async query<R>(text: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
        try {
          if (answersWithRows.test(text)) {
            const rows = (await raw.$queryRawUnsafe(text, ...params)) as R[];
            return { rows, rowCount: rows.length };
          }
          return { rows: [], rowCount: await raw.$executeRawUnsafe(text, ...params) };
        } catch (error) {
          throw withSqlState(error);
        }
      },
    },
    verdict() {
      const scope = (client as unknown as Record<symbol, unknown>)[prismaScope] as { kind?: unknown } | undefined;
      // A top-level PrismaClient runs each raw statement in its own transaction; the server tells.
      return scope?.kind === 'nested' ? 'inside' : 'ask-server';
    },
  };
}

/**
 * Prisma wraps what PostgreSQL said (code P2010, the SQLSTATE in `meta.driverAdapterError.cause`).
 * tidings reads SQLSTATEs (a missing table, a statement outside a transaction, an aborted
 * transaction), so the wrapper is unwrapped into an error that carries the SQLSTATE as `code`,
 * with Prisma's error as its cause.
 */
function withSqlState(error: unknown): unknown {
  const cause = (error as { meta?: { driverAdapterError?: { cause?: { originalCode?: unknown; originalMessage?: unknown } } } } | null)?.meta
    ?.driverAdapterError?.cause;
  if (typeof cause?.originalCode !== 'string') return error;
  const message = typeof cause.originalMessage === 'string' ? cause.originalMessage : (error as Error).message;
  return Object.assign(new Error(message, { cause: error }), { code: cause.originalCode });
}

// TypeORM --------------------------------------------------------------------------------------

function isTypeormQueryRunner(h: Record<string | symbol, unknown>): boolean {
  return typeof h.isTransactionActive === 'boolean' && typeof h.startTransaction === 'function' && typeof h.query === 'function';
}

interface TypeormStructuredResult {
  records?: unknown[];
  affected?: number | null;
}

function runnerExecutor(runner: TypeormQueryRunnerLike): Executor {
  const query = runner.query.bind(runner) as (text: string, params: unknown[], structured: true) => Promise<TypeormStructuredResult>;
  return {
    async query<R>(text: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      const result = await query(text, [...params], true);
      const rows = (result.records ?? []) as R[];
      return { rows, rowCount: result.affected ?? rows.length };
    },
  };
}

function typeormRunnerAdapter(runner: TypeormQueryRunnerLike): OrmAdapter {
  return {
    library: 'TypeORM',
    executor: runnerExecutor(runner),
    verdict: () => (runner.isTransactionActive && !runner.isReleased ? 'inside' : 'outside'),
  };
}

function typeormManagerAdapter(manager: TypeormEntityManagerLike): OrmAdapter {
  const runner = manager.queryRunner;
  if (runner) return typeormRunnerAdapter(runner);
  // A manager without a query runner (dataSource.manager) sends each statement to whichever pooled
  // connection is free: no transaction of the caller's can hold tidings' writes.
  const m = manager as unknown as { connection: { createQueryRunner(): TypeormQueryRunnerLike & { release(): Promise<void> } } };
  return {
    library: 'TypeORM',
    executor: {
      async query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
        const own = m.connection.createQueryRunner();
        try {
          return await runnerExecutor(own).query<R>(text, params);
        } finally {
          await own.release();
        }
      },
    },
    verdict: () => 'outside',
  };
}

// MikroORM -------------------------------------------------------------------------------------

/** A knex transaction, what MikroORM 6 keeps as an EntityManager's transaction context. */
interface KnexTransaction {
  isTransaction: true;
  isCompleted(): boolean;
  client: { acquireConnection(): Promise<unknown> };
}

function isKnexTransaction(value: unknown): value is KnexTransaction {
  const t = value as Partial<KnexTransaction> | null;
  return (
    typeof value === 'function' &&
    t?.isTransaction === true &&
    typeof t.isCompleted === 'function' &&
    typeof (t.client as Partial<KnexTransaction['client']> | undefined)?.acquireConnection === 'function'
  );
}

function mikroOrmAdapter(em: MikroOrmEntityManagerLike, inner: PlainHandles): OrmAdapter {
  const context = em.getTransactionContext();
  if (context === undefined || context === null) {
    // Outside a transaction: each statement runs in a transaction of its own, as autocommit would.
    const own = em as unknown as { transactional<R>(fn: (em: MikroOrmEntityManagerLike) => Promise<R>): Promise<R> };
    return {
      library: 'MikroORM',
      executor: {
        query: <R>(text: string, params?: readonly unknown[]) =>
          own.transactional((inside) => mikroOrmAdapter(inside, inner).executor.query<R>(text, params)),
      },
      verdict: () => 'outside',
    };
  }
  if (isKnexTransaction(context)) {
    // The knex transaction's client always hands out the one connection its BEGIN ran on.
    const connection = context.client.acquireConnection();
    return {
      library: 'MikroORM',
      executor: {
        async query<R>(text: string, params?: readonly unknown[]) {
          return inner.executor(await connection).query<R>(text, params);
        },
      },
      verdict: () => (context.isCompleted() ? 'outside' : 'inside'),
    };
  }
  // Any other context (a kysely transaction) is a handle tidings knows by itself.
  return { library: 'MikroORM', executor: inner.executor(context), verdict: () => inner.verdict(context) };
}

// Drizzle --------------------------------------------------------------------------------------

/** A Drizzle database or transaction keeps its driver session (with the driver's client) in `_`. */
function drizzleSession(h: Record<string | symbol, unknown>): { client: unknown } | undefined {
  if (typeof h.transaction !== 'function' || typeof h.select !== 'function') return undefined;
  const session = (h._ as { session?: unknown } | undefined)?.session as { client?: unknown } | undefined;
  if (typeof session !== 'object' || session === null || session.client === undefined) return undefined;
  return { client: session.client };
}

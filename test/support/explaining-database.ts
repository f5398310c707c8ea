import type { Database, Executor } from '@tidings/outbox';

/** A statement tidings ran, with the total cost the planner gave it (EXPLAIN, not executed). */
export interface CostedStatement {
  readonly text: string;
  readonly cost: number;
}

/**
 * `db` that first EXPLAINs every statement whose text `explains` (on the same connection, inside
 * the same transaction, with the same parameters, so the planner sees what the real statement
 * sees), records its total cost in `statements`, then runs it; everything else passes through.
 */
export function explainingStatements(db: Database, explains: (text: string) => boolean = () => true): { db: Database; statements: CostedStatement[] } {
  const statements: CostedStatement[] = [];
  const wrap = (executor: Executor): Executor => ({
    query: (async (text: string, params?: readonly unknown[]) => {
      if (explains(text)) {
        const { rows } = await executor.query<{ 'QUERY PLAN': Array<{ Plan: { 'Total Cost': number } }> }>(`EXPLAIN (FORMAT JSON) ${text}`, params);
        statements.push({ text, cost: rows[0]!['QUERY PLAN'][0]!.Plan['Total Cost'] });
      }
      return executor.query(text, params);
    }) as Executor['query'],
  });
  const explaining = new Proxy(db, {
    get(target, property, receiver) {
      if (property === 'query') return wrap(target).query;
      if (property === 'transaction') return <T>(fn: (trx: Executor) => Promise<T>) => target.transaction((trx) => fn(wrap(trx)));
      const value = Reflect.get(target, property, receiver) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { db: explaining, statements };
}

/** The server's `jit_above_cost`: a statement costed above it is JIT-compiled before it runs (when `jit` is on). */
export async function jitAboveCost(db: Executor): Promise<number> {
  const { rows } = await db.query<{ cost: number }>(`SELECT current_setting('jit_above_cost')::float8 AS cost`);
  return rows[0]!.cost;
}

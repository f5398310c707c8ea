import type { Database, Executor } from '@tidings/outbox';

/**
 * `db` with its statements counted (those inside its transactions too), or only those whose text
 * `counts`; everything else passes through. Reset `statements` to start a new count.
 */
export function countingStatements(db: Database, counts: (text: string) => boolean = () => true): { db: Database; statements: number } {
  const counter = { statements: 0, db };
  const wrap = (executor: Executor): Executor => ({
    query: ((text: string, params?: readonly unknown[]) => {
      if (counts(text)) counter.statements++;
      return executor.query(text, params);
    }) as Executor['query'],
  });
  counter.db = new Proxy(db, {
    get(target, property, receiver) {
      if (property === 'query') return wrap(target).query;
      if (property === 'transaction') return <T>(fn: (trx: Executor) => Promise<T>) => target.transaction((trx) => fn(wrap(trx)));
      const value = Reflect.get(target, property, receiver) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return counter;
}

import { readdir, readFile } from 'node:fs/promises';
import { ConfigError, TidingsError } from './errors.ts';
import type { Database, Executor } from './executor.ts';
import { quoteIdent, validateSchemaName } from './sql.ts';

export interface MigrationSet {
  /** Name recorded with each applied version, e.g. `outbox` or `inbox`. */
  readonly component: string;
  /** Folder of append-only `NNNN_name.sql` files. */
  readonly folder: URL;
  /** Values for `{{placeholders}}` besides `{{schema}}`. */
  readonly values?: Readonly<Record<string, string | number>>;
}

export interface MigrationResult {
  readonly component: string;
  readonly applied: readonly string[];
}

interface MigrationFile {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/**
 * Applies the migrations of `set` that the schema does not have yet. Each file runs in its own
 * transaction together with its version row, under an advisory lock on the schema, so concurrent
 * runs from several processes apply each file exactly once and a second run is a no-op.
 */
export async function applyMigrations(db: Database, schema: string, set: MigrationSet): Promise<MigrationResult> {
  validateSchemaName(schema);
  const files = await loadMigrations(set);
  const applied: string[] = [];
  const lockKey = `tidings:migrate:${schema}`;
  for (const file of files) {
    const ran = await db.transaction(async (trx) => {
      await trx.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [lockKey]);
      await ensureVersionTable(trx, schema);
      const done = await trx.query(
        `SELECT 1 FROM ${quoteIdent(schema)}.migrations WHERE component = $1 AND version = $2`,
        [set.component, file.version],
      );
      if (done.rowCount > 0) return false;
      const sql = fill(file.sql, { schema: quoteIdent(schema), ...set.values });
      await runScript(trx, sql, file, set.component);
      await trx.query(`INSERT INTO ${quoteIdent(schema)}.migrations (component, version, name) VALUES ($1, $2, $3)`, [
        set.component,
        file.version,
        file.name,
      ]);
      return true;
    });
    if (ran) applied.push(file.name);
  }
  return { component: set.component, applied };
}

async function ensureVersionTable(trx: Executor, schema: string): Promise<void> {
  await trx.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
  await trx.query(
    `CREATE TABLE IF NOT EXISTS ${quoteIdent(schema)}.migrations (
       component text NOT NULL,
       version integer NOT NULL,
       name text NOT NULL,
       applied_at timestamptz NOT NULL DEFAULT now(),
       PRIMARY KEY (component, version)
     )`,
  );
}

async function runScript(trx: Executor, sql: string, file: MigrationFile, component: string): Promise<void> {
  // Statements run one at a time so every client (including PGlite's extended protocol) accepts them.
  for (const statement of splitStatements(sql)) {
    try {
      await trx.query(statement);
    } catch (error) {
      throw new TidingsError(`${component} migration ${file.name} failed: ${(error as Error).message}`, { cause: error });
    }
  }
}

async function loadMigrations(set: MigrationSet): Promise<MigrationFile[]> {
  const names = (await readdir(set.folder)).filter((name) => name.endsWith('.sql')).sort();
  const files: MigrationFile[] = [];
  for (const name of names) {
    const match = /^(\d+)_[\w-]+\.sql$/.exec(name);
    if (!match) throw new ConfigError('migrations', `file ${name} in ${set.folder.pathname} is not named NNNN_name.sql`);
    files.push({ version: Number(match[1]), name, sql: await readFile(new URL(name, set.folder), 'utf8') });
  }
  return files;
}

function fill(sql: string, values: Record<string, string | number>): string {
  return sql.replace(/\{\{(\w+)\}\}/g, (whole, name: string) => {
    const value = values[name];
    if (value === undefined) throw new ConfigError('migrations', `no value for placeholder ${whole}`);
    return String(value);
  });
}

/**
 * Splits on semicolons at the end of a line, outside comments and outside dollar-quoted bodies
 * (`$$ ... $$` of a function); our migration files keep to that.
 */
export function splitStatements(sql: string): string[] {
  const lines = sql.split('\n').filter((line) => !line.trimStart().startsWith('--'));
  const statements: string[] = [];
  let current: string[] = [];
  let inBody = false;
  for (const line of lines) {
    current.push(line);
    if ((line.match(/\$\$/g)?.length ?? 0) % 2 === 1) inBody = !inBody;
    if (!inBody && /;\s*$/.test(line)) {
      statements.push(current.join('\n').replace(/;\s*$/, ''));
      current = [];
    }
  }
  statements.push(current.join('\n'));
  return statements.map((statement) => statement.trim()).filter((statement) => statement.length > 0);
}

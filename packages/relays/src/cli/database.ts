import { mkdir } from 'node:fs/promises';
import { pgDatabase, pgliteDatabase, type Database } from '@tidings/outbox';

export interface OpenDatabase {
  readonly db: Database;
  /** Where it is, for messages: the URL without its password, or the embedded data folder. */
  readonly where: string;
  readonly embedded: boolean;
  close(): Promise<void>;
}

/** The embedded default's data folder, when neither the config nor DATABASE_URL names a server. */
export const defaultDataDir = '.tidings/pglite';

/**
 * Opens PostgreSQL when a URL is given (config or DATABASE_URL), else the embedded PGlite in a
 * folder of the current directory, so that `tidings` works before any server is installed.
 */
export async function openDatabase(url: string | undefined, dataDir = defaultDataDir): Promise<OpenDatabase> {
  if (url) {
    const db = pgDatabase(url);
    return { db, where: url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@'), embedded: false, close: () => db.close() };
  }
  const { PGlite } = await import('@electric-sql/pglite');
  if (dataDir !== 'memory://') await mkdir(dataDir, { recursive: true });
  const pglite = await PGlite.create(dataDir);
  return { db: pgliteDatabase(pglite), where: `embedded PGlite (${dataDir})`, embedded: true, close: () => pglite.close() };
}

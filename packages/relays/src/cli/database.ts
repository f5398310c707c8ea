import { pgDatabase, pgliteDatabase, type Database, type PgDatabaseOptions } from '@tidings/outbox';
import { maskPassword } from '../redact.ts';
import { importPackage } from '../shared/optional-package.ts';
import type { SecretKeyring } from '../webhook/index.ts';
import { preparePrivateFolder, tightenPrivateFolder } from './embedded-folder.ts';
import { cliKeyring } from './keyring.ts';
import { UsageError } from './usage-error.ts';

export interface OpenDatabase {
  readonly db: Database;
  /** Where it is, for messages: the URL without its password, or the embedded data folder. */
  readonly where: string;
  readonly embedded: boolean;
  /** The embedded database's private folder (`.tidings`), when it is one on disk. */
  readonly folder: string | undefined;
  /** The keys for webhook secrets (see `cliKeyring`), read when a command needs them. */
  keyring(): Promise<SecretKeyring | undefined>;
  close(): Promise<void>;
}

/** The embedded default's data folder, when neither the config nor DATABASE_URL names a server. */
export const defaultDataDir = '.tidings/pglite';

/**
 * Opens PostgreSQL when a URL is given (config or DATABASE_URL), else the embedded PGlite in a
 * folder of the current directory, so that `tidings` works before any server is installed. The
 * embedded folder is made private to its owner (see `preparePrivateFolder`); `warn` hears of a
 * folder that had to be tightened. `pool` (the config file's key) sets up the PostgreSQL connections;
 * the embedded database has none to set up, so it refuses one.
 */
export async function openDatabase(
  url: string | undefined,
  dataDir = defaultDataDir,
  warn: (message: string) => void = (message) => console.error(`tidings: warning: ${message}`),
  pool?: PgDatabaseOptions,
): Promise<OpenDatabase> {
  if (url) {
    const db = pgDatabase(url, pool);
    return { db, where: maskPassword(url), embedded: false, folder: undefined, keyring: () => cliKeyring(undefined), close: () => db.close() };
  }
  if (pool !== undefined) {
    throw new UsageError('the config file sets "pool", which is for PostgreSQL connections, but no database URL is given: set "database" (or DATABASE_URL, or --database), or remove "pool" to use the embedded database');
  }
  const { PGlite } = await importPackage<typeof import('@electric-sql/pglite')>(
    '@electric-sql/pglite',
    'the embedded database (used without --database, a config "database" or DATABASE_URL)',
  );
  const folder = dataDir === 'memory://' ? undefined : await preparePrivateFolder(dataDir, warn);
  const pglite = await PGlite.create(dataDir);
  if (folder) await tightenPrivateFolder(folder);
  const close = async (): Promise<void> => {
    await pglite.close();
    if (folder) await tightenPrivateFolder(folder);
  };
  return { db: pgliteDatabase(pglite), where: `embedded PGlite (${dataDir})`, embedded: true, folder, keyring: () => cliKeyring(folder), close };
}

import { TidingsError, type Executor } from '@tidings/outbox';
import { resolveSchema, toExecutor } from '@tidings/outbox/internal';
import { translateError, webhookTables } from './schema.ts';
import { SecretDecryptionError } from './secret-errors.ts';
import { requireKeyring, type SecretKeyring } from './secret-keyring.ts';

/** A secret row as read from `webhook_secrets`: sealed, or plaintext when written before encryption. */
export interface StoredSecret {
  readonly keyId: string | null;
  readonly nonce: string | null;
  readonly ciphertext: string | null;
  /** Only rows written before migration 0002 and not yet encrypted have it. */
  readonly plaintext: string | null;
}

/** The columns of {@link StoredSecret}, as a json object for aggregates: `w` is the secrets table's alias. */
export const storedSecretJson = `'keyId', w.key_id, 'nonce', w.nonce, 'ciphertext', w.ciphertext, 'plaintext', w.secret`;

/** The plaintext of a stored secret. */
export function openStoredSecret(keyring: SecretKeyring, endpointId: string, stored: StoredSecret): string {
  if (stored.plaintext !== null) return stored.plaintext;
  if (stored.keyId === null || stored.nonce === null || stored.ciphertext === null) {
    throw new SecretDecryptionError(endpointId, String(stored.keyId), 'malformed', keyring.keyIds);
  }
  return keyring.open(endpointId, { keyId: stored.keyId, nonce: stored.nonce, ciphertext: stored.ciphertext });
}

/** What a re-encryption pass did. */
export interface SecretKeyRotation {
  /** The key every secret is now encrypted under. */
  readonly keyId: string;
  /** Secrets that were in plaintext and are now encrypted. */
  readonly encrypted: number;
  /** Secrets moved from an old key to the current one. */
  readonly reencrypted: number;
}

export interface RotateSecretKeyOptions {
  /** Default `tidings`. */
  readonly schema?: string;
  /**
   * The current key and the old ones still in use. Default: `TIDINGS_SECRET_KEY` and
   * `TIDINGS_SECRET_KEY_OLD` from the environment.
   */
  readonly keyring?: SecretKeyring;
}

const batchSize = 200;

/**
 * Re-encrypts every stored webhook secret under the keyring's current key, and encrypts any
 * still in plaintext. Secrets under a key the keyring does not hold are refused before anything
 * is changed. Each row is rewritten only if it has not changed meanwhile, so running it from
 * several processes, or again, is safe; the database receives ciphertext only.
 *
 * Rotating the key: generate a new one, start every process with `TIDINGS_SECRET_KEY` = the new
 * key and `TIDINGS_SECRET_KEY_OLD` = the previous one, run this (or `tidings endpoints
 * rotate-key`), then drop `TIDINGS_SECRET_KEY_OLD`.
 *
 * @example
 * const { reencrypted } = await rotateWebhookSecretKey(db, { keyring: secretKeyring({ current: newKey, old: [oldKey] }) });
 */
export async function rotateWebhookSecretKey(db: unknown, options: RotateSecretKeyOptions = {}): Promise<SecretKeyRotation> {
  const schema = resolveSchema(options.schema);
  const keyring = requireKeyring(options.keyring, 're-encrypt webhook signing secrets');
  const executor = toExecutor(db);
  try {
    return await reseal(executor, schema, keyring);
  } catch (error) {
    throw translateError(error, schema);
  }
}

/** Encrypts the plaintext secrets left by an older version; returns how many. */
export async function sealPlaintextSecrets(db: Executor, schema: string, keyring: SecretKeyring): Promise<number> {
  return (await reseal(db, schema, keyring, true)).encrypted;
}

/** How many secrets are still stored in plaintext. */
export async function countPlaintextSecrets(db: Executor, schema: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${webhookTables(schema).secrets} WHERE secret IS NOT NULL`);
  return rows[0]!.n;
}

async function reseal(db: Executor, schema: string, keyring: SecretKeyring, plaintextOnly = false): Promise<SecretKeyRotation> {
  const { secrets } = webhookTables(schema);
  const current = keyring.currentKeyId;
  if (!plaintextOnly) {
    const { rows } = await db.query<{ key_id: string; n: number }>(
      `SELECT key_id, count(*)::int AS n FROM ${secrets} WHERE key_id IS NOT NULL AND key_id <> $1 GROUP BY key_id ORDER BY key_id`,
      [current],
    );
    const unknown = rows.filter((row) => !keyring.has(row.key_id));
    if (unknown.length > 0) {
      const first = (await db.query<{ endpoint_id: string }>(`SELECT endpoint_id FROM ${secrets} WHERE key_id = $1 LIMIT 1`, [unknown[0]!.key_id])).rows[0];
      throw new SecretDecryptionError(first?.endpoint_id ?? '?', unknown.map((row) => `${row.key_id} (${row.n} secrets)`).join(', '), 'unknown-key', keyring.keyIds);
    }
  }
  let encrypted = 0;
  let reencrypted = 0;
  const which = plaintextOnly ? 'secret IS NOT NULL' : '(secret IS NOT NULL OR key_id <> $1)';
  for (;;) {
    const { rows } = await db.query<{ endpoint_id: string; digest: string; key_id: string | null; nonce: string | null; ciphertext: string | null; secret: string | null }>(
      `SELECT endpoint_id, digest, key_id, nonce, ciphertext, secret FROM ${secrets}
       WHERE ${which} AND ($1::text IS NOT NULL) ORDER BY endpoint_id, digest LIMIT ${batchSize}`,
      [current],
    );
    if (rows.length === 0) break;
    let changed = 0;
    for (const row of rows) {
      const plaintext = openStoredSecret(keyring, row.endpoint_id, {
        keyId: row.key_id,
        nonce: row.nonce,
        ciphertext: row.ciphertext,
        plaintext: row.secret,
      });
      const sealed = keyring.seal(row.endpoint_id, plaintext);
      // Only ciphertext goes to the database; the row is matched on its digest and old ciphertext
      // (or the presence of plaintext), so a concurrent rotation or rewrite is never overwritten.
      const { rowCount } = await db.query(
        `UPDATE ${secrets} SET secret = NULL, key_id = $3, nonce = $4, ciphertext = $5
         WHERE endpoint_id = $1 AND digest = $2
           AND ((secret IS NOT NULL AND $6::text IS NULL) OR (key_id = $6 AND ciphertext = $7))`,
        [row.endpoint_id, row.digest, sealed.keyId, sealed.nonce, sealed.ciphertext, row.key_id, row.ciphertext],
      );
      changed += rowCount;
      if (rowCount > 0) {
        if (row.secret !== null) encrypted++;
        else reencrypted++;
      }
    }
    // Rows rewritten by someone else meanwhile no longer match and are read again; a whole batch
    // of them means another process keeps rewriting them: stop and say so below.
    if (changed === 0) break;
  }
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${secrets} WHERE ${which} AND ($1::text IS NOT NULL)`, [current]);
  if (rows[0]!.n > 0) {
    throw new TidingsError(
      `${rows[0]!.n} webhook secrets changed while they were being re-encrypted (another process with a different TIDINGS_SECRET_KEY?); ` +
        'give every process the same keys and run the rotation again',
    );
  }
  return { keyId: current, encrypted, reencrypted };
}

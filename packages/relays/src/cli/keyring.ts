import { randomBytes } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateSecretKey, secretKeyring, secretKeyringFromEnv, type SecretKeyring } from '../webhook/index.ts';

/** The embedded database's key file, beside its data: one base64 key a line, the current one first. */
export const keyFileName = 'secret-key';

/**
 * The keys the CLI encrypts webhook secrets with. `TIDINGS_SECRET_KEY` (and `TIDINGS_SECRET_KEY_OLD`)
 * when set; on the embedded database, the key file in its folder, generated on first use and
 * readable by its owner only (and still readable as an old key when the environment sets another).
 * Undefined on a server database without `TIDINGS_SECRET_KEY`: commands that need a key say so.
 */
export async function cliKeyring(embeddedRoot: string | undefined): Promise<SecretKeyring | undefined> {
  const fromEnv = secretKeyringFromEnv();
  if (embeddedRoot === undefined) return fromEnv;
  const file = await readKeyFile(embeddedRoot);
  if (fromEnv) {
    const old = [...(process.env.TIDINGS_SECRET_KEY_OLD ?? '').split(','), ...file].map((k) => k.trim()).filter((k) => k !== '');
    return secretKeyring({ current: process.env.TIDINGS_SECRET_KEY!.trim(), old });
  }
  const keys = file.length > 0 ? file : await createKeyFile(embeddedRoot);
  return secretKeyring({ current: keys[0]!, old: keys.slice(1) });
}

/**
 * Starts a key rotation on the embedded database: a new current key is written first, the old
 * ones kept after it, so the file can decrypt every row whatever happens next. `finish()` drops
 * the old keys once every row is re-encrypted.
 */
export async function beginEmbeddedKeyRotation(root: string): Promise<{ keyring: SecretKeyring; finish(): Promise<void> }> {
  const old = await readKeyFile(root);
  const fresh = generateSecretKey();
  await writeKeyFile(root, [fresh, ...old]);
  return { keyring: secretKeyring({ current: fresh, old }), finish: () => writeKeyFile(root, [fresh]) };
}

async function readKeyFile(root: string): Promise<string[]> {
  try {
    const text = await readFile(join(root, keyFileName), 'utf8');
    return text.split('\n').map((line) => line.trim()).filter((line) => line !== '' && !line.startsWith('#'));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

async function createKeyFile(root: string): Promise<string[]> {
  const key = generateSecretKey();
  try {
    await writeFile(join(root, keyFileName), contents([key]), { mode: 0o600, flag: 'wx' });
    return [key];
  } catch (error) {
    // Another tidings process created it first: use that one.
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return readKeyFile(root);
    throw error;
  }
}

/** Replaces the key file atomically (write beside it, then rename), owner-only. */
async function writeKeyFile(root: string, keys: readonly string[]): Promise<void> {
  const temp = join(root, `${keyFileName}.${randomBytes(4).toString('hex')}.tmp`);
  await writeFile(temp, contents(keys), { mode: 0o600, flag: 'wx' });
  await rename(temp, join(root, keyFileName));
}

function contents(keys: readonly string[]): string {
  return (
    '# The key that encrypts this embedded database\'s webhook signing secrets (AES-256-GCM).\n' +
    '# Keep it with the database and private to its owner; without it the secrets cannot be read.\n' +
    `${keys.join('\n')}\n`
  );
}

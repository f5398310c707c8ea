import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { MissingSecretKeyError, SecretDecryptionError, SecretKeyFormatError } from './secret-errors.ts';

/** The environment variable that holds the current key: base64 of 32 random bytes. */
export const secretKeyVariable = 'TIDINGS_SECRET_KEY';
/** Keys that only decrypt (the ones being rotated away from): base64 keys separated by commas. */
export const oldSecretKeysVariable = 'TIDINGS_SECRET_KEY_OLD';

const keyBytes = 32;
const nonceBytes = 12;
const tagBytes = 16;

/** A webhook signing secret as the registry stores it: AES-256-GCM under one key of the keyring. */
export interface SealedSecret {
  /** Which key of the keyring sealed it (see {@link SecretKeyring.currentKeyId}). */
  readonly keyId: string;
  /** The 12-byte GCM nonce, base64. */
  readonly nonce: string;
  /** The ciphertext followed by the 16-byte GCM tag, base64. */
  readonly ciphertext: string;
}

/**
 * The keys that encrypt webhook signing secrets at rest: one current key (encrypts and decrypts)
 * and any number of old keys (decrypt only, while a rotation re-encrypts the rows). Each key's id
 * is derived from the key itself, so it needs no name and cannot be mislabelled.
 *
 * @example
 * const keyring = secretKeyring({ current: process.env.TIDINGS_SECRET_KEY!, old: [previousKey] });
 * const endpoints = webhookEndpoints({ keyring });
 */
export class SecretKeyring {
  /** The id stored with every secret the current key seals. */
  readonly currentKeyId: string;
  /** Ids of every key, the current one first. */
  readonly keyIds: readonly string[];
  readonly #keys: ReadonlyMap<string, Buffer>;

  constructor(current: string | Uint8Array, old: ReadonlyArray<string | Uint8Array> = []) {
    const keys = new Map<string, Buffer>();
    const currentKey = parseKey(current, secretKeyVariable);
    this.currentKeyId = keyIdOf(currentKey);
    keys.set(this.currentKeyId, currentKey);
    old.forEach((key, i) => {
      const parsed = parseKey(key, `${oldSecretKeysVariable} entry ${i + 1}`);
      keys.set(keyIdOf(parsed), parsed);
    });
    this.#keys = keys;
    this.keyIds = Object.freeze([...keys.keys()]);
    Object.freeze(this);
  }

  /** Encrypts `secret` under the current key, bound to `endpointId` (the associated data). */
  seal(endpointId: string, secret: string): SealedSecret {
    const nonce = randomBytes(nonceBytes);
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.currentKeyId)!, nonce);
    cipher.setAAD(Buffer.from(endpointId, 'utf8'));
    const sealed = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return { keyId: this.currentKeyId, nonce: nonce.toString('base64'), ciphertext: sealed.toString('base64') };
  }

  /**
   * Decrypts a sealed secret of `endpointId`. A key id not in the keyring, a wrong key or a
   * ciphertext moved to another endpoint (different associated data) is a `SecretDecryptionError`.
   */
  open(endpointId: string, sealed: SealedSecret): string {
    const key = this.#keys.get(sealed.keyId);
    if (!key) throw new SecretDecryptionError(endpointId, sealed.keyId, 'unknown-key', this.keyIds);
    const nonce = Buffer.from(sealed.nonce, 'base64');
    const data = Buffer.from(sealed.ciphertext, 'base64');
    if (nonce.length !== nonceBytes || data.length < tagBytes) throw new SecretDecryptionError(endpointId, sealed.keyId, 'malformed', this.keyIds);
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, nonce);
      decipher.setAAD(Buffer.from(endpointId, 'utf8'));
      decipher.setAuthTag(data.subarray(data.length - tagBytes));
      return Buffer.concat([decipher.update(data.subarray(0, data.length - tagBytes)), decipher.final()]).toString('utf8');
    } catch (error) {
      throw new SecretDecryptionError(endpointId, sealed.keyId, 'authentication', this.keyIds, { cause: error });
    }
  }

  /** Whether a secret sealed under `keyId` can be opened. */
  has(keyId: string): boolean {
    return this.#keys.has(keyId);
  }
}

/**
 * A keyring from base64 keys: `current` encrypts and decrypts, `old` only decrypts.
 *
 * @example
 * const keyring = secretKeyring({ current: 'q2V…=' });
 */
export function secretKeyring(keys: { readonly current: string | Uint8Array; readonly old?: ReadonlyArray<string | Uint8Array> }): SecretKeyring {
  return new SecretKeyring(keys.current, keys.old ?? []);
}

/**
 * The keyring the environment describes: `TIDINGS_SECRET_KEY` (current) and
 * `TIDINGS_SECRET_KEY_OLD` (old keys, comma-separated), or undefined when no current key is set.
 *
 * @example
 * const keyring = secretKeyringFromEnv(); // undefined without TIDINGS_SECRET_KEY
 */
export function secretKeyringFromEnv(env: NodeJS.ProcessEnv = process.env): SecretKeyring | undefined {
  const current = env[secretKeyVariable]?.trim();
  const old = (env[oldSecretKeysVariable] ?? '').split(',').map((key) => key.trim()).filter((key) => key !== '');
  if (!current) {
    if (old.length > 0) throw new SecretKeyFormatError(oldSecretKeysVariable, `is set but ${secretKeyVariable} is not; set the current key too`);
    return undefined;
  }
  return new SecretKeyring(current, old);
}

/** The keyring given, else the environment's, else a `MissingSecretKeyError` saying how to set one. */
export function requireKeyring(keyring: SecretKeyring | undefined, action: string): SecretKeyring {
  const found = keyring ?? secretKeyringFromEnv();
  if (!found) throw new MissingSecretKeyError(action);
  return found;
}

/**
 * A new key for `TIDINGS_SECRET_KEY`: 32 random bytes in base64 (the same as `openssl rand -base64 32`).
 *
 * @example
 * console.log(generateSecretKey()); // 'mB0c…='
 */
export function generateSecretKey(): string {
  return randomBytes(keyBytes).toString('base64');
}

/**
 * What the registry stores in place of a secret in its unique key: SHA-256 of the secret with the
 * endpoint id. Secrets are at least 24 random bytes, so the digest cannot be reversed by guessing;
 * the same formula is computed in SQL by the migration that encrypted older rows.
 */
export function secretDigest(endpointId: string, secret: string): string {
  return createHash('sha256').update(`tidings-webhook-secret:${endpointId}:${secret}`, 'utf8').digest('base64');
}

function parseKey(key: string | Uint8Array, what: string): Buffer {
  if (typeof key !== 'string') {
    if (!(key instanceof Uint8Array) || key.length !== keyBytes) throw new SecretKeyFormatError(what, `must be ${keyBytes} bytes`);
    return Buffer.from(key);
  }
  const text = key.trim();
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(text) || text.length % 4 !== 0) {
    throw new SecretKeyFormatError(what, 'must be standard base64 (A-Z, a-z, 0-9, +, /, = padding)');
  }
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== keyBytes) throw new SecretKeyFormatError(what, `must encode ${keyBytes} bytes; this one encodes ${bytes.length}`);
  return bytes;
}

/** 16 hex digits of a SHA-256 of the key: names the key without revealing it. */
function keyIdOf(key: Buffer): string {
  return createHash('sha256').update('tidings-secret-key-id:').update(key).digest('hex').slice(0, 16);
}

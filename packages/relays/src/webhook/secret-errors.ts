import { TidingsError } from '@tidings/outbox';

const howToSet =
  'Set TIDINGS_SECRET_KEY to 32 random bytes in base64 (generate one with `openssl rand -base64 32`, ' +
  'or generateSecretKey() from @tidings/relays/webhook), the same value in every process that ' +
  'manages or delivers webhooks, or pass `keyring` explicitly.';

/**
 * No key to encrypt or decrypt webhook signing secrets with: `TIDINGS_SECRET_KEY` is not set and no
 * `keyring` was passed. Nothing was written.
 */
export class MissingSecretKeyError extends TidingsError {
  override readonly name = 'MissingSecretKeyError';
  /** What needed the key, e.g. `create a webhook endpoint`. */
  readonly action: string;
  constructor(action: string) {
    super(`cannot ${action}: webhook signing secrets are stored encrypted, and no key is set. ${howToSet}`);
    this.action = action;
  }
}

/** A key given for `TIDINGS_SECRET_KEY` (or an old key) is not 32 bytes of base64. */
export class SecretKeyFormatError extends TidingsError {
  override readonly name = 'SecretKeyFormatError';
  /** Which key: `TIDINGS_SECRET_KEY` or `TIDINGS_SECRET_KEY_OLD entry N`. */
  readonly key: string;
  constructor(key: string, detail: string) {
    super(`${key} ${detail}. ${howToSet}`);
    this.key = key;
  }
}

/** Why a stored secret could not be decrypted. */
export type SecretDecryptionReason = 'unknown-key' | 'authentication' | 'malformed';

/**
 * A stored webhook secret could not be decrypted: it was sealed under a key the keyring does not
 * hold, or the key or the endpoint it is bound to does not match (the ciphertext was altered or
 * copied to another endpoint).
 */
export class SecretDecryptionError extends TidingsError {
  override readonly name = 'SecretDecryptionError';
  readonly endpointId: string;
  /** The key id stored with the secret. */
  readonly keyId: string;
  readonly reason: SecretDecryptionReason;
  constructor(endpointId: string, keyId: string, reason: SecretDecryptionReason, known: readonly string[], options?: { cause?: unknown }) {
    super(
      reason === 'unknown-key'
        ? `the signing secret of webhook endpoint ${endpointId} is encrypted under key id ${keyId}, which is not in the keyring ` +
            `(keys held: ${known.join(', ')}). Add that key to TIDINGS_SECRET_KEY_OLD (or make it TIDINGS_SECRET_KEY).`
        : `the signing secret of webhook endpoint ${endpointId} (key id ${keyId}) does not decrypt: ` +
            (reason === 'malformed'
              ? 'the stored ciphertext is malformed.'
              : 'the key, the ciphertext or the endpoint it is bound to does not match (altered or copied between endpoints?).'),
      options,
    );
    this.endpointId = endpointId;
    this.keyId = keyId;
    this.reason = reason;
  }
}

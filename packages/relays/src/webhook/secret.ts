import { randomBytes } from 'node:crypto';
import { InvalidEndpointError } from './errors.ts';

const prefix = 'whsec_';
/** Standard Webhooks: at least 24 bytes, at most 64. */
const minKeyBytes = 24;
const maxKeyBytes = 64;
const base64 = /^[A-Za-z0-9+/]+={0,2}$/;

/**
 * A new signing secret in the Standard Webhooks format: `whsec_` and 32 random bytes in base64.
 *
 * @example
 * const secret = generateWebhookSecret(); // 'whsec_Fq3…='
 */
export function generateWebhookSecret(): string {
  return prefix + randomBytes(32).toString('base64');
}

/**
 * The HMAC key of a `whsec_…` secret. The prefix is optional, as in the reference libraries; the
 * key must be 24 to 64 bytes of base64.
 *
 * @example
 * const key = secretKey('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'); // 24 bytes
 */
export function secretKey(secret: string): Buffer {
  if (typeof secret !== 'string') throw new InvalidEndpointError('secret', `must be a string like "whsec_<base64>"; got ${typeof secret}`);
  const encoded = secret.startsWith(prefix) ? secret.slice(prefix.length) : secret;
  if (!base64.test(encoded) || encoded.length % 4 !== 0) {
    throw new InvalidEndpointError('secret', 'must be "whsec_" followed by standard base64 (A-Z, a-z, 0-9, +, /, = padding)');
  }
  const key = Buffer.from(encoded, 'base64');
  if (key.length < minKeyBytes || key.length > maxKeyBytes) {
    throw new InvalidEndpointError('secret', `must encode ${minKeyBytes} to ${maxKeyBytes} bytes; this one has ${key.length}`);
  }
  return key;
}

/** Checks a secret and returns it with the `whsec_` prefix, as it is stored. */
export function normalizeSecret(secret: string): string {
  secretKey(secret);
  return secret.startsWith(prefix) ? secret : prefix + secret;
}

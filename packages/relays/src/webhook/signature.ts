import { ConfigError } from '@tidings/outbox';
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { secretKey } from './secret.ts';

/** What a Standard Webhooks signature covers. */
export interface SignedContent {
  /** `webhook-id`: the event id, the same on every attempt. */
  readonly id: string;
  /** `webhook-timestamp`: the attempt's time, in whole seconds since the epoch. */
  readonly timestamp: number;
  /** The exact body bytes sent. */
  readonly body: string | Uint8Array;
}

/**
 * The raw HMAC-SHA256 of `{id}.{timestamp}.{body}` under one key. The body is hashed as the bytes
 * sent, never re-serialised.
 */
export function hmac(key: Uint8Array | KeyObject, content: SignedContent): Buffer {
  return createHmac('sha256', key).update(`${content.id}.${content.timestamp}.`).update(content.body).digest();
}

/**
 * The `webhook-signature` header: `v1,<base64 HMAC>` for each secret, space-separated. During a
 * secret rotation the old and the new secret both sign, so receivers holding either one accept it.
 *
 * @example
 * signWebhook({ id: 'msg_p5jXN8AQM9LWM0D4loKWxJek', timestamp: 1614265330, body: '{"test": 2432232314}' },
 *   ['whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw']);
 * // 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
 */
export function signWebhook(content: SignedContent, secrets: string | readonly string[]): string {
  const list = typeof secrets === 'string' ? [secrets] : secrets;
  if (list.length === 0) throw new ConfigError('secrets', 'signWebhook needs at least one secret; pass a "whsec_…" secret (generateWebhookSecret() makes one)');
  return list.map((secret) => `v1,${hmac(signingKey(secret), content).toString('base64')}`).join(' ');
}

const signingKeys = new Map<string, KeyObject>();

/**
 * The secret as a KeyObject, made once: an HMAC keyed by a KeyObject costs a sixth of one keyed by
 * raw bytes, which Node turns into a key again on every call. A relay signs with a handful of
 * secrets, so the cache stays small; it is emptied if it ever grows past a thousand.
 */
function signingKey(secret: string): KeyObject {
  let key = signingKeys.get(secret);
  if (!key) {
    key = createSecretKey(secretKey(secret));
    if (signingKeys.size >= 1000) signingKeys.clear();
    signingKeys.set(secret, key);
  }
  return key;
}

/**
 * Whether any `v1` signature of a `webhook-signature` header matches any of the keys. Unknown
 * versions (`v1a`, …) are skipped, as the spec asks; every comparison is constant-time.
 */
export function signatureMatches(header: string, keys: readonly Uint8Array[], content: SignedContent): boolean {
  const expected = keys.map((key) => hmac(key, content));
  let matched = false;
  for (const entry of header.split(' ')) {
    const comma = entry.indexOf(',');
    if (comma < 0 || entry.slice(0, comma) !== 'v1') continue;
    const given = Buffer.from(entry.slice(comma + 1), 'base64');
    for (const mac of expected) {
      // Lengths are public (always 32 for SHA-256); only equal-length buffers are compared.
      if (given.length === mac.length && timingSafeEqual(given, mac)) matched = true;
    }
  }
  return matched;
}

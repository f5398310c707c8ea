import { ConfigError } from '@tidings/outbox';
import { WebhookVerificationError } from './errors.ts';
import { secretKey } from './secret.ts';
import { signatureMatches } from './signature.ts';

/** Headers as node:http, Fetch or a plain object give them. */
export type HeaderSource =
  | { get(name: string): string | null }
  | Readonly<Record<string, string | readonly string[] | undefined>>;

export interface VerifyOptions {
  /** How far the `webhook-timestamp` may be from now, either way. Default 5 minutes. */
  readonly toleranceMs?: number;
  /** The current time in ms; for tests. Default `Date.now()`. */
  readonly now?: number;
}

/** A webhook whose signature and timestamp checked out. */
export interface VerifiedWebhook {
  /** `webhook-id`: the event id, the dedup key. */
  readonly id: string;
  /** When this attempt was signed. */
  readonly timestamp: Date;
  /** The raw body, as signed. */
  readonly body: Buffer;
}

export const defaultToleranceMs = 5 * 60 * 1000;

/**
 * Verifies a Standard Webhooks request against the raw body: the timestamp within the tolerance
 * (default 5 minutes, past or future), then any `v1` signature made with any of `secrets`
 * (several during a rotation), compared in constant time. Throws `WebhookVerificationError`.
 *
 * @example
 * const { id } = verifyWebhook(req.headers, rawBody, process.env.WEBHOOK_SECRET!);
 */
export function verifyWebhook(
  headers: HeaderSource,
  body: string | Uint8Array,
  secrets: string | readonly string[],
  options: VerifyOptions = {},
): VerifiedWebhook {
  const keys = (typeof secrets === 'string' ? [secrets] : secrets).map(secretKey);
  if (keys.length === 0) throw new ConfigError('secrets', 'verifyWebhook needs at least one secret; pass the endpoint\'s "whsec_…" secret, or a list of them during a rotation');
  const id = header(headers, 'webhook-id');
  const stamp = header(headers, 'webhook-timestamp');
  const signature = header(headers, 'webhook-signature');
  if (!id || !stamp || !signature) {
    const missing = [!id && 'webhook-id', !stamp && 'webhook-timestamp', !signature && 'webhook-signature'].filter(Boolean);
    throw new WebhookVerificationError('missing-headers', id, `missing header ${missing.join(', ')}`);
  }
  if (!/^\d{1,15}$/.test(stamp)) {
    throw new WebhookVerificationError('invalid-timestamp', id, `webhook-timestamp "${stamp.slice(0, 32)}" is not whole seconds since the epoch`);
  }
  const timestamp = Number(stamp);
  const toleranceMs = options.toleranceMs ?? defaultToleranceMs;
  const skewMs = (options.now ?? Date.now()) - timestamp * 1000;
  if (skewMs > toleranceMs) {
    throw new WebhookVerificationError('timestamp-too-old', id, `signed ${Math.round(skewMs / 1000)} s ago, more than the ${toleranceMs / 1000} s tolerance (a replay, or a clock far behind)`);
  }
  if (-skewMs > toleranceMs) {
    throw new WebhookVerificationError('timestamp-too-new', id, `signed ${Math.round(-skewMs / 1000)} s in the future, more than the ${toleranceMs / 1000} s tolerance (a clock far ahead)`);
  }
  const raw = typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (!signatureMatches(signature, keys, { id, timestamp, body: raw })) {
    throw new WebhookVerificationError('signature-mismatch', id, 'no v1 signature matches the body with the configured secret(s); check the secret, and verify the raw body, not re-serialised JSON');
  }
  return { id, timestamp: new Date(timestamp * 1000), body: raw };
}

/** A header's value, names compared without case; several values joined by a space. */
export function header(headers: HeaderSource, name: string): string | undefined {
  let value: string | readonly string[] | null | undefined;
  if (typeof (headers as { get?: unknown }).get === 'function') {
    value = (headers as { get(name: string): string | null }).get(name);
  } else {
    const record = headers as Readonly<Record<string, string | readonly string[] | undefined>>;
    value = record[name];
    if (value === undefined) {
      const key = Object.keys(record).find((k) => k.toLowerCase() === name);
      value = key === undefined ? undefined : record[key];
    }
  }
  if (Array.isArray(value)) value = value.join(' ');
  return typeof value === 'string' && value !== '' ? value : undefined;
}

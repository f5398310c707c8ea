import { ConfigError } from '@tidings/outbox';
import { InvalidInputError } from './errors.ts';

/**
 * Limits in UTF-8 bytes. The primary keys (consumer, event_id) and (consumer, source) must fit in a
 * btree entry (about 2.7 kB), so their parts together stay well under that.
 */
export const limits = {
  consumer: 200,
  eventId: 1000,
  source: 1000,
  position: 8192,
} as const;

/** Checks the consumer name given to `inbox()`; it is configuration, so a bad one is a ConfigError. */
export function validConsumer(value: unknown): string {
  const problem = textProblem(value, limits.consumer);
  if (problem) throw new ConfigError('consumer', `${problem}; got ${describe(value)}`);
  return value as string;
}

/** Checks one text argument of a call; throws before anything is written. */
export function validText(field: string, value: unknown, maxBytes: number): string {
  const problem = textProblem(value, maxBytes);
  if (problem) throw new InvalidInputError(field, `${problem}; got ${describe(value)}`);
  return value as string;
}

const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function textProblem(value: unknown, maxBytes: number): string | undefined {
  if (typeof value !== 'string' || value.length === 0) return 'must be a non-empty string';
  if (value.includes('\u0000')) return 'must not contain a NUL character, which PostgreSQL text cannot store';
  // Lone surrogates reach the database as U+FFFD, so two different ids could collapse into one
  // and the second event would be wrongly skipped as a duplicate.
  if (loneSurrogate.test(value)) return 'must be well-formed Unicode (it has a lone UTF-16 surrogate)';
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > maxBytes) return `must be at most ${maxBytes} bytes of UTF-8, not ${bytes}`;
  return undefined;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : (value.constructor?.name ?? 'an object');
  return typeof value === 'undefined' ? 'undefined' : `a ${typeof value}`;
}

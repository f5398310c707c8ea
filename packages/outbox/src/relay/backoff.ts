import type { RetryPolicy } from './options.ts';

/**
 * The wait before attempt `attempt + 1`: `minDelayMs * factor^(attempt-1)`, times a random 1 to 2
 * so that partitions waiting for the same destination spread out, capped at `maxDelayMs`; a
 * receiver's Retry-After hint is honoured whenever it asks for longer.
 */
export function retryDelay(policy: Required<RetryPolicy>, attempt: number, retryAfterMs: number | undefined): number {
  const exponent = Math.min(Math.max(0, attempt - 1), 64);
  const backoff = Math.min(policy.maxDelayMs, Math.round(policy.minDelayMs * policy.factor ** exponent * (1 + Math.random())));
  return retryAfterMs !== undefined && retryAfterMs > backoff ? Math.ceil(retryAfterMs) : backoff;
}

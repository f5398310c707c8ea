import { ConfigError } from '@tidings/outbox';

/**
 * The one check of a whole-number option: `value` if it is a whole number from `min` to `max`,
 * `fallback` if it is undefined, otherwise a `ConfigError` that names the option and the range.
 *
 * @example
 * const prefetch = wholeOption('prefetch', options.prefetch, 20, 1, 65_535);
 */
export function wholeOption(option: string, value: number | undefined, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(option, `expected a whole number from ${min} to ${max}, got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

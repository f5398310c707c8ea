import { ConfigError } from '@tidings/outbox';

/** `value` if it is a whole number from 1 to `max`, `fallback` if it is undefined; otherwise a `ConfigError` naming the option. */
export function positiveIntegerOption(option: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new ConfigError(option, `expected a whole number from 1 to ${max}, got ${String(value)}`);
  }
  return value;
}

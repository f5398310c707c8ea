import { ConfigError } from './errors.ts';
import { validateSchemaName } from './sql.ts';

export const defaults = {
  schema: 'tidings',
  partitions: 16,
  maxPayloadBytes: 1024 * 1024,
} as const;

/**
 * The NOTIFY channel that tells relays and feeds that a partition has new events: a plain
 * identifier, so every client can LISTEN to it without quoting.
 */
export function notifyChannel(schema: string): string {
  return `${schema}_events`;
}

export function resolveSchema(schema: string | undefined): string {
  const name = schema ?? defaults.schema;
  validateSchemaName(name);
  return name;
}

/**
 * The one check of a whole-number option in tidings: `value` if it is a whole number from `min` to
 * `max`, `fallback` if it is undefined, otherwise a `ConfigError` that names the option and the range.
 *
 * @example
 * const prefetch = wholeOption('prefetch', options.prefetch, 20, 1, 65_535);
 */
export function wholeOption(option: string, value: number | undefined, fallback: number, min = 1, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(option, `expected a whole number from ${min} to ${max}, got ${JSON.stringify(value) ?? String(value)}`);
  }
  return value;
}

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

export function positiveInteger(option: string, value: number | undefined, fallback: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new ConfigError(option, `expected a whole number from 1 to ${max}, got ${String(value)}`);
  }
  return value;
}

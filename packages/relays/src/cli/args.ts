import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from './usage-error.ts';

type Options = NonNullable<ParseArgsConfig['options']>;

/** Flags every command that touches the database takes. */
export const databaseFlags = {
  database: { type: 'string' },
  schema: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

/** Parses flags strictly; an unknown or malformed flag is a `UsageError` that points at --help. */
export function parseFlags<O extends Options>(command: string, args: string[], options: O) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError(`${(error as Error).message.replace(/\. To specify.*$/s, '')}\nRun \`tidings ${command} --help\` for the flags it takes.`);
  }
}

export function wholeNumber(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${flag} takes a whole number of at least 1, got "${value}"`);
  return n;
}

/** A flag that takes a TCP port number. */
export function portNumber(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n) || n < 1 || n > 65_535) throw new UsageError(`--${flag} takes a port number from 1 to 65535, got "${value}"`);
  return n;
}

/** A flag that takes a number of at least 0 (fractions allowed), e.g. hours. */
export function zeroOrMore(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new UsageError(`--${flag} takes a number of at least 0, got "${value}"`);
  return n;
}

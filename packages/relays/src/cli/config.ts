import { access, readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { RelayOptions } from '@tidings/outbox';
import { UsageError } from './usage-error.ts';

/** Where a relay sends its events. Options besides `type` go to the transport's own factory. */
export type TransportConfig =
  | ({ readonly type: 'rabbitmq' } & Readonly<Record<string, unknown>>)
  | ({ readonly type: 'kafka' } & Readonly<Record<string, unknown>>);

export interface RelayConfig
  extends Pick<RelayOptions, 'topics' | 'tenant' | 'batchSize' | 'pollIntervalMs' | 'leaseTtlMs' | 'retry' | 'onFailure' | 'startFrom'> {
  readonly name: string;
  readonly transport: TransportConfig;
}

/** The file `tidings relay --config` reads: `tidings.config.ts`, `.js` or `.json`. */
export interface TidingsConfig {
  /** PostgreSQL URL. Default: `DATABASE_URL`, else the embedded PGlite database. */
  readonly database?: string;
  /** Default `tidings`. */
  readonly schema?: string;
  /** Webhook deliveries to the registered endpoints run too. Default false. */
  readonly webhooks?: boolean | Readonly<Record<string, unknown>>;
  readonly relays?: readonly RelayConfig[];
}

/**
 * Types a config file.
 *
 * @example
 * // tidings.config.ts
 * import { defineConfig } from '@tidings/relays';
 * export default defineConfig({
 *   relays: [{ name: 'orders-to-rabbit', topics: ['orders.*'], transport: { type: 'rabbitmq', url: 'amqp://localhost' } }],
 * });
 */
export function defineConfig(config: TidingsConfig): TidingsConfig {
  return config;
}

const candidates = ['tidings.config.ts', 'tidings.config.js', 'tidings.config.mjs', 'tidings.config.json'];

/** Loads and checks a config file; every mistake is a `UsageError` naming the file and the field. */
export async function loadConfig(path: string | undefined): Promise<{ config: TidingsConfig; file: string }> {
  const file = path ? resolve(path) : await findDefault();
  let raw: unknown;
  try {
    raw = file.endsWith('.json')
      ? JSON.parse(await readFile(file, 'utf8'))
      : ((await import(pathToFileURL(file).href)) as { default?: unknown }).default;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'ERR_UNKNOWN_FILE_EXTENSION' && /\.[mc]?ts$/.test(file)
          ? `a TypeScript config needs a Node that runs .ts files (22.18+ or 23.6+; this is ${process.version}); use a .js or .json config, or a newer Node`
          : (error as Error).message;
    throw new UsageError(`cannot read config ${file}: ${reason}`);
  }
  return { config: checkConfig(raw, file), file };
}

async function findDefault(): Promise<string> {
  for (const name of candidates) {
    const file = resolve(name);
    if (await access(file).then(() => true, () => false)) return file;
  }
  throw new UsageError(`no config file: pass --config FILE, or create one of ${candidates.join(', ')} here`);
}

function checkConfig(raw: unknown, file: string): TidingsConfig {
  const fail = (what: string): never => {
    throw new UsageError(`config ${file}: ${what}`);
  };
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) fail('expected an object (export default { relays: [...] })');
  const config = raw as Record<string, unknown>;
  const known = new Set(['database', 'schema', 'webhooks', 'relays']);
  for (const key of Object.keys(config)) if (!known.has(key)) fail(`unknown field "${key}" (known: ${[...known].join(', ')})`);
  if (config.database !== undefined && typeof config.database !== 'string') fail('"database" must be a PostgreSQL URL string');
  if (config.schema !== undefined && typeof config.schema !== 'string') fail('"schema" must be a string');
  const relays = config.relays ?? [];
  if (!Array.isArray(relays)) fail('"relays" must be a list');
  const names = new Set<string>();
  (relays as unknown[]).forEach((relay, i) => {
    if (typeof relay !== 'object' || relay === null) fail(`relays[${i}] must be an object`);
    const r = relay as Record<string, unknown>;
    if (typeof r.name !== 'string' || r.name === '') fail(`relays[${i}].name must be a non-empty string`);
    if (names.has(r.name as string)) fail(`relays[${i}].name "${String(r.name)}" is used twice`);
    names.add(r.name as string);
    const transport = r.transport as Record<string, unknown> | undefined;
    if (typeof transport !== 'object' || transport === null) fail(`relays[${i}].transport must be an object with a "type"`);
    if (transport!.type !== 'rabbitmq' && transport!.type !== 'kafka') {
      fail(`relays[${i}].transport.type must be "rabbitmq" or "kafka", got ${JSON.stringify(transport!.type)}`);
    }
  });
  if ((relays as unknown[]).length === 0 && !config.webhooks) fail('nothing to run: add "relays" or set "webhooks": true');
  return config as TidingsConfig;
}

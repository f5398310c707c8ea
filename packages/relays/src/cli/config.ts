import { access, readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { PgDatabaseOptions, RelayOptions } from '@tidings/outbox';
import { failureModes } from '@tidings/outbox/internal';
import { configKeys, type RetentionFileOptions } from './config-keys.ts';
import { closest } from './suggest.ts';
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
  /**
   * The PostgreSQL connections of `tidings relay` (see `pgDatabase`): pool size, TCP keepalive,
   * connect and statement timeouts, the LISTEN heartbeat. Only with a PostgreSQL URL, not the
   * embedded database.
   */
  readonly pool?: PgDatabaseOptions;
  /** Webhook deliveries to the registered endpoints run too. Default false. */
  readonly webhooks?: boolean | Readonly<Record<string, unknown>>;
  readonly relays?: readonly RelayConfig[];
  /**
   * Retention on a schedule inside `tidings relay` (see `scheduleRetention`): on by default with
   * its defaults (events kept 7 days, dead letters kept until handled, a run every 15 minutes);
   * `false` turns it off, for a deployment that runs `tidings cleanup` from its own scheduler.
   */
  readonly retention?: false | RetentionFileOptions;
  /**
   * Serve the metrics (meter `tidings`) in Prometheus text format on this port, at `/metrics`
   * (`--metrics-port` overrides it). Default: no endpoint.
   */
  readonly metricsPort?: number;
  /** The address the metrics endpoint listens on. Default `localhost`; `0.0.0.0` for a scraper on another machine. */
  readonly metricsHost?: string;
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
  const check = new ConfigChecker(file);
  const config = check.object(raw, '', configKeys.top, 'expected an object (export default { relays: [...] })');
  check.optional(config.database, 'database', (v, at) => check.string(v, at, 'a PostgreSQL URL'));
  check.optional(config.schema, 'schema', (v, at) => check.string(v, at, 'a schema name'));
  check.optional(config.pool, 'pool', (v, at) => {
    const pool = check.object(v, at, configKeys.pool, 'must be an object of pgDatabase options');
    for (const [key, min] of [['max', 1], ['keepAliveInitialDelayMs', 0], ['connectTimeoutMs', 1], ['queryTimeoutMs', 0], ['listenHeartbeatMs', 1]] as const) {
      check.optional(pool[key], `${at}.${key}`, (n, where) => check.wholeNumber(n, where, min));
    }
    check.optional(pool.keepAlive, `${at}.keepAlive`, (b, where) => {
      if (typeof b !== 'boolean') check.fail(`${where} must be true or false, got ${describe(b)}`);
    });
  });
  check.optional(config.webhooks, 'webhooks', (v, at) => {
    if (typeof v === 'boolean') return;
    const webhooks = check.object(v, at, configKeys.webhooks, 'must be true, false or an object of dispatcher options');
    for (const key of ['connectTimeoutMs', 'sendTimeoutMs', 'maxRetryAfterMs', 'maxConnections', 'disableAfterMs', 'refreshIntervalMs']) {
      check.optional(webhooks[key], `${at}.${key}`, (n, where) => check.wholeNumber(n, where, 1));
    }
    check.optional(webhooks.stopGraceMs, `${at}.stopGraceMs`, (n, where) => check.wholeNumber(n, where, 0));
    check.optional(webhooks.userAgent, `${at}.userAgent`, (n, where) => check.string(n, where, 'a string'));
    check.optional(webhooks.retry, `${at}.retry`, (r, where) => check.retry(r, where));
    check.optional(webhooks.relay, `${at}.relay`, (r, where) => {
      const relay = check.object(r, where, configKeys.webhooksRelay);
      for (const key of configKeys.webhooksRelay) check.optional(relay[key], `${where}.${key}`, (n, w) => check.wholeNumber(n, w, 1));
    });
    check.cloudEvents(webhooks.cloudEvents, `${at}.cloudEvents`);
    check.optional(webhooks.addressPolicy, `${at}.addressPolicy`, (a, where) => {
      const policy = check.object(a, where, configKeys.addressPolicy);
      check.optional(policy.allow, `${where}.allow`, (list, w) => check.strings(list, w, 'address ranges such as "10.0.0.0/8"'));
    });
  });
  check.optional(config.retention, 'retention', (v, at) => {
    if (v === false) return;
    const retention = check.object(v, at, configKeys.retention, 'must be false or an object of retention options');
    for (const key of ['retentionMs', 'batchSize']) check.optional(retention[key], `${at}.${key}`, (n, where) => check.wholeNumber(n, where, 1, key === 'batchSize' ? 100_000 : undefined));
    check.optional(retention.deadLetterRetentionMs, `${at}.deadLetterRetentionMs`, (n, where) => check.wholeNumber(n, where, 0));
    check.optional(retention.intervalMs, `${at}.intervalMs`, (n, where) => check.wholeNumber(n, where, 100));
  });
  check.optional(config.metricsPort, 'metricsPort', (v, at) => check.wholeNumber(v, at, 1, 65_535));
  check.optional(config.metricsHost, 'metricsHost', (v, at) => check.string(v, at, 'an address to listen on, e.g. "0.0.0.0"'));
  const relays = config.relays ?? [];
  if (!Array.isArray(relays)) check.fail('"relays" must be a list');
  const names = new Set<string>();
  (relays as unknown[]).forEach((value, i) => {
    const at = `relays[${i}]`;
    const relay = check.object(value, at, configKeys.relay);
    if (typeof relay.name !== 'string' || relay.name === '') check.fail(`${at}.name must be a non-empty string, got ${describe(relay.name)}`);
    if (names.has(relay.name as string)) check.fail(`${at}.name "${String(relay.name)}" is used twice`);
    names.add(relay.name as string);
    check.optional(relay.topics, `${at}.topics`, (v, where) => check.strings(v, where, 'topic names or prefixes ending in "*"'));
    check.optional(relay.tenant, `${at}.tenant`, (v, where) => check.string(v, where, 'a tenant id'));
    for (const key of ['batchSize', 'pollIntervalMs', 'leaseTtlMs']) check.optional(relay[key], `${at}.${key}`, (v, where) => check.wholeNumber(v, where, 1));
    check.optional(relay.retry, `${at}.retry`, (v, where) => check.retry(v, where));
    check.optional(relay.onFailure, `${at}.onFailure`, (v, where) => check.oneOf(v, where, failureModes));
    check.optional(relay.startFrom, `${at}.startFrom`, (v, where) => check.oneOf(v, where, ['beginning', 'now']));
    check.transport(relay.transport, `${at}.transport`);
  });
  if ((relays as unknown[]).length === 0 && !config.webhooks) check.fail('nothing to run: add "relays" or set "webhooks": true');
  return config as TidingsConfig;
}

/** The checks of a config file; each mistake is one `UsageError` naming the file and the field. */
class ConfigChecker {
  readonly #file: string;
  constructor(file: string) {
    this.#file = file;
  }

  fail(what: string): never {
    throw new UsageError(`config ${this.#file}: ${what}`);
  }

  /** An object whose every key is known; an unknown one is refused with the closest known key. */
  object(value: unknown, at: string, known: readonly string[], expected = 'must be an object'): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(at ? `${at} ${expected}, got ${describe(value)}` : expected);
    for (const key of Object.keys(value as object)) {
      if (known.includes(key)) continue;
      const hint = closest(key, known);
      this.fail(
        `${at || 'the top level'} has an unknown key ${JSON.stringify(key)}${hint ? ` (did you mean ${JSON.stringify(hint)}?)` : ''}; ` +
          `known keys: ${known.join(', ')}. Nothing was started: an unknown key is never ignored, so that a typo cannot drop a filter.`,
      );
    }
    return value as Record<string, unknown>;
  }

  optional(value: unknown, at: string, check: (value: unknown, at: string) => void): void {
    if (value !== undefined) check(value, at);
  }

  string(value: unknown, at: string, what: string): void {
    if (typeof value !== 'string' || value === '') this.fail(`${at} must be ${what} (a non-empty string), got ${describe(value)}`);
  }

  strings(value: unknown, at: string, what: string): void {
    if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) this.fail(`${at} must be a list of strings (${what}), got ${describe(value)}`);
  }

  wholeNumber(value: unknown, at: string, min: number, max = Number.MAX_SAFE_INTEGER): void {
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
      this.fail(`${at} must be a whole number ${max === Number.MAX_SAFE_INTEGER ? `of at least ${min}` : `from ${min} to ${max}`}, got ${describe(value)}`);
    }
  }

  oneOf(value: unknown, at: string, allowed: readonly string[]): void {
    if (!allowed.includes(value as string)) this.fail(`${at} must be ${allowed.map((a) => JSON.stringify(a)).join(' or ')}, got ${describe(value)}`);
  }

  retry(value: unknown, at: string): void {
    const retry = this.object(value, at, configKeys.retry);
    this.optional(retry.retries, `${at}.retries`, (v, where) => this.wholeNumber(v, where, 0));
    this.optional(retry.minDelayMs, `${at}.minDelayMs`, (v, where) => this.wholeNumber(v, where, 0));
    this.optional(retry.maxDelayMs, `${at}.maxDelayMs`, (v, where) => this.wholeNumber(v, where, 0));
    this.optional(retry.factor, `${at}.factor`, (v, where) => {
      if (typeof v !== 'number' || !(v >= 1)) this.fail(`${where} must be a number of at least 1, got ${describe(v)}`);
    });
  }

  transport(value: unknown, at: string): void {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) this.fail(`${at} must be an object with a "type", got ${describe(value)}`);
    const type = (value as { type?: unknown }).type;
    if (type === 'rabbitmq') {
      const transport = this.object(value, at, configKeys.rabbitmq);
      this.optional(transport.reconnect, `${at}.reconnect`, (v, where) => this.object(v, where, configKeys.rabbitmqReconnect));
      this.optional(transport.exchanges, `${at}.exchanges`, (v, where) => {
        if (!Array.isArray(v)) this.fail(`${where} must be a list, got ${describe(v)}`);
        (v as unknown[]).forEach((exchange, i) => this.object(exchange, `${where}[${i}]`, configKeys.rabbitmqExchange));
      });
    } else if (type === 'kafka') {
      const transport = this.object(value, at, configKeys.kafka);
      this.optional(transport.client, `${at}.client`, (v, where) => this.object(v, where, configKeys.kafkaClient));
    } else {
      this.fail(`${at}.type must be "rabbitmq" or "kafka", got ${describe(type)}`);
    }
    this.cloudEvents((value as { cloudEvents?: unknown }).cloudEvents, `${at}.cloudEvents`);
  }

  cloudEvents(value: unknown, at: string): void {
    this.optional(value, at, (v, where) => {
      const options = this.object(v, where, configKeys.cloudEvents);
      this.string(options.source, `${where}.source`, 'a URI reference naming the producer, e.g. "/orders"');
    });
  }
}

/** A value as the config file wrote it: strings quoted, so "500" and 500 differ. */
function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'function') return 'a function';
  try {
    const text = JSON.stringify(value);
    return text.length > 80 ? `${text.slice(0, 77)}...` : text;
  } catch {
    return String(value);
  }
}

import { ConfigError } from '@tidings/outbox';
import type { ISocketFactory, Kafka, KafkaConfig, LogEntry } from 'kafkajs';
import { requirePackage } from '../shared/optional-package.ts';
import { quietRequestQueue } from './kafkajs-request-queue.ts';

/** How much kafkajs says: `warn` (default) shows warnings and errors, `nothing` silences it. */
export type KafkaLogLevel = 'nothing' | 'error' | 'warn' | 'info' | 'debug';

/** One line of kafkajs's log, as given to a {@link KafkaLogger}. */
export interface KafkaLogEntry {
  readonly level: Exclude<KafkaLogLevel, 'nothing'>;
  /** The kafkajs component, e.g. `Producer`, `Connection`, `ConsumerGroup`. */
  readonly namespace: string;
  readonly message: string;
  /** kafkajs's structured fields (broker, groupId, error, stack, …). */
  readonly extra: Readonly<Record<string, unknown>>;
}

/**
 * Receives kafkajs's log lines at or above the configured level.
 *
 * @example
 * const logger: KafkaLogger = ({ level, namespace, message, extra }) => pino[level]({ namespace, ...extra }, message);
 */
export type KafkaLogger = (entry: KafkaLogEntry) => void;

/** Where Kafka is and how to talk to it; shared by the transport, the consumer helper and the test harness. */
export interface KafkaClientOptions {
  /** Bootstrap brokers: `host:port`, a comma-separated list, or an array. */
  readonly brokers: string | readonly string[];
  /** Shown in broker logs and quotas. Default `tidings`. */
  readonly clientId?: string;
  readonly ssl?: KafkaConfig['ssl'];
  readonly sasl?: KafkaConfig['sasl'];
  /** Opening a TCP connection gives up after this long. Default 3 000 ms. */
  readonly connectTimeoutMs?: number;
  /** A request without a response after this long fails (and the send reports `retry`). Default 30 000 ms. */
  readonly requestTimeoutMs?: number;
  /** Default `warn`. */
  readonly logLevel?: KafkaLogLevel;
  /** Default: one line on stderr per entry. */
  readonly logger?: KafkaLogger;
  /** Opens the client's sockets, e.g. through a proxy. Default: kafkajs's own. */
  readonly socketFactory?: ISocketFactory;
  /** Anything else of kafkajs's client configuration, applied over the settings above. */
  readonly kafkajs?: Omit<KafkaConfig, 'brokers'>;
}

let loaded: typeof import('kafkajs') | undefined;

/**
 * kafkajs, loaded at first use (it is an optional peer dependency); a MissingPackageError when it
 * is not installed. Every kafkajs client tidings makes comes through `createKafkaClient`, so a
 * missing client is reported when the transport or consumer is made.
 */
export function kafkajs(): typeof import('kafkajs') {
  if (loaded) return loaded;
  const module = requirePackage<typeof import('kafkajs')>('kafkajs', 'Kafka (kafkaTransport, consumeKafka, createKafkaClient)');
  quietRequestQueue();
  return (loaded = module);
}

// kafkajs's log levels, in its numbering (NOTHING 0 … DEBUG 5), so they are known before it is loaded.
const kafkajsLevel = { NOTHING: 0, ERROR: 1, WARN: 2, INFO: 4, DEBUG: 5 } as const;

const levels: Record<KafkaLogLevel, number> = {
  nothing: kafkajsLevel.NOTHING,
  error: kafkajsLevel.ERROR,
  warn: kafkajsLevel.WARN,
  info: kafkajsLevel.INFO,
  debug: kafkajsLevel.DEBUG,
};

/**
 * kafkajs warns about this for every idempotent producer with bounded retries. The transport bounds
 * them on purpose: it replaces a producer after any failure and resends, and duplicates are what
 * at-least-once delivery allows (the inbox removes them).
 */
const expectedWarnings = [/Limiting retries for the idempotent producer/];

/**
 * A kafkajs client configured the tidings way: quiet by default, short connect timeout, brokers
 * from a string or a list.
 *
 * @example
 * const kafka = createKafkaClient({ brokers: process.env.KAFKA_BROKERS!, logLevel: 'error' });
 * const admin = kafka.admin();
 */
export function createKafkaClient(options: KafkaClientOptions): Kafka {
  const level = options.logLevel ?? 'warn';
  if (!(level in levels)) throw new ConfigError('logLevel', `expected one of ${Object.keys(levels).join(', ')}; got ${JSON.stringify(level)}`);
  const logger = options.logger ?? defaultLogger;
  const config: KafkaConfig = {
    brokers: brokerList(options.brokers),
    clientId: options.clientId ?? 'tidings',
    connectionTimeout: options.connectTimeoutMs ?? 3_000,
    requestTimeout: options.requestTimeoutMs ?? 30_000,
    retry: { initialRetryTime: 100, maxRetryTime: 2_000, retries: 5 },
    logLevel: levels[level],
    logCreator: () => (entry: LogEntry) => {
      const { message, timestamp: _timestamp, logger: _logger, ...extra } = entry.log as LogEntry['log'] & { logger?: string };
      if (entry.level === kafkajsLevel.WARN && expectedWarnings.some((pattern) => pattern.test(message))) return;
      logger({ level: levelName(entry.level), namespace: entry.namespace, message, extra });
    },
    ...(options.ssl === undefined ? {} : { ssl: options.ssl }),
    ...(options.sasl === undefined ? {} : { sasl: options.sasl }),
    ...(options.socketFactory === undefined ? {} : { socketFactory: options.socketFactory }),
    ...options.kafkajs,
  };
  return new (kafkajs().Kafka)(config);
}

/** `"a:9092,b:9092"` or `["a:9092"]` as kafkajs's list; throws a ConfigError when empty. */
export function brokerList(brokers: string | readonly string[] | undefined): string[] {
  const list = (typeof brokers === 'string' ? brokers.split(',') : [...(brokers ?? [])]).map((b) => String(b).trim()).filter((b) => b !== '');
  if (list.length === 0) throw new ConfigError('brokers', 'give at least one bootstrap broker, e.g. "localhost:9092"');
  return list;
}

function levelName(level: number): KafkaLogEntry['level'] {
  if (level <= kafkajsLevel.ERROR) return 'error';
  if (level === kafkajsLevel.WARN) return 'warn';
  return level === kafkajsLevel.INFO ? 'info' : 'debug';
}

function defaultLogger({ level, namespace, message, extra }: KafkaLogEntry): void {
  const error = typeof extra.error === 'string' ? ` (${extra.error})` : '';
  const line = `kafkajs ${level} [${namespace}] ${message}${error}`;
  if (level === 'error') console.error(line);
  else console.warn(line);
}

import { ConfigError, createRelay, dropRelay, scheduleRetention, status, type Relay, type RelayEvent } from '@tidings/outbox';
import type { Logger } from 'pino';
import { databaseFlags, parseFlags, portNumber } from '../args.ts';
import { loadConfig } from '../config.ts';
import { openDatabase } from '../database.ts';
import { createLogger } from '../log.ts';
import { serveMetrics } from '../metrics-endpoint.ts';
import { requireMigrated } from '../migrated.ts';
import { relayNames } from '../relay-names.ts';
import { closest } from '../suggest.ts';
import { createTransport } from '../transports.ts';
import { UsageError } from '../usage-error.ts';

export const help = `tidings relay: run relay workers from a config file until SIGINT or SIGTERM
       tidings relay drop NAME: forget a relay that will not run again


  --config FILE    tidings.config.ts, .js or .json (default: the one in this folder)
  --worker ID      this worker's id (default: pid and a random suffix)
  --database URL   PostgreSQL URL (default: the config's "database", else DATABASE_URL, else the
                   embedded database in .tidings/)
  --schema NAME    schema (default: the config's "schema", else tidings)
  --metrics-port N serve the metrics in Prometheus text format at http://HOST:N/metrics
                   (default: the config's "metricsPort", else no endpoint)
  --metrics-host H the address the metrics endpoint listens on (default: the config's
                   "metricsHost", else localhost; 0.0.0.0 for a scraper on another machine)

Webhook signing secrets are decrypted with TIDINGS_SECRET_KEY (TIDINGS_SECRET_KEY_OLD during a key
rotation); the embedded database uses its own key file in .tidings/.

Start as many workers as you like, on any machines: they share each relay's partitions.
Each worker also runs retention (tidings cleanup) every 15 minutes by default: events older than 7
days that every relay has passed are deleted; the config's "retention" sets it, "retention": false
turns it off.
Logs are JSON lines, or readable lines on a terminal (TIDINGS_LOG_LEVEL sets the level).

\`tidings relay drop NAME\` deletes the relay's cursors, dead letters and parked keys, so retention no
longer waits for it; it refuses while a worker of that relay holds a lease.`;

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags('relay', args, {
    ...databaseFlags,
    config: { type: 'string' },
    worker: { type: 'string' },
    'metrics-port': { type: 'string' },
    'metrics-host': { type: 'string' },
  });
  const metricsPortFlag = portNumber('metrics-port', values['metrics-port']);
  if (values.help) {
    console.log(help);
    return 0;
  }
  if (positionals[0] === 'drop') return drop(positionals.slice(1), values.database, values.schema);
  if (positionals.length > 0) throw new UsageError(`tidings relay takes no arguments but "drop NAME", got "${positionals.join(' ')}"`);
  const log = createLogger();
  // `tidings relay` owns its process's output: warnings (a client library's deprecation or timer
  // warning, also while the config loads) go into the JSON log instead of plain text on stderr.
  process.removeAllListeners('warning');
  process.on('warning', (warning) => log.warn({ warning: warning.name, code: (warning as { code?: string }).code }, warning.message));
  const { config, file } = await loadConfig(values.config);
  const schema = values.schema ?? config.schema;
  const { db, where, close, keyring } = await openDatabase(values.database ?? config.database ?? process.env.DATABASE_URL, undefined, (message) => log.warn(message), config.pool);
  const stops: (() => Promise<void>)[] = [];
  try {
    await requireMigrated(db, schema, where, Boolean(config.webhooks));
    const metricsPort = metricsPortFlag ?? config.metricsPort;
    if (metricsPort !== undefined) {
      const endpoint = await serveMetrics({ port: metricsPort, host: values['metrics-host'] ?? config.metricsHost, db, schema, log });
      stops.push(() => endpoint.stop());
      log.info({ url: endpoint.url }, 'metrics endpoint serving');
    }
    for (const [i, relayConfig] of (config.relays ?? []).entries()) {
      const { transport: transportConfig, name, ...options } = relayConfig;
      // A value the loader let through but a factory refuses is still a mistake in the file: exit 2.
      const inFile = (error: unknown): never => {
        if (error instanceof ConfigError) throw new UsageError(`config ${file}: relays[${i}] (${name}): ${error.message}`);
        throw error;
      };
      const transport = await createTransport(transportConfig, name, log).catch(inFile);
      let relay: Relay;
      try {
        relay = createRelay({
          ...options,
          name,
          database: db,
          schema,
          transport,
          workerId: values.worker,
          onEvent: (event) => logRelayEvent(log, name, event),
        });
      } catch (error) {
        await transport.close().catch(() => {});
        inFile(error);
      }
      await relay!.start();
      stops.push(() => relay.stop());
      log.info({ relay: name, transport: transport.name, worker: relay!.worker }, 'relay started');
    }
    if (config.retention !== false) {
      const retention = scheduleRetention(db, {
        ...config.retention,
        schema,
        onRun: ({ events, deadLetters }) => {
          if (events > 0 || deadLetters > 0) log.info({ events, deadLetters }, 'retention: deleted');
        },
        onError: (error) => log.warn({ err: error.message }, 'retention failed; it runs again at its next interval'),
      });
      stops.push(() => retention.stop());
    }
    if (config.webhooks) {
      const { startWebhookDispatcher } = await import('../../webhook/index.ts');
      const dispatcher = await startWebhookDispatcher({
        ...(typeof config.webhooks === 'object' ? config.webhooks : {}),
        database: db,
        schema,
        keyring: await keyring(),
        onEvent: (event) => {
          if (event.type === 'error') log.warn({ endpoint: event.endpointId, err: event.error.message }, 'webhook error');
          // The full error, resolved addresses included, is for the operator's log only: the
          // endpoint's stored last error (which its tenant may see) leaves them out.
          else if (event.type === 'attempt') {
            if (event.attempt.error) log.warn({ endpoint: event.endpointId, eventId: event.attempt.eventId, status: event.attempt.status, err: event.attempt.error.message }, 'webhook attempt failed');
          } else if (event.type !== 'relay') log.info({ ...event }, `webhook ${event.type}`);
        },
      });
      stops.push(() => dispatcher.stop());
      log.info('webhook dispatcher started');
    }
  } catch (error) {
    await Promise.allSettled(stops.map((stop) => stop()));
    await close();
    throw error;
  }
  log.info({ config: file, database: where }, 'tidings relay running; SIGINT or SIGTERM stops it');
  await shutdownSignal(log);
  await Promise.allSettled(stops.map((stop) => stop()));
  await close();
  log.info('stopped');
  return 0;
}

function logRelayEvent(log: Logger, relay: string, event: RelayEvent): void {
  switch (event.type) {
    case 'delivered':
      log.debug({ relay, partition: event.partition, count: event.count }, 'delivered');
      return;
    case 'retry':
      log.warn({ relay, partition: event.partition, eventId: event.eventId, attempt: event.attempt, delayMs: event.delayMs, err: event.error.message }, 'event refused; retrying');
      return;
    case 'unavailable':
      log.warn({ relay, partition: event.partition, attempt: event.attempt, delayMs: event.delayMs, err: event.error.message }, 'destination unavailable; waiting');
      return;
    case 'available':
      log.info({ relay, partition: event.partition, unavailableMs: event.unavailableMs }, 'destination available again');
      return;
    case 'key-parked':
      log.warn({ relay, partition: event.partition, key: event.key, eventId: event.eventId }, 'key parked behind a dead letter');
      return;
    case 'key-released':
      log.info({ relay, partition: event.partition, key: event.key, delivered: event.delivered }, 'parked key released');
      return;
    case 'dead-letter':
      log.error({ relay, partition: event.partition, eventId: event.eventId, err: event.error.message }, 'dead letter');
      return;
    case 'error':
      log.error({ relay, partition: event.partition, err: event.error.message }, 'relay error');
      return;
    default:
      log.info({ relay, partition: event.partition }, event.type);
  }
}

/** Resolves on the first SIGINT/SIGTERM (graceful stop); a second one exits at once. */
function shutdownSignal(log: Logger): Promise<void> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        log.warn({ signal }, 'second signal: exiting without waiting');
        process.exit(130);
      }
      stopping = true;
      log.info({ signal }, 'stopping: finishing the batches in flight');
      resolve();
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/** `tidings relay drop NAME`: forgets a relay, unless one of its workers holds a lease. */
async function drop(names: string[], database: string | undefined, schema: string | undefined): Promise<number> {
  if (names.length !== 1) throw new UsageError('tidings relay drop takes one relay name: tidings relay drop NAME');
  const name = names[0]!;
  const { db, close } = await openDatabase(database ?? process.env.DATABASE_URL);
  try {
    const known = await relayNames(db, schema);
    if (!known.includes(name)) {
      const hint = closest(name, known);
      throw new UsageError(`no relay named "${name}" has run on this database${hint ? ` (did you mean "${hint}"?)` : ''}; relays: ${known.join(', ') || 'none'}`);
    }
    const report = (await status(db, { schema })).relays.find((r) => r.relay === name);
    const now = Date.now();
    const holders = [...new Set((report?.partitions ?? []).filter((p) => p.owner !== null && p.leaseUntil !== null && p.leaseUntil.getTime() > now).map((p) => p.owner!))];
    if (holders.length > 0) throw new UsageError(`relay "${name}" is running (workers holding leases: ${holders.sort().join(', ')}); stop its workers first`);
    await dropRelay(db, { schema, relay: name });
    console.log(`dropped relay ${name}: its cursors, dead letters and parked keys are gone, and retention no longer waits for it`);
    return 0;
  } finally {
    await close();
  }
}

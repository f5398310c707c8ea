/**
 * Worker processes that tests and the bench kill, pause and watch: the one relay worker
 * (relay-worker.ts, started by `startRelayWorker`) and any other script that prints JSON lines
 * (`startWorkerScript`, e.g. the Kafka consumer worker).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { RelayOptions } from '@tidings/outbox';
import type { KafkaTransportOptions } from '@tidings/relays/kafka';
import type { RabbitmqTransportOptions } from '@tidings/relays/rabbitmq';
import type { WebhookTransportOptions } from '@tidings/relays/webhook';
import { sourceNodeArgs } from './mutants.ts';

/** The destination of a relay worker; options are passed as JSON, so functions in them are lost. */
export type WorkerTransport =
  /** The sink table of table-transport.ts, in the database at `url`. */
  | { readonly kind: 'table'; readonly url: string; readonly schema: string }
  /** An in-memory broker of the worker's own that keeps nothing (the bench's destination). */
  | { readonly kind: 'memory' }
  | { readonly kind: 'rabbitmq'; readonly options: RabbitmqTransportOptions }
  | { readonly kind: 'webhook'; readonly options: WebhookTransportOptions }
  /** `proxyPort`: every broker connection goes to this loopback port (a fault proxy) instead. */
  | { readonly kind: 'kafka'; readonly options: KafkaTransportOptions; readonly proxyPort?: number };

/** What relay-worker.ts runs, passed to it as JSON in TIDINGS_RELAY_WORKER. */
export interface RelayWorkerConfig {
  readonly databaseUrl: string;
  /** Connections of the relay's pool. Default 4. */
  readonly databasePoolSize?: number;
  /** Every relay option that is data (`name`, `schema`, `workerId`, timings, `retry`, `topics`…). */
  readonly relay: Omit<RelayOptions, 'database' | 'transport' | 'onEvent'>;
  readonly transport: WorkerTransport;
  /** Kill itself (SIGKILL) at this send; see relay-worker.ts. */
  readonly crash?: { readonly when: 'after-ack' | 'in-flight'; readonly send: number };
  /** Relay event types not printed. Default `['retry']`. */
  readonly omit?: readonly string[];
  /** Grace of `relay.stop()` on SIGTERM. Default 2 000 ms. */
  readonly stopGraceMs?: number;
}

/** Relay timings short enough for tests: leases move within seconds. */
export const testRelayTimings = { batchSize: 50, leaseTtlMs: 2_000, heartbeatIntervalMs: 300, pollIntervalMs: 100 } as const;

/** One JSON line a worker printed (a line that is not JSON becomes `{ type: 'output', text }`). */
export interface WorkerLine {
  readonly type: string;
  readonly [field: string]: unknown;
}

/** A worker running as its own process. */
export interface WorkerProcess {
  readonly name: string;
  readonly process: ChildProcess;
  readonly lines: readonly WorkerLine[];
  /** Calls `listener` for every line from now on. */
  onLine(listener: (line: WorkerLine) => void): void;
  /** Partitions this relay worker holds according to its lease lines. */
  owned(): Set<number>;
  /** Events this relay worker reported delivered so far. */
  delivered(): number;
  /** Resolves with the first line (already printed or to come) that matches; rejects if it exits first. */
  waitFor(predicate: (line: WorkerLine) => boolean, timeoutMs?: number): Promise<WorkerLine>;
  /** Resolves once this relay worker reported at least `count` events delivered. */
  waitForDelivered(count: number, timeoutMs?: number): Promise<void>;
  signal(name: NodeJS.Signals): void;
  /** The exit code, or the signal that ended it. */
  readonly exited: Promise<number | string | null>;
  /** Sends `signal` (unless it already exited) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** SIGTERM (a graceful stop), then SIGKILL if it is still running after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

export interface WorkerSpawnOptions {
  /** Added to this process's environment. */
  readonly env?: Record<string, string>;
  /** `pipe`: the caller must read `process.stderr` to its end itself. Default `inherit`. */
  readonly stderr?: 'inherit' | 'pipe';
}

const relayWorkerScript = fileURLToPath(new URL('./relay-worker.ts', import.meta.url));

/**
 * Starts relay-worker.ts on this Node from the TypeScript sources.
 *
 * @example
 * const worker = startRelayWorker({ databaseUrl, relay: { name: 'r', schema, workerId: 'a', ...testRelayTimings }, transport: { kind: 'memory' } });
 * await worker.waitFor((line) => line.type === 'started');
 */
export function startRelayWorker(config: RelayWorkerConfig, options: WorkerSpawnOptions = {}): WorkerProcess {
  const name = config.relay.workerId ?? config.relay.name;
  return startWorkerScript(relayWorkerScript, name, { ...options, env: { ...options.env, TIDINGS_RELAY_WORKER: JSON.stringify(config) } });
}

/** Starts `script` (a TypeScript file printing JSON lines) on this Node from the TypeScript sources. */
export function startWorkerScript(script: string, name: string, options: WorkerSpawnOptions = {}): WorkerProcess {
  const child = spawn(process.execPath, sourceNodeArgs(script), {
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', options.stderr ?? 'inherit'],
  });
  const lines: WorkerLine[] = [];
  const listeners = new Set<(line: WorkerLine) => void>();
  const ended = (): boolean => child.exitCode !== null || child.signalCode !== null;
  let buffer = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
      const text = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      let line: WorkerLine;
      try {
        line = JSON.parse(text) as WorkerLine;
      } catch {
        line = { type: 'output', text };
      }
      lines.push(line);
      for (const listener of listeners) listener(line);
    }
  });
  // 'close', not 'exit': every line it printed has been read by then.
  const exited = new Promise<number | string | null>((resolve) => child.once('close', (code, signal) => resolve(signal ?? code)));
  const delivered = (): number => lines.reduce((sum, line) => sum + (line.type === 'delivered' ? Number(line.count) : 0), 0);

  const waitFor = (predicate: (line: WorkerLine) => boolean, timeoutMs = 30_000): Promise<WorkerLine> =>
    new Promise((resolve, reject) => {
      const found = lines.find(predicate);
      if (found) return resolve(found);
      const done = (error: Error | undefined, line?: WorkerLine): void => {
        listeners.delete(listener);
        clearTimeout(timer);
        if (error) reject(error);
        else resolve(line!);
      };
      const listener = (line: WorkerLine): void => {
        if (predicate(line)) done(undefined, line);
      };
      const timer = setTimeout(() => done(new Error(`worker ${name}: nothing matched within ${timeoutMs} ms; it said: ${JSON.stringify(lines.slice(-10))}`)), timeoutMs);
      listeners.add(listener);
      void exited.then((how) => done(new Error(`worker ${name} exited (${how}) before printing the line awaited; it said: ${JSON.stringify(lines.slice(-10))}`)));
    });

  return {
    name,
    process: child,
    lines,
    exited,
    onLine: (listener) => void listeners.add(listener),
    owned() {
      const held = new Set<number>();
      for (const line of lines) {
        if (line.type === 'lease-acquired') held.add(line.partition as number);
        if (line.type === 'lease-released' || line.type === 'lease-lost') held.delete(line.partition as number);
      }
      return held;
    },
    delivered,
    waitFor,
    async waitForDelivered(count, timeoutMs = 30_000) {
      await waitFor(() => delivered() >= count, timeoutMs).catch((error: Error) => {
        throw new Error(`worker ${name} delivered only ${delivered()} of ${count} events: ${error.message}`);
      });
    },
    signal(signal) {
      child.kill(signal);
    },
    async kill(signal = 'SIGKILL') {
      if (!ended()) child.kill(signal);
      await exited;
    },
    async stop(graceMs = 15_000) {
      if (!ended()) child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (!ended()) child.kill('SIGKILL');
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

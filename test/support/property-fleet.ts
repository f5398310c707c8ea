/**
 * Relay workers of one property run, as child processes (test/support/relay-worker.ts) that the
 * run kills (SIGKILL), pauses past their lease (SIGSTOP) and continues (SIGCONT).
 */
import type { ChildProcess } from 'node:child_process';
import { startRelayWorker, type WorkerTransport } from './worker-process.ts';

/** The relay workers of a run, whatever they run in. */
export interface RelayFleet {
  /** Workers started and not killed (running or paused). */
  readonly live: number;
  readonly paused: number;
  /** Lease time of the workers: a pause must outlast it. */
  readonly leaseMs: number;
  /** Starts one more worker and waits until it runs. */
  join(): Promise<void>;
  /** Kills one running worker at once, mid-whatever it was doing. */
  crash(pick: number): Promise<void>;
  /** Freezes one running worker (SIGSTOP); `resume` continues it after its lease ran out. */
  pause(pick: number): Promise<void>;
  /** Continues every paused worker, once it has been paused longer than its lease. */
  resume(): Promise<void>;
  /** What went wrong with the workers on their own (a worker that died unasked); empty when fine. */
  problems(): string[];
  close(): Promise<void>;
}

export interface ProcessFleetOptions {
  readonly databaseUrl: string;
  readonly schema: string;
  readonly relay: string;
  /** The destination of the worker with this id. */
  readonly transport: (workerId: string) => WorkerTransport;
  readonly leaseMs?: number;
  readonly heartbeatMs?: number;
  readonly pollMs?: number;
  readonly batch?: number;
}

interface Worker {
  readonly id: string;
  readonly child: ChildProcess;
  readonly exited: Promise<void>;
  readonly output: string[];
  state: 'starting' | 'running' | 'paused' | 'killed' | 'exited';
  /** It said `started`. */
  ready: boolean;
  pausedAt: number;
}

export function processFleet(options: ProcessFleetOptions): RelayFleet {
  const leaseMs = options.leaseMs ?? 1_000;
  const workers: Worker[] = [];
  const problems: string[] = [];
  let started = 0;

  const running = (): Worker[] => workers.filter((w) => w.state === 'running');

  const spawnWorker = (): Worker => {
    const id = `w${++started}`;
    const relayWorker = startRelayWorker(
      {
        databaseUrl: options.databaseUrl,
        relay: {
          name: options.relay,
          schema: options.schema,
          workerId: id,
          leaseTtlMs: leaseMs,
          heartbeatIntervalMs: options.heartbeatMs ?? Math.floor(leaseMs / 5),
          pollIntervalMs: options.pollMs ?? 100,
          batchSize: options.batch ?? 20,
          // The default policy (10 retries), its delays scaled down: outages are waited for, never
          // counted, so however long they last they must make no dead letter (one fails the run).
          retry: { minDelayMs: 20, maxDelayMs: 300 },
        },
        transport: options.transport(id),
        omit: ['delivered', 'retry'],
        stopGraceMs: 1_000,
      },
      { stderr: 'pipe' },
    );
    const output: string[] = [];
    const child = relayWorker.process;
    const keep = (line: string): void => {
      output.push(line);
      if (output.length > 40) output.splice(0, output.length - 40);
    };
    relayWorker.onLine((line) => {
      if (line.type === 'dead-letter') problems.push(`relay worker ${id} dead-lettered an event: ${JSON.stringify(line)}`);
      if (line.type === 'started') worker.ready = true;
      keep(JSON.stringify(line));
    });
    eachLine(child.stderr!, keep);
    const worker: Worker = {
      id,
      child,
      output,
      state: 'starting',
      ready: false,
      pausedAt: 0,
      exited: new Promise<void>((resolve) =>
        child.on('exit', (code, signal) => {
          if (worker.state !== 'killed') {
            problems.push(`relay worker ${id} exited by itself (code ${code}, signal ${signal}); its last output: ${output.slice(-8).join(' | ')}`);
          }
          worker.state = worker.state === 'killed' ? 'killed' : 'exited';
          resolve();
        }),
      ),
    };
    workers.push(worker);
    return worker;
  };

  const waitStarted = async (worker: Worker): Promise<void> => {
    const deadline = Date.now() + 30_000;
    while (!worker.ready) {
      if (worker.state === 'exited') throw new Error(`relay worker ${worker.id} failed to start: ${worker.output.join(' | ')}`);
      if (Date.now() > deadline) throw new Error(`relay worker ${worker.id} did not start within 30 s: ${worker.output.join(' | ')}`);
      await new Promise((r) => setTimeout(r, 25));
    }
    if (worker.state === 'starting') worker.state = 'running';
  };

  const kill = async (worker: Worker): Promise<void> => {
    if (worker.state === 'killed' || worker.state === 'exited') return;
    worker.state = 'killed';
    worker.child.kill('SIGKILL');
    await worker.exited;
  };

  return {
    leaseMs,
    get live() {
      return workers.filter((w) => w.state === 'running' || w.state === 'paused' || w.state === 'starting').length;
    },
    get paused() {
      return workers.filter((w) => w.state === 'paused').length;
    },
    async join() {
      await waitStarted(spawnWorker());
    },
    async crash(pick) {
      const candidates = running();
      if (candidates.length > 0) await kill(candidates[pick % candidates.length]!);
    },
    async pause(pick) {
      const candidates = running();
      if (candidates.length === 0) return;
      const worker = candidates[pick % candidates.length]!;
      worker.child.kill('SIGSTOP');
      worker.state = 'paused';
      worker.pausedAt = Date.now();
    },
    async resume() {
      for (const worker of workers.filter((w) => w.state === 'paused')) {
        const left = worker.pausedAt + leaseMs * 1.5 - Date.now();
        if (left > 0) await new Promise((r) => setTimeout(r, left));
        worker.child.kill('SIGCONT');
        worker.state = 'running';
      }
    },
    problems: () => [...problems],
    async close() {
      for (const worker of workers) {
        if (worker.state === 'paused') worker.child.kill('SIGCONT');
      }
      await Promise.all(workers.map(kill));
    },
  };
}

function eachLine(stream: NodeJS.ReadableStream, onLine: (line: string) => void): void {
  let buffer = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buffer += chunk;
    let newline;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      if (line !== '') onLine(line);
    }
  });
}

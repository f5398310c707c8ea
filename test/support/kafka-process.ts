import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { services } from './env.ts';
import { sourceNodeArgs } from './mutants.ts';

/** One JSON line a worker printed. */
export interface WorkerLine {
  readonly type: string;
  readonly [field: string]: unknown;
}

/** A relay or consumer worker running as its own process, so that a test can SIGKILL it. */
export interface KafkaWorkerProcess {
  readonly name: string;
  readonly process: ChildProcess;
  readonly lines: readonly WorkerLine[];
  /** Resolves with the first line (already printed or to come) that matches. */
  waitFor(predicate: (line: WorkerLine) => boolean, timeoutMs?: number): Promise<WorkerLine>;
  /** Resolves with the exit code or signal once the process has exited. */
  readonly exited: Promise<number | string | null>;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

const scripts = {
  relay: fileURLToPath(new URL('./kafka-relay-worker.ts', import.meta.url)),
  consumer: fileURLToPath(new URL('./kafka-consumer-worker.ts', import.meta.url)),
};

/**
 * Starts `kafka-relay-worker.ts` or `kafka-consumer-worker.ts` on this Node, from the TypeScript
 * sources, configured through `env` (see each script for its variables).
 */
export function startKafkaWorker(kind: keyof typeof scripts, name: string, env: Record<string, string>): KafkaWorkerProcess {
  const child = spawn(process.execPath, sourceNodeArgs(scripts[kind]), {
    env: { ...process.env, DATABASE_URL: services.postgres, TIDINGS_WORKER: name, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: WorkerLine[] = [];
  const waiters = new Set<() => void>();
  let buffer = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    for (let newline = buffer.indexOf('\n'); newline >= 0; newline = buffer.indexOf('\n')) {
      const text = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      try {
        lines.push(JSON.parse(text) as WorkerLine);
      } catch {
        lines.push({ type: 'output', text });
      }
      for (const wake of waiters) wake();
    }
  });
  const exited = new Promise<number | string | null>((resolve) => child.once('exit', (code, signal) => resolve(signal ?? code)));
  void exited.then(() => {
    for (const wake of waiters) wake();
  });
  return {
    name,
    process: child,
    lines,
    exited,
    waitFor(predicate, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const found = lines.find(predicate);
          if (found || child.exitCode !== null || child.signalCode !== null) {
            waiters.delete(check);
            clearTimeout(timer);
            if (found) resolve(found);
            else reject(new Error(`worker ${name} exited (${child.signalCode ?? child.exitCode}) before printing the line awaited; it said: ${JSON.stringify(lines.slice(-5))}`));
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`worker ${name}: nothing matched within ${timeoutMs} ms; it said: ${JSON.stringify(lines.slice(-5))}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    async kill(signal = 'SIGKILL') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}

import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { services } from './env.ts';
import { sourceNodeArgs } from './mutants.ts';

export interface WorkerLine {
  type: string;
  partition?: number;
  error?: string;
}

export interface WorkerProcess {
  readonly id: string;
  readonly process: ChildProcess;
  readonly lines: WorkerLine[];
  /** Partitions this worker holds according to what it reported. */
  owned(): Set<number>;
  waitFor(predicate: (line: WorkerLine) => boolean, timeoutMs?: number): Promise<WorkerLine>;
  signal(name: NodeJS.Signals): void;
  exited: Promise<number | null>;
}

const script = fileURLToPath(new URL('./relay-worker.ts', import.meta.url));

/** Starts a relay worker process running the TypeScript sources directly on this Node. */
export function startWorker(id: string, env: { schema: string; relay: string; leaseMs?: number; heartbeatMs?: number }): WorkerProcess {
  const child = spawn(process.execPath, sourceNodeArgs(script), {
    env: {
      ...process.env,
      DATABASE_URL: services.postgres,
      TIDINGS_SCHEMA: env.schema,
      TIDINGS_RELAY: env.relay,
      TIDINGS_WORKER: id,
      TIDINGS_LEASE_MS: String(env.leaseMs ?? 2000),
      TIDINGS_HEARTBEAT_MS: String(env.heartbeatMs ?? 300),
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: WorkerLine[] = [];
  const waiters = new Set<() => void>();
  let buffer = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    let newline;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const text = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      try {
        lines.push(JSON.parse(text) as WorkerLine);
      } catch {
        lines.push({ type: 'output', error: text });
      }
      for (const wake of waiters) wake();
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    id,
    process: child,
    lines,
    exited,
    owned() {
      const held = new Set<number>();
      for (const line of lines) {
        if (line.type === 'lease-acquired') held.add(line.partition!);
        if (line.type === 'lease-released' || line.type === 'lease-lost') held.delete(line.partition!);
      }
      return held;
    },
    waitFor(predicate, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = (): boolean => {
          const found = lines.find(predicate);
          if (!found) return false;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(found);
          return true;
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`worker ${id}: nothing matched within ${timeoutMs} ms; it said: ${JSON.stringify(lines.slice(-10))}`));
        }, timeoutMs);
        if (!check()) waiters.add(check);
      });
    },
    signal(name) {
      child.kill(name);
    },
  };
}

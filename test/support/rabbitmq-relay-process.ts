import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { services } from './env.ts';
import { sourceNodeArgs } from './mutants.ts';

export interface RelayProcess {
  readonly process: ChildProcess;
  /** Events delivered so far according to the process's own reports. */
  delivered(): number;
  /** Resolves once the process has reported at least `count` delivered events. */
  waitForDelivered(count: number, timeoutMs?: number): Promise<void>;
  kill(signal: NodeJS.Signals): Promise<void>;
}

const script = fileURLToPath(new URL('./rabbitmq-relay-worker.ts', import.meta.url));

/** Starts a relay worker process with the RabbitMQ transport, running the TypeScript sources on this Node. */
export function startRelayProcess(env: { schema: string; relay: string; topic: string; worker: string }): RelayProcess {
  const child = spawn(process.execPath, sourceNodeArgs(script), {
    env: {
      ...process.env,
      DATABASE_URL: services.postgres,
      RABBITMQ_URL: services.rabbitmq,
      TIDINGS_SCHEMA: env.schema,
      TIDINGS_RELAY: env.relay,
      TIDINGS_TOPIC: env.topic,
      TIDINGS_WORKER: env.worker,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let delivered = 0;
  let buffer = '';
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    buffer += chunk;
    let newline;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline);
      buffer = buffer.slice(newline + 1);
      try {
        const event = JSON.parse(line) as { type: string; count?: number };
        if (event.type === 'delivered') delivered += event.count ?? 0;
      } catch {
        // not a JSON line
      }
    }
  });
  return {
    process: child,
    delivered: () => delivered,
    async waitForDelivered(count, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (delivered < count) {
        if (Date.now() > deadline) throw new Error(`relay ${env.worker} delivered only ${delivered} of ${count} events within ${timeoutMs} ms`);
        if (child.exitCode !== null) throw new Error(`relay ${env.worker} exited with ${child.exitCode} after delivering ${delivered}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    async kill(signal) {
      if (child.exitCode === null) child.kill(signal);
      await exited;
    },
  };
}

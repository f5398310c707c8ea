import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { waitUntil } from './check.ts';
import { services } from './env.ts';
import { sourceNodeArgs } from './mutants.ts';

const script = fileURLToPath(new URL('./feed-guard-process.ts', import.meta.url));

/** What the feed process reports (see feed-guard-process.ts), since its last `reset`. */
export interface GuardStats {
  readonly queries: number;
  readonly feedReads: number;
  /** The longest the process's event loop was late, in ms (perf_hooks.monitorEventLoopDelay). */
  readonly loopDelayMaxMs: number;
  /** What the feeds' onEvent heard: server-side errors, each of which a client saw as a 5xx or a cut stream. */
  readonly errors: string[];
}

/** The SSE feed (`/events`) and the polling feed (`/feed`) in a child process, watched from outside. */
export interface GuardedFeed {
  /** http://127.0.0.1:port */
  readonly origin: string;
  /** Sends `reset` or `stats`; fails, saying so, when the process cannot answer within 5 s (a stalled event loop). */
  command(line: 'reset' | 'stats'): Promise<GuardStats>;
  /** Ends the process (SIGKILL: a frozen process never reads its stdin again). */
  stop(): Promise<void>;
}

/** Starts the feeds of `schema` in a process of their own; `options` are passed to the feeds. */
export async function startGuardedFeed(schema: string, options: { sse?: object; polling?: object } = {}): Promise<GuardedFeed> {
  const child: ChildProcess = spawn(process.execPath, sourceNodeArgs(script), {
    env: { ...process.env, DATABASE_URL: services.postgres, TIDINGS_SCHEMA: schema, FEED_OPTIONS: JSON.stringify(options) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const replies: Array<Record<string, unknown>> = [];
  createInterface({ input: child.stdout! }).on('line', (line) => replies.push(JSON.parse(line)));
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
  };
  try {
    const listening = await waitUntil('the feed process listens', async () => replies.find((r) => r['type'] === 'listening'));
    return {
      origin: `http://127.0.0.1:${String(listening['port'])}`,
      async command(line) {
        const before = replies.length;
        child.stdin!.write(`${line}\n`);
        const reply = await waitUntil(
          `the feed process answers "${line}" (it cannot while its event loop is stalled)`,
          async () => replies.slice(before).find((r) => r['type'] === line),
          5_000,
        );
        return reply as unknown as GuardStats;
      },
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * The `tidings` command as a user runs it, for the CLI tests: from its TypeScript sources on this
 * Node (or from another entry file, such as a packed package's bin/tidings.js), in a folder of
 * the test's choice, without DATABASE_URL unless the test sets it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { sourceNodeArgs } from './mutants.ts';

const main = fileURLToPath(new URL('../../packages/relays/src/cli/main.ts', import.meta.url));

export interface CliOptions {
  /** Added to the environment (after DATABASE_URL is emptied, so a test can set it again). */
  readonly env?: Record<string, string>;
  /** Variables of this process's environment the command must not inherit (`env` may still set them). */
  readonly unset?: readonly string[];
  /** Where it runs. Default the system's temp folder. */
  readonly cwd?: string;
  /** `runTidings` fails after this long and kills the command. Default 120 000 ms. */
  readonly timeoutMs?: number;
  /** The entry file to run with plain `node` instead of the TypeScript sources (a built bin/tidings.js). */
  readonly script?: string;
}

/** How a run of the command ended, and everything it wrote. */
export interface CliRun {
  /** The exit code; null when a signal ended it. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The command while it runs. */
export interface CliProcess {
  readonly child: ChildProcess;
  /** Resolves once it exited and every byte it wrote was read. */
  readonly exited: Promise<CliRun>;
  stdout(): string;
  stderr(): string;
  signal(signal: NodeJS.Signals): void;
  /** SIGKILLs it unless it already exited, and waits for the exit. */
  kill(): Promise<CliRun>;
}

/**
 * Starts `tidings <args>` and returns at once, for commands that run until stopped.
 *
 * @example
 * const relay = startTidings(['relay', '--config', file], { env: { TIDINGS_LOG_LEVEL: 'info' } });
 * relay.signal('SIGTERM');
 * expect((await relay.exited).code).toBe(0);
 */
export function startTidings(args: readonly string[], options: CliOptions = {}): CliProcess {
  const inherited: NodeJS.ProcessEnv = { ...process.env };
  for (const name of options.unset ?? []) delete inherited[name];
  const env = { ...inherited, DATABASE_URL: '', ...options.env };
  const nodeArgs = options.script === undefined ? sourceNodeArgs(main) : [options.script];
  const child = spawn(process.execPath, [...nodeArgs, ...args], { cwd: options.cwd ?? tmpdir(), env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  // 'close' rather than 'exit': by then every byte the process wrote has been read.
  const exited = new Promise<CliRun>((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return {
    child,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
    signal: (signal) => void child.kill(signal),
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      return exited;
    },
  };
}

/**
 * Runs `tidings <args>` to its end. Rejects, after killing it, if it runs longer than `timeoutMs`.
 *
 * @example
 * const run = await runTidings(['migrate', '--database', url], { unset: ['TIDINGS_SECRET_KEY'] });
 * expect(run.code).toBe(0);
 */
export async function runTidings(args: readonly string[], options: CliOptions = {}): Promise<CliRun> {
  const run = startTidings(args, options);
  const timeoutMs = options.timeoutMs ?? 120_000;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      void run.kill();
      reject(new Error(`tidings ${args.join(' ')} did not exit within ${timeoutMs} ms; stdout: ${run.stdout().slice(-500)}; stderr: ${run.stderr().slice(-500)}`));
    }, timeoutMs);
  });
  try {
    return await Promise.race([run.exited, timedOut]);
  } finally {
    clearTimeout(timer);
  }
}

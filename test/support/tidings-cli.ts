import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { sourceNodeArgs } from './mutants.ts';

const main = fileURLToPath(new URL('../../packages/relays/src/cli/main.ts', import.meta.url));

export interface TidingsRun {
  readonly exited: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  signal(signal: NodeJS.Signals): void;
  /** SIGKILL unless it ended, then wait for it. */
  kill(): Promise<unknown>;
}

/** Starts the `tidings` command from its TypeScript sources on this Node, in `cwd`, logging at info level. */
export function spawnTidings(args: string[], cwd: string): TidingsRun {
  const child = spawn(process.execPath, [...sourceNodeArgs(main), ...args], {
    cwd,
    env: { ...process.env, DATABASE_URL: '', TIDINGS_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  return {
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

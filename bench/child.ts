import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export type Message = Record<string, unknown> & { readonly type: string };

/**
 * A bench helper process (bench/workers/*.ts) that speaks JSON lines: messages from it on its
 * stdout, commands to it on its stdin. Its stderr is passed through.
 */
export interface Child {
  readonly pid: number;
  /** Calls `listener` for every message from now on. */
  onMessage(listener: (message: Message) => void): void;
  /** The next message of this type. */
  next(type: string, timeoutMs?: number): Promise<Message>;
  send(command: Record<string, unknown>): void;
  /** Closes its stdin (the worker's cue to stop) and waits for it to exit; kills it after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts `bench/workers/<name>.ts` with the same Node and the workspace sources. */
export function startChild(name: string, args: readonly string[] = []): Child {
  const file = new URL(`./workers/${name}.ts`, import.meta.url).pathname;
  const proc = spawn(process.execPath, ['--conditions=tidings-source', '--no-warnings', file, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const listeners = new Set<(message: Message) => void>();
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    let message: Message;
    try {
      message = JSON.parse(line) as Message;
    } catch {
      process.stderr.write(`[${name}] ${line}\n`);
      return;
    }
    for (const listener of listeners) listener(message);
  });

  return {
    pid: proc.pid!,
    onMessage: (listener) => void listeners.add(listener),
    next(type, timeoutMs = 60_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => done(new Error(`bench: ${name} sent no "${type}" within ${timeoutMs} ms`)), timeoutMs);
        const listener = (message: Message): void => {
          if (message.type === type) done(undefined, message);
          else if (message.type === 'error') done(new Error(`bench: ${name} failed: ${String(message.message)}`));
        };
        void exited.then((code) => done(new Error(`bench: ${name} exited (${code}) before sending "${type}"`)));
        function done(error: Error | undefined, message?: Message): void {
          clearTimeout(timer);
          listeners.delete(listener);
          if (error) reject(error);
          else resolve(message!);
        }
        listeners.add(listener);
      });
    },
    send(command) {
      proc.stdin!.write(`${JSON.stringify(command)}\n`);
    },
    async stop(graceMs = 15_000) {
      proc.stdin!.end();
      const timer = setTimeout(() => kill(proc), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

function kill(proc: ChildProcess): void {
  if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
}

/** In a worker: sends one message to the parent. */
export function tell(message: Message): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** In a worker: calls `handler` for each command line from the parent; resolves when the parent closes stdin. */
export async function commands(handler: (command: Record<string, unknown>) => Promise<void>): Promise<void> {
  for await (const line of createInterface({ input: process.stdin })) {
    if (line.trim() === '') continue;
    try {
      await handler(JSON.parse(line) as Record<string, unknown>);
    } catch (error) {
      tell({ type: 'error', message: (error as Error).stack ?? String(error) });
    }
  }
}

/**
 * A throwaway PostgreSQL server of the machine's own installation, for the few tests that need a
 * server setting the shared one does not have (one that only a restart changes, such as
 * max_prepared_transactions). It runs as the `postgres` user when the tests run as root (initdb
 * refuses root), listens on 127.0.0.1 at a free port with trust authentication, and is removed
 * with its files by `stop()`.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, rm, chown } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface PrivatePostgres {
  /** A connection URL for the superuser `postgres`, database `postgres`. */
  readonly url: string;
  stop(): Promise<void>;
}

async function binaries(): Promise<string> {
  const root = '/usr/lib/postgresql';
  const versions = (await readdir(root).catch(() => [] as string[])).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0) throw new Error(`no PostgreSQL server binaries under ${root}: install the postgresql package`);
  return join(root, versions[0]!, 'bin');
}

/** A loopback port nothing listens on now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export async function startPrivatePostgres(settings: Record<string, string>): Promise<PrivatePostgres> {
  const bin = await binaries();
  const dir = await mkdtemp(join(tmpdir(), 'tidings-pg-'));
  const asRoot = process.getuid?.() === 0;
  const command = async (file: string, args: string[]): Promise<void> => {
    if (asRoot) await run('runuser', ['-u', 'postgres', '--', join(bin, file), ...args], { cwd: dir });
    else await run(join(bin, file), args, { cwd: dir });
  };
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: group } = await run('id', ['-g', 'postgres']);
    await chown(dir, Number(stdout.trim()), Number(group.trim()));
  }
  const data = join(dir, 'data');
  await command('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  const options = ['-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1', '-c', 'fsync=off', ...Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`])];
  await command('pg_ctl', ['-D', data, '-o', options.join(' '), '-l', join(dir, 'log'), '-w', '-t', '60', 'start']);
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      await command('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
}

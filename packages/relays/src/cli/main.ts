import { TidingsError } from '@tidings/outbox';
import { UsageError } from './usage-error.ts';

type Command = { help: string; run(args: string[]): Promise<number> };

const commands: Record<string, () => Promise<Command>> = {
  migrate: () => import('./commands/migrate.ts'),
  relay: () => import('./commands/relay.ts'),
  status: () => import('./commands/status.ts'),
  'dead-letters': () => import('./commands/dead-letters.ts'),
  replay: () => import('./commands/replay.ts'),
  cleanup: () => import('./commands/cleanup.ts'),
  cluster: () => import('./commands/cluster.ts'),
  endpoints: () => import('./commands/endpoints.ts'),
  dashboard: () => import('./commands/dashboard.ts'),
  demo: () => import('./commands/demo.ts'),
};

const usage = `tidings: transactional outbox relays, dead letters and replay

  tidings migrate                      create or upgrade the tables
  tidings relay --config FILE          run relay workers from a config file
  tidings status [--json]              cursors, lag, leases and dead letters; exit 1 when stalled
  tidings dead-letters list|retry|discard
  tidings replay --relay NAME --from TIME|CURSOR
  tidings cleanup [--retention-days N]  delete what every relay has passed and retention allows
  tidings cluster check|move-cursors|adopt   after a restore or a move to another cluster
  tidings endpoints add|list|update|rotate-secret|rotate-key|disable|enable|remove
  tidings dashboard [--port N]         a web page of relays, lag, dead letters and endpoints
  tidings demo                         see tidings work on its embedded database

Every command takes --help. Without --database or DATABASE_URL, tidings uses its embedded
database in ./.tidings (PGlite), so it works before any server is installed.`;

/** Runs one CLI invocation; returns the exit code. Errors become one clear line, never a stack trace. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage);
    return name === undefined ? 2 : 0;
  }
  const load = commands[name];
  if (!load) {
    console.error(`tidings: unknown command "${name}"\n\n${usage}`);
    return 2;
  }
  try {
    return await (await load()).run(args);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`tidings ${name}: ${error.message}`);
      return 2;
    }
    if (error instanceof TidingsError) {
      console.error(`tidings ${name}: ${error.message}`);
      return 1;
    }
    const code = (error as { code?: string }).code;
    const message = (error as Error).message ?? String(error);
    console.error(`tidings ${name}: ${code === 'ECONNREFUSED' ? `cannot reach the database or broker (${message})` : message}`);
    if (process.env.TIDINGS_DEBUG) console.error(error);
    return 1;
  }
}

// No top-level await here: a config file that imports '@tidings/relays' (from its sources) imports
// this module again while it runs, and a pending top-level await would deadlock that import.
if (import.meta.main) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}

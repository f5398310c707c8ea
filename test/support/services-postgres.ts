import pg from 'pg';
import { services } from './env.ts';

/** Fails the run at once, naming PostgreSQL and how to start it, when it cannot be reached. */
export default async function setup(): Promise<void> {
  const client = new pg.Client({ connectionString: services.postgres, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    await client.query('select 1');
  } catch (error) {
    throw new Error(
      `PostgreSQL is not reachable at ${redact(services.postgres)} (${(error as Error).message}). ` +
        'Start it (for example `pg_ctlcluster 15 main start`, or `docker compose up -d postgres`) ' +
        'or point DATABASE_URL at a running server.',
    );
  } finally {
    await client.end().catch(() => {});
  }
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):[^@/]*@/, '//$1:***@');
}

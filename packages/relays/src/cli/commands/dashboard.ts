import { createServer } from 'node:http';
import { once } from 'node:events';
import { databaseFlags, parseFlags } from '../args.ts';
import { openDatabase } from '../database.ts';
import { UsageError } from '../usage-error.ts';

export const help = `tidings dashboard: a web page of relays, lag, dead letters and webhook endpoints

  --port N        where to listen (default 7464; 0 picks a free port)
  --host H        the address to bind (default 127.0.0.1: this machine only)
  --database URL, --schema NAME

Prints the page's address with a new random access token; the browser keeps it in a cookie.
Rotating a webhook signing secret from the page uses the keys \`tidings endpoints\` uses:
TIDINGS_SECRET_KEY, or the embedded database's key file.
Runs until SIGINT or SIGTERM.`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseFlags('dashboard', args, { ...databaseFlags, port: { type: 'string' }, host: { type: 'string' } });
  if (values.help) {
    console.log(help);
    return 0;
  }
  const port = values.port === undefined ? 7464 : Number(values.port);
  if (values.port !== undefined && (values.port.trim() === '' || !Number.isInteger(port) || port < 0 || port > 65_535)) {
    throw new UsageError(`--port takes a port number from 0 to 65535, got "${values.port}"`);
  }
  const host = values.host ?? '127.0.0.1';
  const { dashboard } = await import('../../dashboard/index.ts');
  const { db, where, close, keyring } = await openDatabase(values.database ?? process.env.DATABASE_URL);
  // The keys `tidings endpoints` uses, so that the endpoints page can rotate signing secrets.
  const board = dashboard({
    database: db,
    schema: values.schema,
    label: where,
    keyring: await keyring(),
    onError: (error) => console.error(`tidings dashboard: ${error.message}`),
  });
  const server = createServer((request, response) => void board(request, response));
  try {
    server.listen(port, host);
    await once(server, 'listening');
  } catch (error) {
    await close();
    throw new UsageError(`cannot listen on ${host}:${port} (${(error as Error).message}); choose another --port`);
  }
  const address = server.address() as { port: number };
  const shown = host.includes(':') ? `[${host}]` : host;
  if (host !== '127.0.0.1' && host !== 'localhost' && host !== '::1') {
    console.error(`tidings dashboard: warning: listening on ${host}, reachable from other machines; anyone with the URL can act on dead letters and endpoints`);
  }
  console.log(`tidings dashboard for ${where}: http://${shown}:${address.port}/?token=${board.token}`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  await board.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await close();
  return 0;
}

import type pg from 'pg';

/** How long closing waits for the server's goodbye before it drops the socket. */
const endGraceMs = 1_000;

/** Closes the socket at once: a graceful end would wait for an answer a dead connection never gives. */
export function dropConnection(client: pg.Client): void {
  const connection = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection;
  connection?.stream?.destroy();
  void client.end().catch(() => {});
}

/**
 * Ends `ending` (a client's or a pool's graceful end), waiting at most `endGraceMs` for it, then
 * drops the sockets of `clients` still open: a black-holed connection never says goodbye.
 */
export async function endWithin(ending: Promise<unknown>, clients: Iterable<pg.Client>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, endGraceMs)));
  await Promise.race([ending.catch(() => {}), late]);
  clearTimeout(timer);
  for (const client of clients) dropConnection(client);
}

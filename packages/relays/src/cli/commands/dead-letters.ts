import { setTimeout as sleep } from 'node:timers/promises';
import { discardDeadLetters, listDeadLetters, retryDeadLetters, type Database } from '@tidings/outbox';
import { databaseFlags, parseFlags } from '../args.ts';
import { openDatabase } from '../database.ts';
import { progressBar } from '../progress.ts';
import { UsageError } from '../usage-error.ts';

export const help = `tidings dead-letters list|retry|discard: events a relay gave up on

  list       show dead letters (oldest first) with their last error and the key's events parked behind them
  retry      queue them for another delivery by their relay's workers (then their parked events, in order)
  discard    delete them for good (their parked events are released and delivered)

  --relay NAME    only this relay's
  --id ID         only this dead letter (repeatable)
  --wait          with retry: wait, with a progress bar, until the relay has sent them
  --beyond-horizon  with retry: also letters of events older than the redelivery horizon (7 days),
                  which consumers' inboxes may have forgotten (they could apply them twice)
  --json          with list: machine-readable output
  --database URL, --schema NAME`;

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags('dead-letters', args, {
    ...databaseFlags,
    relay: { type: 'string' },
    id: { type: 'string', multiple: true },
    wait: { type: 'boolean' },
    json: { type: 'boolean' },
    'beyond-horizon': { type: 'boolean' },
  });
  if (values.help) {
    console.log(help);
    return 0;
  }
  const action = positionals[0];
  if (action !== 'list' && action !== 'retry' && action !== 'discard') {
    throw new UsageError(`tidings dead-letters needs list, retry or discard${action ? `, not "${action}"` : ''}`);
  }
  const ids = values.id?.map((id) => {
    if (!/^\d+$/.test(id)) throw new UsageError(`--id takes the number shown by \`tidings dead-letters list\`, got "${id}"`);
    return id;
  });
  const query = { schema: values.schema, relay: values.relay, ids };
  const { db, close } = await openDatabase(values.database ?? process.env.DATABASE_URL);
  try {
    if (action === 'list') {
      const letters = await listDeadLetters(db, query);
      if (values.json) console.log(JSON.stringify(letters, null, 2));
      else if (letters.length === 0) console.log('no dead letters');
      else {
        for (const l of letters) {
          const last = l.errors.at(-1);
          const parked = l.parksKey ? ` key ${JSON.stringify(l.key)} parked with ${l.parkedEvents} events behind it;` : '';
          console.log(`#${l.id} ${l.relay} ${l.topic} ${l.eventId} [${l.status}]${parked} after ${l.errors.length} attempts: ${last?.message ?? ''}`);
        }
      }
      return 0;
    }
    if (action === 'discard') {
      console.log(`discarded ${await discardDeadLetters(db, query)} dead letters`);
      return 0;
    }
    const queued = await retryDeadLetters(db, { ...query, beyondHorizon: values['beyond-horizon'] === true });
    console.log(`queued ${queued} dead letters for another delivery`);
    // Awaited here, so the database is closed (finally) only once the wait is over.
    if (values.wait && queued > 0) return await waitForRetries(db, query, queued);
    return 0;
  } finally {
    await close();
  }
}

/** Follows the queued retries until none is pending; exit 1 if some failed again. */
async function waitForRetries(db: Database, query: { schema?: string; relay?: string; ids?: string[] }, queued: number): Promise<number> {
  const bar = progressBar('retrying', queued);
  const before = new Set((await listDeadLetters(db, query)).map((l) => l.id));
  for (;;) {
    const letters = (await listDeadLetters(db, query)).filter((l) => before.has(l.id));
    const pending = letters.filter((l) => l.status !== 'dead').length;
    bar.update(queued - pending);
    if (pending === 0) {
      bar.finish();
      const failedAgain = letters.length;
      console.log(`${queued - failedAgain} delivered, ${failedAgain} failed again`);
      return failedAgain === 0 ? 0 : 1;
    }
    await sleep(250);
  }
}

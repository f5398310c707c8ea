import { cleanup } from '@tidings/outbox';
import { databaseFlags, parseFlags, wholeNumber, zeroOrMore } from '../args.ts';
import { openDatabase } from '../database.ts';
import { UsageError } from '../usage-error.ts';

export const help = `tidings cleanup: delete the events every relay has passed and that are older than the retention

  --retention-days N   keep events younger than this many days (fractions allowed; default 7)
  --dead-letter-retention-days N
                       also delete dead letters that died more than N days ago (default: keep
                       them); one that keeps its key parked stays until retried or discarded
  --batch-size N       events deleted per statement (default 1000)
  --database URL, --schema NAME

Deletes each partition's log from its start, in commit order, up to the first event that is too
young or that some relay has not passed; a relay that no longer runs holds retention back until
\`tidings relay drop NAME\` forgets it. Feed readers whose cursor lies in the deleted part get
"cursor expired". Prints how many events (and dead letters) it deleted; on a terminal, a running count too.
Ctrl-C stops it between two batches; what was deleted by then is reported.`;

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags('cleanup', args, { ...databaseFlags, 'retention-days': { type: 'string' }, 'dead-letter-retention-days': { type: 'string' }, 'batch-size': { type: 'string' } });
  if (values.help) {
    console.log(help);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`tidings cleanup takes no arguments, got "${positionals.join(' ')}"`);
  const days = zeroOrMore('retention-days', values['retention-days']) ?? 7;
  const deadLetterDays = zeroOrMore('dead-letter-retention-days', values['dead-letter-retention-days']);
  const batchSize = wholeNumber('batch-size', values['batch-size']);
  if (batchSize !== undefined && batchSize > 100_000) throw new UsageError(`--batch-size takes at most 100000, got "${values['batch-size']}"`);
  const { db, close } = await openDatabase(values.database ?? process.env.DATABASE_URL);
  const tty = process.stderr.isTTY === true;
  const interrupted = new AbortController();
  const interrupt = (): void => interrupted.abort();
  process.once('SIGINT', interrupt);
  try {
    const { events, deadLetters } = await cleanup(db, {
      schema: values.schema,
      retentionMs: daysToMs(days),
      deadLetterRetentionMs: deadLetterDays === undefined ? undefined : daysToMs(deadLetterDays),
      batchSize,
      signal: interrupted.signal,
      onProgress: (count) => {
        if (tty) process.stderr.write(`\rdeleting: ${count} events`);
      },
    });
    if (tty && events > 0) process.stderr.write('\n');
    const stopped = interrupted.signal.aborted ? ' (interrupted)' : '';
    console.log(`deleted ${events} events${deadLetterDays === undefined ? '' : ` and ${deadLetters} dead letters`}${stopped}`);
    return 0;
  } finally {
    process.off('SIGINT', interrupt);
    await close();
  }
}

/** At least a millisecond: zero days means "everything old enough that every relay has passed". */
function daysToMs(days: number): number {
  return Math.max(1, Math.round(days * 24 * 3_600_000));
}

import { cleanup } from '@tidings/outbox';
import { databaseFlags, parseFlags, wholeNumber, zeroOrMore } from '../args.ts';
import { openDatabase } from '../database.ts';
import { UsageError } from '../usage-error.ts';

export const help = `tidings cleanup: delete the events every relay has passed and that are older than the retention

  --retention-days N   keep events younger than this many days (fractions allowed; default 7)
  --batch-size N       events deleted per statement (default 1000)
  --database URL, --schema NAME

Deletes each partition's log from its start, in commit order, up to the first event that is too
young or that some relay has not passed; a relay that no longer runs holds retention back until
\`tidings relay drop NAME\` forgets it. Feed readers whose cursor lies in the deleted part get
"cursor expired". Prints how many events it deleted; on a terminal, a running count too.`;

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags('cleanup', args, { ...databaseFlags, 'retention-days': { type: 'string' }, 'batch-size': { type: 'string' } });
  if (values.help) {
    console.log(help);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`tidings cleanup takes no arguments, got "${positionals.join(' ')}"`);
  const days = zeroOrMore('retention-days', values['retention-days']) ?? 7;
  const batchSize = wholeNumber('batch-size', values['batch-size']);
  if (batchSize !== undefined && batchSize > 100_000) throw new UsageError(`--batch-size takes at most 100000, got "${values['batch-size']}"`);
  const { db, close } = await openDatabase(values.database ?? process.env.DATABASE_URL);
  const tty = process.stderr.isTTY === true;
  try {
    const deleted = await cleanup(db, {
      schema: values.schema,
      retentionMs: Math.max(1, Math.round(days * 24 * 3_600_000)),
      batchSize,
      onProgress: (count) => {
        if (tty) process.stderr.write(`\rdeleting: ${count} events`);
      },
    });
    if (tty && deleted > 0) process.stderr.write('\n');
    console.log(`deleted ${deleted} events`);
    return 0;
  } finally {
    await close();
  }
}

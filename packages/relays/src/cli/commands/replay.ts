import { setTimeout as sleep } from 'node:timers/promises';
import { replay, status } from '@tidings/outbox';
import { databaseFlags, parseFlags } from '../args.ts';
import { openDatabase } from '../database.ts';
import { progressBar } from '../progress.ts';
import { relayNames } from '../relay-names.ts';
import { closest } from '../suggest.ts';
import { UsageError } from '../usage-error.ts';

export const help = `tidings replay: deliver again from a point in the past

  --relay NAME        the relay whose cursors move back (required)
  --from TIME|CURSOR  an ISO time (2026-11-26T10:00:00Z) or a cursor as shown by \`tidings status\`
  --wait              follow the relay with a progress bar until it has caught up again
  --beyond-horizon    also when it reaches events older than the redelivery horizon (7 days), which
                      consumers' inboxes may have forgotten (they could apply them twice)
  --database URL, --schema NAME`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseFlags('replay', args, { ...databaseFlags, relay: { type: 'string' }, from: { type: 'string' }, wait: { type: 'boolean' }, 'beyond-horizon': { type: 'boolean' } });
  if (values.help) {
    console.log(help);
    return 0;
  }
  if (!values.relay) throw new UsageError('tidings replay needs --relay NAME');
  if (!values.from) throw new UsageError('tidings replay needs --from TIME or --from CURSOR');
  const from = /^c\d+-\d+$/.test(values.from) ? values.from : parseTime(values.from);
  const { db, close } = await openDatabase(values.database ?? process.env.DATABASE_URL);
  try {
    const known = await relayNames(db, values.schema);
    if (!known.includes(values.relay)) {
      const hint = closest(values.relay, known);
      throw new UsageError(
        `no relay named "${values.relay}" has run on this database${hint ? ` (did you mean "${hint}"?)` : ''}; ` +
          (known.length > 0 ? `relays: ${known.join(', ')}` : 'no relay has run yet, so there is nothing to replay'),
      );
    }
    const moved = await replay(db, { schema: values.schema, relay: values.relay, from, beyondHorizon: values['beyond-horizon'] === true });
    console.log(`moved ${moved} partition cursors of relay ${values.relay} back`);
    if (!values.wait || moved === 0) return 0;
    const lag = async () => (await status(db, { schema: values.schema })).relays.find((r) => r.relay === values.relay)?.lagEvents ?? 0;
    const total = await lag();
    const bar = progressBar('replaying', total);
    for (let left = total; left > 0; left = await lag()) {
      bar.update(total - left);
      await sleep(250);
    }
    bar.finish();
    return 0;
  } finally {
    await close();
  }
}

function parseTime(text: string): Date {
  const time = new Date(text);
  if (Number.isNaN(time.getTime())) throw new UsageError(`--from "${text}" is neither an ISO time nor a cursor like c1234-56`);
  return time;
}

import { adoptCluster, inspectCluster, moveCursors, type ClusterReport } from '@tidings/outbox';
import { databaseFlags, parseFlags } from '../args.ts';
import { openDatabase } from '../database.ts';
import { UsageError } from '../usage-error.ts';

export const help = `tidings cluster: check, move and adopt after a restore or a move to another cluster

  tidings cluster check                 the recorded and current cluster identity, and cursors
                                        beyond the log; exit 1 when relays would refuse to run
  tidings cluster move-cursors --relay NAME (--to-time TIME | --after-event ID)
                                        set the relay's cursors, forwards or back: each partition
                                        resumes at its first event written at or after TIME, or
                                        every partition resumes after event ID's commit
  tidings cluster adopt                 record this cluster as the outbox's own and move the commit
                                        counter past every number in the log
  --database URL, --schema NAME`;

export async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseFlags('cluster', args, {
    ...databaseFlags,
    relay: { type: 'string' },
    'to-time': { type: 'string' },
    'after-event': { type: 'string' },
  });
  if (values.help) {
    console.log(help);
    return 0;
  }
  const action = positionals[0];
  if (action !== 'check' && action !== 'adopt' && action !== 'move-cursors') throw new UsageError('tidings cluster needs check, move-cursors or adopt');
  const { db, close } = await openDatabase(values.database ?? process.env.DATABASE_URL);
  try {
    if (action === 'check') return print(await inspectCluster(db, { schema: values.schema }));
    if (action === 'adopt') return print(await adoptCluster(db, { schema: values.schema }));
    if (!values.relay) throw new UsageError('tidings cluster move-cursors needs --relay NAME');
    const time = values['to-time'];
    const event = values['after-event'];
    if ((time === undefined) === (event === undefined)) throw new UsageError('tidings cluster move-cursors needs exactly one of --to-time TIME and --after-event ID');
    let to: Date | { afterEvent: string };
    if (time !== undefined) {
      to = new Date(time);
      if (Number.isNaN(to.getTime())) throw new UsageError(`--to-time "${time}" is not an ISO time like 2026-11-26T10:00:00Z`);
    } else {
      to = { afterEvent: event! };
    }
    const moved = await moveCursors(db, { schema: values.schema, relay: values.relay, to });
    console.log(`moved ${moved} partition cursors of relay ${values.relay}`);
    return 0;
  } finally {
    await close();
  }
}

function print(report: ClusterReport): number {
  const identity = (i: ClusterReport['current']) => `events table ${i.eventsOid ?? '?'}, system ${i.systemIdentifier ?? '(not readable)'}`;
  console.log(`recorded: ${identity(report.recorded)}`);
  console.log(`current:  ${identity(report.current)}${report.changed ? '  <- changed' : ''}`);
  console.log(`commit numbers: last drawn ${report.lastDrawn}, highest in the log ${report.highestCommit}`);
  if (report.ahead.length > 0) console.log(`beyond the log: ${report.ahead.join(', ')}`);
  return report.changed || report.ahead.length > 0 ? 1 : 0;
}

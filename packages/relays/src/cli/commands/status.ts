import { status, type OutboxStatus } from '@tidings/outbox';
import { databaseFlags, parseFlags, wholeNumber } from '../args.ts';
import { webhookFilters } from '../../webhook/status-filters.ts';
import { openDatabase } from '../database.ts';

export const help = `tidings status: where every relay stands

  --json                  machine-readable output
  --stalled-after SECS    a relay behind and idle this long, or feeds held back this long, count as stalled (default: 60)
  --abandoned-after SECS  a relay behind with no worker and no progress this long counts as abandoned: it holds
                          retention back, and the report says how to drop it (default: 86400, a day)
  --database URL, --schema NAME

Exits 1 when a relay or the feeds are stalled, so it can serve as a health check.`;

export async function run(args: string[]): Promise<number> {
  const { values } = parseFlags('status', args, { ...databaseFlags, json: { type: 'boolean' }, 'stalled-after': { type: 'string' }, 'abandoned-after': { type: 'string' } });
  if (values.help) {
    console.log(help);
    return 0;
  }
  const stalledAfterSeconds = wholeNumber('stalled-after', values['stalled-after']);
  const abandonedAfterSeconds = wholeNumber('abandoned-after', values['abandoned-after']);
  const { db, close } = await openDatabase(values.database ?? process.env.DATABASE_URL);
  try {
    const report = await status(db, { schema: values.schema, stalledAfterSeconds, abandonedAfterSeconds, filters: await webhookFilters(db, values.schema) });
    console.log(values.json ? JSON.stringify(report, null, 2) : render(report));
    return report.feeds.stalled || report.relays.some((relay) => relay.stalled) ? 1 : 0;
  } finally {
    await close();
  }
}

function render(report: OutboxStatus): string {
  const { feeds } = report;
  const lines = [
    feeds.events === 0
      ? 'feeds: nothing held back'
      : `feeds: ${feeds.events} committed events held back (oldest ${feeds.seconds.toFixed(1)} s)${feeds.stalled ? ' STALLED' : ''}`,
  ];
  for (const h of feeds.holders) {
    const who = h.preparedTransaction !== null
      ? `prepared transaction "${h.preparedTransaction}" (prepared ${h.preparedSeconds?.toFixed(1)} s ago)`
      : `pid ${h.pid} (${h.applicationName || 'no application name'})`;
    lines.push(`  partition ${h.partition} commit lock held by ${who}; ${h.waiting} commits waiting${h.waiting > 0 ? `, the longest ${h.waitedSeconds.toFixed(1)} s` : ''}`);
  }
  if (report.relays.length === 0) lines.push('no relays have run yet');
  for (const relay of report.relays) {
    const state = relay.stalled ? 'STALLED' : relay.lagEvents === 0 ? 'caught up' : 'relaying';
    lines.push(
      '',
      `relay ${relay.relay}: ${state}; ${relay.lagEvents} events behind (oldest ${relay.lagSeconds.toFixed(1)} s); ` +
        `${relay.deadLetters} dead letters; ${relay.parkedKeys} keys parked behind them (${relay.parkedEvents} events waiting); workers: ${relay.workers.map((w) => w.worker).join(', ') || 'none'}`,
      '  partition  owner                 behind  oldest(s)  cursor',
    );
    if (relay.abandoned) {
      const idle = (Date.now() - Math.max(...relay.partitions.map((p) => p.movedAt.getTime()))) / 3_600_000;
      lines.splice(
        lines.length - 1,
        0,
        `  ABANDONED: no worker and no progress for ${idle.toFixed(1)} h; retention keeps every event after its cursor. ` +
          `If it will not run again: tidings relay drop ${relay.relay}`,
      );
    }
    if (relay.unavailableSince) {
      const waiting = relay.partitions.filter((p) => p.unavailable);
      const seconds = ((Date.now() - relay.unavailableSince.getTime()) / 1000).toFixed(1);
      lines.splice(
        lines.length - 1,
        0,
        `  destination UNAVAILABLE for ${seconds} s (${waiting.length} partitions waiting; nothing is counted against the events): ${waiting[0]?.unavailable?.error ?? ''}`,
      );
    }
    for (const p of relay.partitions) {
      lines.push(
        `  ${String(p.partition).padStart(9)}  ${(p.owner ?? '-').padEnd(20)}  ${String(p.lagEvents).padStart(6)}  ${p.lagSeconds.toFixed(1).padStart(9)}  ${p.cursor}`,
      );
    }
  }
  return lines.join('\n');
}

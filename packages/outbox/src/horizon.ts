import { BeyondHorizonError, ConfigError } from './errors.ts';
import type { Executor } from './executor.ts';
import { wholeOption } from './options.ts';

const day = 24 * 60 * 60 * 1000;

/**
 * How long after an event was written it may still be delivered again — by a dead-letter retry or
 * a replay — and, on the consumer side, how long an inbox keeps its dedup marks. One setting that
 * both sides respect: an inbox that forgot an event before its sender stopped redelivering it
 * would apply it twice. Default 7 days; set the same value on both sides if you change it.
 */
export const defaultRedeliveryHorizonMs = 7 * day;

/** The horizon options of a call that redelivers events (`retryDeadLetters`, `replay`). */
export interface HorizonOptions {
  /** The redelivery horizon. Default `defaultRedeliveryHorizonMs` (7 days). */
  readonly horizonMs?: number;
  /**
   * Redeliver events older than the horizon anyway. Only when every consumer keeps its dedup
   * marks at least that long, or applies these events idempotently without the inbox.
   */
  readonly beyondHorizon?: boolean;
}

export interface ResolvedHorizon {
  readonly horizonMs: number;
  readonly beyond: boolean;
}

export function resolveHorizon(options: HorizonOptions): ResolvedHorizon {
  const horizonMs = wholeOption('horizonMs', options.horizonMs, defaultRedeliveryHorizonMs);
  if (options.beyondHorizon !== undefined && typeof options.beyondHorizon !== 'boolean') {
    throw new ConfigError('beyondHorizon', `expected true or false, got ${JSON.stringify(options.beyondHorizon)}`);
  }
  return { horizonMs, beyond: options.beyondHorizon === true };
}

/**
 * Refuses, before anything changes, a redelivery of events written before the horizon. `oldest`
 * is a statement returning one row with the creation time of the oldest event the call would
 * deliver again (`oldest`, null when there is none); time is the database's clock.
 */
export async function refuseBeyondHorizon(
  db: Executor,
  what: string,
  horizon: ResolvedHorizon,
  oldest: { text: string; params: readonly unknown[] },
): Promise<void> {
  if (horizon.beyond) return;
  const n = oldest.params.length;
  const { rows } = await db.query<{ oldest: Date | null; beyond: boolean | null }>(
    `SELECT o.oldest, o.oldest < now() - $${n + 1}::double precision * interval '1 millisecond' AS beyond FROM (${oldest.text}) o`,
    [...oldest.params, horizon.horizonMs],
  );
  const row = rows[0];
  if (row?.beyond) throw new BeyondHorizonError(what, new Date(row.oldest!), horizon.horizonMs);
}

import type { Position } from '../event.ts';
import { comparePositions } from '../position.ts';

/** What a partition's shared tail knows of the log, as far as routing a runner's read goes. */
export interface TailBounds {
  /** The tail holds every event after `start` up to `end`. */
  readonly start: Position;
  readonly end: Position;
  /** The last read was full: the log goes on after `end`. */
  readonly full: boolean;
  /** No commit was announced since the last read began. */
  readonly fresh: boolean;
}

/**
 * Where a runner's read after `after` gets its page:
 * - `own`: behind what the tail holds, it reads on its own (filtered) until it has caught up;
 * - `move`: ahead of a tail that is catching up from further back, the tail moves to it, and the
 *   runner waits for the next read;
 * - `wait`: at the tail's end while the log goes on or a commit was announced: the next read answers it;
 * - `nothing-new`: at the tail's end, nothing announced since the last read: an empty page, no statement;
 * - `tail`: inside the tail, answered from its events.
 *
 * Imported as `#tail-route` (see package.json `imports`), the module a test mutant replaces.
 */
export type TailRoute = 'own' | 'move' | 'wait' | 'nothing-new' | 'tail';

export function tailRoute(after: Position, tail: TailBounds): TailRoute {
  if (comparePositions(after, tail.start) < 0) return 'own';
  if (comparePositions(after, tail.end) < 0) return 'tail';
  if (tail.full && comparePositions(after, tail.end) > 0) return 'move';
  return tail.fresh && !tail.full ? 'nothing-new' : 'wait';
}

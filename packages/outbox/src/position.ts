import { InvalidCursorError } from './errors.ts';
import type { Position } from './event.ts';

/** The position before every event. */
export const start: Position = { seq: '0', id: '0' };

export function comparePositions(a: Position, b: Position): number {
  const seq = BigInt(a.seq) - BigInt(b.seq);
  if (seq !== 0n) return seq < 0n ? -1 : 1;
  const id = BigInt(a.id) - BigInt(b.id);
  return id === 0n ? 0 : id < 0n ? -1 : 1;
}

export function maxPosition(a: Position, b: Position): Position {
  return comparePositions(a, b) >= 0 ? a : b;
}

/** Opaque text form of a position, as handed to feed clients and the CLI. */
export function encodePosition(position: Position): string {
  return `c${position.seq}-${position.id}`;
}

/**
 * Reads a cursor that `encodePosition` wrote. A cursor of the form tidings wrote before log
 * positions became commit sequence numbers (`<transaction id>-<row id>`) is refused with
 * `InvalidCursorError` saying so: it cannot be placed in commit order.
 */
export function decodePosition(cursor: string): Position {
  const match = /^c(\d{1,19})-(\d{1,19})$/.exec(cursor);
  if (!match) {
    const old = /^\d{1,20}-\d{1,19}$/.test(cursor);
    throw new InvalidCursorError(cursor, old ? 'legacy' : 'unknown');
  }
  const seq = BigInt(match[1]!);
  const id = BigInt(match[2]!);
  if (seq > maxBigint || id > maxBigint) throw new InvalidCursorError(cursor, 'unknown');
  return { seq: seq.toString(), id: id.toString() };
}

const maxBigint = 9_223_372_036_854_775_807n;

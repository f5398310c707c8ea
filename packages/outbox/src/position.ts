import { InvalidCursorError } from './errors.ts';
import type { Position } from './event.ts';

/** The position before every event. */
export const start: Position = { txId: '0', id: '0' };

export function comparePositions(a: Position, b: Position): number {
  const tx = BigInt(a.txId) - BigInt(b.txId);
  if (tx !== 0n) return tx < 0n ? -1 : 1;
  const id = BigInt(a.id) - BigInt(b.id);
  return id === 0n ? 0 : id < 0n ? -1 : 1;
}

export function maxPosition(a: Position, b: Position): Position {
  return comparePositions(a, b) >= 0 ? a : b;
}

/** Opaque text form of a position, as handed to feed clients and the CLI. */
export function encodePosition(position: Position): string {
  return `${position.txId}-${position.id}`;
}

export function decodePosition(cursor: string): Position {
  const match = /^(\d{1,20})-(\d{1,19})$/.exec(cursor);
  if (!match) throw new InvalidCursorError(cursor);
  return { txId: BigInt(match[1]!).toString(), id: BigInt(match[2]!).toString() };
}

import type { IncomingMessage } from 'node:http';
import { decodePosition, type Position } from '@tidings/outbox';

/** Where a feed request starts: after a position, at the oldest event kept, or from now on. */
export type FeedStart = Position | 'start' | 'now';

/**
 * Reads where a request resumes: the `Last-Event-ID` header (sent by EventSource on every
 * reconnect, so it wins over the URL it reconnects to), else `?after=`, else `fallback`.
 * Both take an opaque cursor, `start` or `now`; anything else throws `InvalidCursorError`.
 */
export function requestStart(request: IncomingMessage, query: URLSearchParams, fallback: 'start' | 'now', header = true): FeedStart {
  const lastEventId = header ? request.headers['last-event-id'] : undefined;
  const text = typeof lastEventId === 'string' && lastEventId !== '' ? lastEventId : query.get('after');
  if (text === null || text === '') return fallback;
  return parseStart(text);
}

/** `start`, `now`, or a cursor as tidings encoded it. */
export function parseStart(text: string): FeedStart {
  if (text === 'start' || text === 'now') return text;
  return decodePosition(text);
}

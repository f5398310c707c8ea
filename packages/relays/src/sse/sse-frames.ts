import type { OutboxEvent } from '@tidings/outbox';
import { cursorText } from '../feed/cursor.ts';
import { envelopeJson } from '../feed/envelope.ts';
import { problemJson, type Problem } from '../feed/problem.ts';

/**
 * The event type of the frame a feed sends before it ends a stream it cannot go on with, and the
 * body of its 4xx answers; the data is `{ error, message, cursor? }`.
 *
 * @example
 * source.addEventListener(feedErrorEvent, (e) => resync(JSON.parse(e.data).error)); // 'cursor-expired', …
 */
export const feedErrorEvent = 'feed-error';

const frames = new WeakMap<OutboxEvent, Buffer>();

/**
 * `id:` = the opaque cursor, `event:` = the topic, `data:` = the JSON envelope (JSON has no raw
 * line breaks, so one `data:` line). Encoded once per event, however many connections send it.
 */
export function eventFrame(event: OutboxEvent): Buffer {
  let frame = frames.get(event);
  if (frame === undefined) {
    frame = Buffer.from(`id: ${cursorText(event.position)}\nevent: ${event.topic}\ndata: ${envelopeJson(event)}\n\n`);
    frames.set(event, frame);
  }
  return frame;
}

const batches = new WeakMap<readonly OutboxEvent[], Buffer>();

/**
 * One chunk for many events, so a batch is one write (and one chunk on the wire). The hub hands
 * the same array to every connection of a scope, so the chunk is made once for all of them.
 */
export function eventFrames(events: readonly OutboxEvent[]): Buffer {
  if (events.length === 1) return eventFrame(events[0]!);
  let chunk = batches.get(events);
  if (chunk === undefined) {
    chunk = Buffer.concat(events.map(eventFrame));
    batches.set(events, chunk);
  }
  return chunk;
}

/** The first bytes of every stream: the reconnection delay, and a comment that flushes the headers. */
export function openingFrame(retryMs: number): string {
  return `retry: ${retryMs}\n: connected\n\n`;
}

/** A comment line: keeps proxies and load balancers from closing an idle stream. */
export const heartbeatFrame = Buffer.from(': keep-alive\n\n');

/** A `feed-error` frame whose data is the problem (see `problemJson`). */
export function problemFrame(problem: Problem): string {
  return `event: ${feedErrorEvent}\ndata: ${problemJson(problem)}\n\n`;
}

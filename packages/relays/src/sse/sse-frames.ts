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

/** Writes events as SSE frames with one JSON encoding, each frame made once however many connections send it. */
export interface FrameEncoder {
  frames(events: readonly OutboxEvent[]): Buffer;
}

/**
 * `id:` = the opaque cursor, `event:` = the topic, `data:` = the event's JSON (JSON has no raw
 * line breaks, so one `data:` line): the envelope, or the CloudEvent in CloudEvents mode.
 */
export function frameEncoder(json: (event: OutboxEvent) => string): FrameEncoder {
  const frames = new WeakMap<OutboxEvent, Buffer>();
  const batches = new WeakMap<readonly OutboxEvent[], Buffer>();
  const frame = (event: OutboxEvent): Buffer => {
    let bytes = frames.get(event);
    if (bytes === undefined) {
      bytes = Buffer.from(`id: ${cursorText(event.position)}\nevent: ${event.topic}\ndata: ${json(event)}\n\n`);
      frames.set(event, bytes);
    }
    return bytes;
  };
  return {
    // One chunk for many events, so a batch is one write (and one chunk on the wire). The hub hands
    // the same array to every connection of a scope, so the chunk is made once for all of them.
    frames(events) {
      if (events.length === 1) return frame(events[0]!);
      let chunk = batches.get(events);
      if (chunk === undefined) {
        chunk = Buffer.concat(events.map(frame));
        batches.set(events, chunk);
      }
      return chunk;
    },
  };
}

/** The frames of the tidings envelope, shared by every SSE feed of the process that does not send CloudEvents. */
export const envelopeFrames = frameEncoder(envelopeJson);

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

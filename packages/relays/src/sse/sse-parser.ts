import { TidingsError } from '@tidings/outbox';

/** One dispatched Server-Sent Event. */
export interface SseMessage {
  /** The event type: the `event:` field, `message` when absent. */
  readonly event: string;
  readonly data: string;
  /** The last event ID after this event (the `id:` field, or the one before it). */
  readonly lastEventId: string;
}

/** What grew too long: one line, or the data of one event. */
export type SseLimitReason = 'line' | 'event';

/** A `text/event-stream` line or event is longer than the parser allows. */
export class SseLimitError extends TidingsError {
  override readonly name = 'SseLimitError';
  readonly reason: SseLimitReason;
  /** The limit, in characters. */
  readonly maxLength: number;
  constructor(reason: SseLimitReason, maxLength: number) {
    super(
      `the event stream sent ${reason === 'line' ? 'a line' : 'an event whose data is'} longer than ${maxLength} characters; ` +
        'the connection was closed. If the feed really sends events that large, raise maxLength (sseConsumer: maxEventLength).',
    );
    this.reason = reason;
    this.maxLength = maxLength;
  }
}

/** Limits that keep what a stream can make the parser hold bounded. */
export interface SseParserOptions {
  /**
   * The most characters one line, and the data of one event, may hold; beyond it `push` throws
   * `SseLimitError`. Default 8 Mi (a tidings event's payload is at most 1 MiB of JSON).
   */
  readonly maxLength?: number;
}

/** Default `maxLength`. */
export const defaultMaxSseLength = 8 * 1024 * 1024;

/**
 * An incremental `text/event-stream` parser that follows the WHATWG rules: lines end in CRLF, LF
 * or CR (also split across chunks), a leading BOM is dropped, `:` starts a comment, one space after
 * the colon is removed, `data:` lines are joined with LF, an `id` containing NUL is ignored, and a
 * blank line dispatches the event unless its data is empty.
 *
 * Each character is looked at once, however the stream is cut into chunks, and what it holds is
 * bounded: a line, or an event's data, longer than `maxLength` throws `SseLimitError` (the caller
 * should close the stream).
 *
 * @example
 * const parser = new SseParser((message) => console.log(message.event, message.data));
 * for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) parser.push(chunk);
 */
export class SseParser {
  readonly #onMessage: (message: SseMessage) => void;
  readonly #onRetry: (ms: number) => void;
  readonly #maxLength: number;
  /** The start of a line whose end has not arrived yet, in pieces (joined once, when it ends). */
  #pending: string[] = [];
  #pendingLength = 0;
  #afterCr = false;
  #started = false;
  #data: string[] = [];
  #dataLength = 0;
  #event = '';
  #lastEventId = '';

  constructor(onMessage: (message: SseMessage) => void, onRetry: (ms: number) => void = () => {}, options: SseParserOptions = {}) {
    this.#onMessage = onMessage;
    this.#onRetry = onRetry;
    const maxLength = options.maxLength ?? defaultMaxSseLength;
    if (!Number.isInteger(maxLength) || maxLength < 1) throw new RangeError(`maxLength must be a whole number from 1 up; got ${String(maxLength)}`);
    this.#maxLength = maxLength;
  }

  /** The last event ID seen so far (what EventSource would send as `Last-Event-ID`). */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  /** Parses a chunk; throws `SseLimitError` when a line or an event grows beyond `maxLength`. */
  push(chunk: string): void {
    let from = 0;
    if (!this.#started && chunk.length > 0) {
      this.#started = true;
      if (chunk.charCodeAt(0) === 0xfeff) from = 1;
    }
    // A CR ended the last chunk: an LF that starts this one belongs to it.
    if (this.#afterCr && from < chunk.length) {
      if (chunk.charCodeAt(from) === 10) from++;
      this.#afterCr = false;
    }
    let start = from;
    for (let i = from; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.#endLine(chunk, start, i);
      if (c === 13) {
        if (i + 1 === chunk.length) this.#afterCr = true;
        else if (chunk.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    if (start < chunk.length) {
      this.#pendingLength += chunk.length - start;
      if (this.#pendingLength > this.#maxLength) this.#fail('line');
      this.#pending.push(chunk.slice(start));
    }
  }

  #endLine(chunk: string, start: number, end: number): void {
    if (this.#pendingLength + (end - start) > this.#maxLength) this.#fail('line');
    let line = chunk.slice(start, end);
    if (this.#pending.length > 0) {
      line = this.#pending.join('') + line;
      this.#pending = [];
      this.#pendingLength = 0;
    }
    this.#line(line);
  }

  #fail(part: 'line' | 'event'): never {
    this.#pending = [];
    this.#pendingLength = 0;
    this.#data = [];
    this.#dataLength = 0;
    throw new SseLimitError(part, this.#maxLength);
  }

  #line(line: string): void {
    if (line === '') return this.#dispatch();
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    switch (field) {
      case 'data':
        // Joined with LF: each line after the first adds one character.
        this.#dataLength += value.length + (this.#data.length > 0 ? 1 : 0);
        if (this.#dataLength > this.#maxLength) this.#fail('event');
        this.#data.push(value);
        break;
      case 'event':
        this.#event = value;
        break;
      case 'id':
        if (!value.includes('\0')) this.#lastEventId = value;
        break;
      case 'retry':
        if (/^\d+$/.test(value)) this.#onRetry(Number(value));
        break;
    }
  }

  #dispatch(): void {
    const data = this.#data;
    const event = this.#event;
    this.#data = [];
    this.#dataLength = 0;
    this.#event = '';
    if (data.length === 0) return;
    this.#onMessage({ event: event === '' ? 'message' : event, data: data.join('\n'), lastEventId: this.#lastEventId });
  }
}

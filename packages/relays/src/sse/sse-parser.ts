/** One dispatched Server-Sent Event. */
export interface SseMessage {
  /** The event type: the `event:` field, `message` when absent. */
  readonly event: string;
  readonly data: string;
  /** The last event ID after this event (the `id:` field, or the one before it). */
  readonly lastEventId: string;
}

/**
 * An incremental `text/event-stream` parser that follows the WHATWG rules: lines end in CRLF, LF
 * or CR (also split across chunks), a leading BOM is dropped, `:` starts a comment, one space after
 * the colon is removed, `data:` lines are joined with LF, an `id` containing NUL is ignored, and a
 * blank line dispatches the event unless its data is empty.
 *
 * @example
 * const parser = new SseParser((message) => console.log(message.event, message.data));
 * for await (const chunk of response.body!.pipeThrough(new TextDecoderStream())) parser.push(chunk);
 */
export class SseParser {
  readonly #onMessage: (message: SseMessage) => void;
  readonly #onRetry: (ms: number) => void;
  #buffer = '';
  #afterCr = false;
  #started = false;
  #data: string[] = [];
  #event = '';
  #lastEventId = '';

  constructor(onMessage: (message: SseMessage) => void, onRetry: (ms: number) => void = () => {}) {
    this.#onMessage = onMessage;
    this.#onRetry = onRetry;
  }

  /** The last event ID seen so far (what EventSource would send as `Last-Event-ID`). */
  get lastEventId(): string {
    return this.#lastEventId;
  }

  push(chunk: string): void {
    let text = chunk;
    if (!this.#started && text.length > 0) {
      this.#started = true;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.#afterCr && text.startsWith('\n')) text = text.slice(1);
    this.#afterCr = false;
    this.#buffer += text;
    let start = 0;
    for (let i = 0; i < this.#buffer.length; i++) {
      const c = this.#buffer.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.#line(this.#buffer.slice(start, i));
      if (c === 13) {
        if (i + 1 === this.#buffer.length) this.#afterCr = true;
        else if (this.#buffer.charCodeAt(i + 1) === 10) i++;
      }
      start = i + 1;
    }
    this.#buffer = this.#buffer.slice(start);
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
    this.#event = '';
    if (data.length === 0) return;
    this.#onMessage({ event: event === '' ? 'message' : event, data: data.join('\n'), lastEventId: this.#lastEventId });
  }
}

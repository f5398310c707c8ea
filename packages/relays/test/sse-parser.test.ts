import { SseParser, type SseMessage } from '@tidings/relays/sse';
import { describe, expect, it } from 'vitest';

function parse(chunks: string[]): { messages: SseMessage[]; retries: number[] } {
  const messages: SseMessage[] = [];
  const retries: number[] = [];
  const parser = new SseParser((m) => messages.push(m), (ms) => retries.push(ms));
  for (const chunk of chunks) parser.push(chunk);
  return { messages, retries };
}

describe('the SSE parser', () => {
  it('dispatches an event on a blank line with its type, data and last event id', () => {
    expect(parse(['id: 1-2\nevent: orders.created\ndata: {"a":1}\n\n']).messages).toEqual([
      { event: 'orders.created', data: '{"a":1}', lastEventId: '1-2' },
    ]);
  });

  it('accepts CRLF, LF and CR line ends, also when a CRLF is split across chunks', () => {
    const { messages } = parse(['data: a\r', '\ndata: b\r\rdata: c\r\n', '\r\n']);
    expect(messages.map((m) => m.data)).toEqual(['a\nb', 'c']);
  });

  it('joins data lines with LF, drops one leading space, ignores comments and unknown fields', () => {
    const { messages } = parse([': keep-alive\n\ndata:  two spaces\ndata:x\nfoo: bar\n\n']);
    expect(messages).toEqual([{ event: 'message', data: ' two spaces\nx', lastEventId: '' }]);
  });

  it('keeps the last event id across events, ignores ids with NUL, and does not dispatch empty data', () => {
    const { messages } = parse(['id: 7\n\n', 'data: a\n\n', 'id: bad\0id\ndata: b\n\n']);
    expect(messages.map((m) => [m.data, m.lastEventId])).toEqual([
      ['a', '7'],
      ['b', '7'],
    ]);
  });

  it('reports retry only for a number, strips a leading BOM, and waits for the end of a frame split anywhere', () => {
    const text = '\uFEFFretry: 1500\nretry: soon\nid: 1\nevent: t\ndata: {"x":"é"}\n\n';
    const { messages, retries } = parse(text.split(''));
    expect(retries).toEqual([1500]);
    expect(messages).toEqual([{ event: 't', data: '{"x":"é"}', lastEventId: '1' }]);
    expect(parse(['data: incomplete\n']).messages).toEqual([]);
  });
});

describe('the SSE parser against a hostile stream', () => {
  it('throws SseLimitError for a line longer than maxLength, however it is cut into chunks', async () => {
    const { SseLimitError } = await import('@tidings/relays/sse');
    const parser = new SseParser(() => {}, () => {}, { maxLength: 1_000 });
    let error: unknown;
    let pushed = 0;
    try {
      for (; pushed < 10_000; pushed++) parser.push('x'.repeat(10));
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(SseLimitError);
    expect(error).toMatchObject({ reason: 'line', maxLength: 1_000 });
    expect((error as Error).message).toMatch(/a line longer than 1000 characters; the connection was closed/);
    // It stops at the limit, not after everything was buffered.
    expect(pushed).toBe(100);
  });

  it('throws SseLimitError for an event whose data lines add up to more than maxLength', async () => {
    const { SseLimitError } = await import('@tidings/relays/sse');
    const messages: SseMessage[] = [];
    const parser = new SseParser((m) => messages.push(m), () => {}, { maxLength: 100 });
    parser.push(`data: ${'a'.repeat(60)}\ndata: ${'b'.repeat(39)}\n\n`);
    expect(messages.map((m) => m.data.length)).toEqual([100]);
    expect(() => parser.push(`data: ${'a'.repeat(60)}\ndata: ${'b'.repeat(40)}\n\n`)).toThrow(SseLimitError);
  });

  it('looks at each character once, so a long line sent in many small chunks costs linear work', () => {
    const chunks = 2_000;
    const size = 50;
    const original = String.prototype.charCodeAt;
    let reads = 0;
    String.prototype.charCodeAt = function (this: string, index: number) {
      reads++;
      return original.call(this, index);
    };
    try {
      const messages: SseMessage[] = [];
      const parser = new SseParser((m) => messages.push(m));
      parser.push('data: ');
      for (let i = 0; i < chunks; i++) parser.push('y'.repeat(size));
      parser.push('\n\n');
      expect(messages[0]!.data).toHaveLength(chunks * size);
    } finally {
      String.prototype.charCodeAt = original;
    }
    // Rescanning the pending line on every chunk would read about chunks² × size / 2 = 100 million.
    expect(reads).toBeLessThan(3 * chunks * size);
  });
});

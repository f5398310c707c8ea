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

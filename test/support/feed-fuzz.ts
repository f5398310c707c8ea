/**
 * Generators and checks for fuzzing the feeds over HTTP: hostile cursors, query strings and
 * headers, sent with node:http so that any byte a client may put in a header reaches the server.
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import fc from 'fast-check';
import { SseParser, type SseMessage } from '@tidings/relays/sse';

/** What a fuzzed request got back. */
export interface FuzzAnswer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The body, or what a stream sent within the read window. */
  readonly body: string;
}

/** One generated request. */
export interface FuzzRequest {
  readonly method: string;
  /** Path and query, already encoded. */
  readonly path: string;
  readonly headers: Record<string, string>;
  /** The tenant the caller is scoped to (the `x-tenant` header). */
  readonly tenant: string;
}

/** xid8's largest value. */
const beyondHead = '18446744073709551615-0';

/** Any text a client can put in a header value (node:http refuses CR, LF, NUL and other controls). */
export const headerText = fc.string({ unit: fc.integer({ min: 0x20, max: 0xff }).filter((c) => c !== 0x7f).map((c) => String.fromCharCode(c)), maxLength: 60 });

/** Cursors: real ones, start/now, beyond the head, out of range, near misses, and any text. */
export function cursorArbitrary(real: readonly string[]): fc.Arbitrary<string> {
  const number = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 70n }), fc.constantFrom(0n, 2n ** 63n - 1n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n));
  return fc.oneof(
    fc.constantFrom(...real),
    fc.constantFrom('start', 'now', beyondHead, '0-0', '-', '1-', '-1', '01-01', ' 1-1', '1-1 ', '1--1', '1-1-1', '+1-1', '1e3-1', '0x1-1', 'START'),
    fc.tuple(number, number).map(([a, b]) => `${a}-${b}`),
    // A transaction id the log has reached, with any event id (the range of each part on its own).
    fc.tuple(fc.constantFrom(...real.map((c) => c.split('-')[0]!), '0', '1'), number).map(([a, b]) => `${a}-${b}`),
    fc.tuple(fc.constantFrom(...real), fc.constantFrom('0', '9', '-', ' ', '00')).map(([c, s]) => `${c}${s}`),
    headerText,
  );
}

const smallInteger = fc.integer({ min: -3, max: 2_000 }).map(String);
const junk = fc.oneof(headerText, fc.constantFrom('', ' ', '1.5', '1e2', '0x10', '-0', '00001', '9'.repeat(30), 'NaN', 'Infinity'));
const topicPattern = fc.oneof(fc.constantFrom('fuzz.*', 'fuzz.a', 'fuzz.b', '*', 'other.*', 'fuzz.', 'bad topic', '**', 'a,b', ',', ''), headerText);

/** Query parameters the feeds read (and some they do not), each possibly repeated or malformed. */
function queryArbitrary(real: readonly string[], wait: fc.Arbitrary<string>): fc.Arbitrary<string> {
  const pair = fc.oneof(
    fc.tuple(fc.constant('after'), cursorArbitrary(real)),
    fc.tuple(fc.constant('limit'), fc.oneof(smallInteger, junk)),
    fc.tuple(fc.constant('wait'), wait),
    fc.tuple(fc.constant('topics'), topicPattern),
    fc.tuple(fc.oneof(fc.constantFrom('x', 'AFTER', 'after[]', ''), headerText), junk),
  );
  const raw = fc.constantFrom('%', '%zz', '%00', '&', '=', '+', ';', '%E0%A4%A', '%FF');
  const part = fc.oneof(
    { weight: 5, arbitrary: pair.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`) },
    { weight: 1, arbitrary: raw },
  );
  const hostile = fc.array(part, { maxLength: 5 }).map((parts) => (parts.length === 0 ? '' : `?${parts.join('&')}`));
  // Well-formed requests too, so that the answers with events are checked as often as refusals.
  const wellFormed = fc
    .record({
      after: fc.option(fc.oneof(fc.constantFrom(...real), fc.constantFrom('start', 'now'), cursorArbitrary(real)), { nil: undefined }),
      limit: fc.option(fc.integer({ min: 1, max: 50 }), { nil: undefined }),
      topics: fc.option(fc.constantFrom('fuzz.*', 'fuzz.a', 'other.*', '*', 'fuzz.a,other.x'), { nil: undefined }),
    })
    .map((q) => {
      const query = new URLSearchParams();
      for (const [name, value] of Object.entries(q)) if (value !== undefined) query.set(name, String(value));
      const text = query.toString();
      return text === '' ? '' : `?${text}`;
    });
  return fc.oneof(hostile, wellFormed);
}

/** Requests for one feed at `path`, as one of `tenants`. */
export function requestArbitrary(path: string, real: readonly string[], tenants: readonly string[], wait: fc.Arbitrary<string>): fc.Arbitrary<FuzzRequest> {
  return fc
    .record({
      method: fc.oneof({ weight: 12, arbitrary: fc.constant('GET') }, { weight: 1, arbitrary: fc.constantFrom('POST', 'HEAD', 'DELETE', 'OPTIONS') }),
      query: queryArbitrary(real, wait),
      tenant: fc.constantFrom(...tenants),
      lastEventId: fc.oneof({ weight: 2, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: cursorArbitrary(real) }),
      topics: fc.option(fc.constantFrom('fuzz.*', 'fuzz.a', 'fuzz.a,fuzz.b', 'other.*'), { nil: undefined }),
      deny: fc.oneof({ weight: 12, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom('yes', '401') }),
      ifNoneMatch: fc.option(fc.oneof(headerText, fc.constantFrom('*', 'W/"x"', '"x", W/"y"')), { nil: undefined }),
      accept: fc.option(fc.oneof(headerText, fc.constantFrom('text/event-stream', 'application/json', '*/*')), { nil: undefined }),
      extra: fc.option(headerText, { nil: undefined }),
    })
    .map((r) => ({
      method: r.method,
      path: `${path}${r.query}`,
      tenant: r.tenant,
      headers: {
        'x-tenant': r.tenant,
        ...(r.lastEventId !== undefined ? { 'last-event-id': r.lastEventId } : {}),
        ...(r.topics !== undefined ? { 'x-topics': r.topics } : {}),
        ...(r.deny !== undefined ? { 'x-deny': r.deny } : {}),
        ...(r.ifNoneMatch !== undefined ? { 'if-none-match': r.ifNoneMatch } : {}),
        ...(r.accept !== undefined ? { accept: r.accept } : {}),
        ...(r.extra !== undefined ? { 'x-anything': r.extra } : {}),
      },
    }));
}

/**
 * Sends `request`; reads a `text/event-stream` answer for at most `streamMs` (then hangs up), any
 * other body to its end. Fails when no answer starts within `timeoutMs`.
 */
export function send(origin: string, request: FuzzRequest, streamMs: number, timeoutMs: number): Promise<FuzzAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${origin}${request.path}`, { method: request.method, headers: request.headers, agent: false }, (response) => {
      clearTimeout(timer);
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      const done = (): void => resolve({ status: response.statusCode ?? 0, headers: response.headers, body });
      if (response.statusCode === 200 && String(response.headers['content-type']).startsWith('text/event-stream')) {
        setTimeout(() => {
          req.destroy();
          done();
        }, streamMs);
      } else {
        response.once('end', done);
        response.once('error', done);
      }
    });
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer to ${request.method} ${request.path} within ${timeoutMs} ms`));
    }, timeoutMs);
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end();
  });
}

const codes = new Set(['invalid-cursor', 'cursor-expired', 'unauthorized', 'forbidden', 'invalid-request', 'too-many-connections']);

/**
 * The problem in a refusal's body, checked: a known code, a status that matches the answer's, and
 * a message that says what is wrong. Throws with the request and answer otherwise.
 */
export function checkProblem(request: FuzzRequest, answer: FuzzAnswer, problem: Record<string, unknown> | undefined): void {
  const fail = (why: string): never => {
    throw new Error(`${why}: ${request.method} ${request.path} ${JSON.stringify(request.headers)} -> ${answer.status} ${answer.body.slice(0, 300)}`);
  };
  if (problem === undefined) fail('a refusal without a problem body');
  if (!codes.has(String(problem!['error']))) fail('an unknown problem code');
  if (problem!['status'] !== answer.status) fail('a problem whose status is not the answer\'s');
  const message = String(problem!['message'] ?? '');
  // A refusal by the authorize hook carries the application's own message (the test hook's is short).
  const ownMessage = problem!['error'] === 'unauthorized' || problem!['error'] === 'forbidden';
  if (message.length < (ownMessage ? 1 : 15) || problem!['detail'] !== message) fail('a problem without a clear detail');
  if (problem!['error'] === 'invalid-request' && !/query parameter "/.test(message)) fail('an invalid request that does not name its parameter');
  if (problem!['error'] === 'invalid-cursor' && !/cursor/.test(message)) fail('an invalid cursor that does not say so');
}

/** The messages of an event stream's text. */
export function sseMessages(text: string): SseMessage[] {
  const messages: SseMessage[] = [];
  new SseParser((m) => messages.push(m)).push(text);
  return messages;
}

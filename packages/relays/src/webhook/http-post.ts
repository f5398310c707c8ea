import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import type { TLSSocket } from 'node:tls';

/** One POST to make. */
export interface PostRequest {
  readonly url: URL;
  readonly headers: http.OutgoingHttpHeaders;
  readonly body: Buffer;
  readonly agent: http.Agent;
  readonly lookup: LookupFunction;
  /** Until the TCP (and TLS) connection is up. */
  readonly connectTimeoutMs: number;
  /** Until the whole answer has arrived, connecting included. */
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
}

export type PostResult =
  | { readonly ok: true; readonly status: number; readonly headers: http.IncomingHttpHeaders; readonly snippet: string }
  | { readonly ok: false; readonly failure: 'connect-timeout' | 'timeout' | 'network' | 'aborted'; readonly message: string; readonly cause?: unknown };

/** How much of an answer's body is kept for error messages. */
const snippetBytes = 512;
/** Answers longer than this are cut off (and their connection dropped) rather than read to the end. */
const maxAnswerBytes = 64 * 1024;

/**
 * Makes one POST and waits for the whole answer, within a connect timeout and a total timeout,
 * and never past `signal`. Redirects are not followed (a 3xx is just an answer). Never throws.
 * A request that fails on a kept-alive connection the receiver had just closed is retried once on
 * a fresh one, so an idle-timeout race does not cost a backoff.
 */
export async function post(request: PostRequest): Promise<PostResult> {
  const first = await postOnce(request);
  if (!first.ok && first.failure === 'network' && (first.cause as { reusedSocket?: boolean } | undefined)?.reusedSocket) {
    return postOnce(request);
  }
  return first;
}

function postOnce(request: PostRequest): Promise<PostResult> {
  const { url, signal } = request;
  if (signal.aborted) return Promise.resolve(aborted(signal));
  return new Promise<PostResult>((resolve) => {
    let settled = false;
    let connectTimer: NodeJS.Timeout | undefined;
    const client = url.protocol === 'https:' ? https : http;
    const req = client.request({ ...target(url), method: 'POST', agent: request.agent, headers: request.headers, lookup: request.lookup });

    const finish = (result: PostResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(totalTimer);
      clearTimeout(connectTimer);
      signal.removeEventListener('abort', onAbort);
      resolve(result);
    };
    const fail = (failure: 'connect-timeout' | 'timeout' | 'aborted', message: string, cause?: unknown): void => {
      finish({ ok: false, failure, message, cause });
      req.destroy();
    };
    const onAbort = (): void => fail('aborted', 'the send was aborted', signal.reason);
    const totalTimer = setTimeout(() => fail('timeout', `no complete answer within ${request.timeoutMs} ms (sendTimeoutMs)`), request.timeoutMs);
    signal.addEventListener('abort', onAbort, { once: true });

    req.on('socket', (socket) => {
      if (!socket.connecting) return;
      connectTimer = setTimeout(() => fail('connect-timeout', `could not connect within ${request.connectTimeoutMs} ms`), request.connectTimeoutMs);
      const connected = url.protocol === 'https:' ? 'secureConnect' : 'connect';
      (socket as TLSSocket).once(connected, () => clearTimeout(connectTimer));
    });
    req.on('error', (error: NodeJS.ErrnoException) => {
      const cause = Object.assign(error, { reusedSocket: req.reusedSocket });
      finish({ ok: false, failure: 'network', message: error.code ? `${error.code}: ${error.message}` : error.message, cause });
    });
    req.on('response', (res) => {
      const kept: Buffer[] = [];
      let length = 0;
      res.on('data', (chunk: Buffer) => {
        if (length < snippetBytes) kept.push(chunk);
        length += chunk.length;
        // A huge answer is not worth reading: its status is all that counts.
        if (length > maxAnswerBytes) res.destroy();
      });
      const done = (): void => {
        const snippet = Buffer.concat(kept).subarray(0, snippetBytes).toString('utf8');
        finish({ ok: true, status: res.statusCode ?? 0, headers: res.headers, snippet });
      };
      res.on('end', done);
      res.on('close', () => {
        if (length > maxAnswerBytes) done();
        else finish({ ok: false, failure: 'network', message: 'the connection closed before the answer was complete' });
      });
      res.on('error', () => {});
    });
    req.end(request.body);
  });
}

const targets = new WeakMap<URL, http.RequestOptions>();

/** The request options of a URL, worked out once per URL object (a transport keeps its URL). */
function target(url: URL): http.RequestOptions {
  let options = targets.get(url);
  if (!options) {
    options = {
      protocol: url.protocol,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port || undefined,
      path: `${url.pathname}${url.search}`,
      auth: url.username || url.password ? `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` : undefined,
    };
    targets.set(url, options);
  }
  return options;
}

function aborted(signal: AbortSignal): PostResult {
  return { ok: false, failure: 'aborted', message: 'the send was aborted', cause: signal.reason };
}

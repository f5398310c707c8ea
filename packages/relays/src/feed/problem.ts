import type { IncomingMessage, ServerResponse } from 'node:http';
import { CursorExpiredError, InvalidCursorError } from '@tidings/outbox';
import { AccessDeniedError, FeedRequestError, TooManyConnectionsError } from './errors.ts';

/**
 * What a feed answers instead of events: an HTTP status and a problem body (RFC 9457, see
 * `problemJson`).
 */
export interface Problem {
  readonly status: number;
  /**
   * `invalid-cursor`, `cursor-expired`, `unauthorized`, `forbidden`, `invalid-request`,
   * `too-many-connections` or `unavailable`.
   */
  readonly error: string;
  readonly message: string;
  readonly cursor?: string;
  /** Sent as `Retry-After` (429). */
  readonly retryAfterSeconds?: number;
}

/** Translates what went wrong while serving a request into what the client is told. */
export function problemOf(error: unknown): Problem {
  if (error instanceof InvalidCursorError) return { status: 400, error: 'invalid-cursor', message: error.message, cursor: error.cursor };
  if (error instanceof CursorExpiredError) return { status: 410, error: 'cursor-expired', message: error.message, cursor: error.cursor };
  if (error instanceof AccessDeniedError) {
    return { status: error.status, error: error.status === 401 ? 'unauthorized' : 'forbidden', message: error.message };
  }
  if (error instanceof FeedRequestError) return { status: 400, error: 'invalid-request', message: error.message };
  if (error instanceof TooManyConnectionsError) {
    return { status: 429, error: 'too-many-connections', message: error.message, retryAfterSeconds: error.retryAfterSeconds };
  }
  // Database trouble and bugs: say nothing about the internals; the feed's onEvent hears the rest.
  return { status: 503, error: 'unavailable', message: 'the feed cannot be read right now; try again shortly' };
}

/** Whether the problem is one the feed's `onEvent` should hear about (not the client's own mistake). */
export function isServerSide(problem: Problem): boolean {
  return problem.status >= 500;
}

/** The query string of a request, wherever the framework mounted it. */
export function queryOf(request: IncomingMessage): URLSearchParams {
  const url = request.url ?? '/';
  const at = url.indexOf('?');
  return new URLSearchParams(at < 0 ? '' : url.slice(at + 1));
}

const titles: Record<string, string> = {
  'invalid-cursor': 'The cursor cannot be served',
  'cursor-expired': 'The cursor has expired',
  unauthorized: 'Authentication is required',
  forbidden: 'Access is denied',
  'invalid-request': 'The request is malformed',
  'too-many-connections': 'Too many connections',
  unavailable: 'The feed is unavailable',
};

/**
 * The body of a feed's refusal: an RFC 9457 problem (`type`, `title`, `status`, `detail`) that
 * also carries the feed's own fields `error` (the code), `message` (= `detail`) and `cursor`.
 *
 * @example
 * { "type": "urn:tidings:problem:invalid-cursor", "title": "The cursor cannot be served", "status": 400,
 *   "detail": "cursor \"…\" is beyond the head of the log, …", "error": "invalid-cursor", "message": "…", "cursor": "…" }
 */
export function problemJson(problem: Problem): string {
  return JSON.stringify({
    type: `urn:tidings:problem:${problem.error}`,
    title: titles[problem.error] ?? problem.error,
    status: problem.status,
    detail: problem.message,
    error: problem.error,
    message: problem.message,
    ...(problem.cursor ? { cursor: problem.cursor } : {}),
  });
}

/** Answers with an `application/problem+json` body, unless headers were sent already (then just ends). */
export function sendProblem(response: ServerResponse, problem: Problem, headers: Record<string, string> = {}): void {
  if (response.headersSent) {
    response.end();
    return;
  }
  const body = problemJson(problem);
  response.writeHead(problem.status, {
    'Content-Type': 'application/problem+json',
    'Cache-Control': 'no-store',
    'Content-Length': Buffer.byteLength(body),
    ...problemHeaders(problem),
    ...headers,
  });
  response.end(body);
}

/** The headers a problem's status calls for: `WWW-Authenticate` with 401, `Retry-After` with 429. */
export function problemHeaders(problem: Problem): Record<string, string> {
  return {
    ...(problem.status === 401 ? { 'WWW-Authenticate': 'Bearer' } : {}),
    ...(problem.retryAfterSeconds !== undefined ? { 'Retry-After': String(problem.retryAfterSeconds) } : {}),
  };
}

/** An integer query parameter within bounds, or `fallback` when absent. */
export function integerParameter(query: URLSearchParams, name: string, fallback: number, min: number, max: number): number {
  const text = query.get(name);
  if (text === null || text === '') return fallback;
  if (!/^\d{1,9}$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new FeedRequestError(name, `must be a whole number from ${min} to ${max}; got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

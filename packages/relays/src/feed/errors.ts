import { InvalidCursorError, TidingsError, type InvalidCursorReason } from '@tidings/outbox';

/**
 * The authorization hook refused the caller. Throw it from `authorize` to choose the status
 * (401: who are you? 403: you may not); returning `false` from the hook is the same as a 403.
 * Feed clients throw it too when the server answered 401 or 403.
 *
 * @example
 * authorize: (req) => {
 *   const user = verifyToken(req.headers.authorization);
 *   if (!user) throw new AccessDeniedError(401, 'a bearer token is required');
 *   return { tenant: user.tenantId };
 * }
 */
export class AccessDeniedError extends TidingsError {
  override readonly name = 'AccessDeniedError';
  readonly status: 401 | 403;
  constructor(status: 401 | 403 = 403, message = status === 401 ? 'authentication is required' : 'access to this feed is denied') {
    super(message);
    this.status = status;
  }
}

/**
 * A feed server answered a client helper with a status it cannot act on (a 5xx, an unexpected
 * 4xx, or a body that is not a feed). 5xx and 429 are retried with backoff; other statuses stop
 * the consumer, because asking again would get the same answer.
 *
 * @example
 * consumer.done.catch((error) => {
 *   if (error instanceof FeedResponseError && error.status === 404) log.error('wrong feed URL', error.url);
 * });
 */
export class FeedResponseError extends TidingsError {
  override readonly name = 'FeedResponseError';
  readonly status: number;
  /**
   * The `error` of the server's JSON problem body, when it sent one (a tidings feed sends
   * `invalid-request`, `too-many-connections`, `unavailable` …; another server anything).
   */
  readonly reason: string | undefined;
  readonly url: string;
  /** How long the server asked to wait before the next request (its `Retry-After`), if it did. */
  readonly retryAfterMs: number | undefined;
  constructor(url: string, status: number, reason: string | undefined, detail: string, retryAfterMs?: number) {
    super(`the feed at ${url} answered ${status}${reason ? ` (${reason})` : ''}: ${detail}`);
    this.url = url;
    this.status = status;
    this.reason = reason;
    this.retryAfterMs = retryAfterMs;
  }

  /** Whether asking again later may succeed. */
  get retryable(): boolean {
    return this.status >= 500 || this.status === 429 || this.status === 408 || this.status === 0;
  }
}

/** A query parameter of a feed request is malformed; answered with 400 and never thrown to users. */
export class FeedRequestError extends TidingsError {
  override readonly name = 'FeedRequestError';
  readonly parameter: string;
  constructor(parameter: string, detail: string) {
    super(`query parameter "${parameter}" ${detail}`);
    this.parameter = parameter;
  }
}

/**
 * A feed request's cursor (`Last-Event-ID`, `?after=`) cannot be served: it is not a cursor, its
 * numbers are out of range, or it lies beyond the head of the log. Answered with 400
 * (`invalid-cursor`); an `InvalidCursorError`, so client helpers stop on it as on any invalid cursor.
 */
export class FeedCursorError extends InvalidCursorError {
  constructor(cursor: string, reason: InvalidCursorReason, detail: string) {
    super(cursor, reason);
    this.message = detail;
  }
}

/** Which limit was reached: the feed's total, or the caller's tenant's share. */
export type TooManyConnectionsReason = 'total' | 'tenant';

/**
 * A feed already holds as many long-lived requests (SSE streams, long polls) as it allows, in
 * total or for the caller's tenant. Answered with 429 and `Retry-After`; a slot frees up when one
 * of those requests ends.
 */
export class TooManyConnectionsError extends TidingsError {
  override readonly name = 'TooManyConnectionsError';
  readonly reason: TooManyConnectionsReason;
  readonly max: number;
  readonly tenant: string | undefined;
  readonly retryAfterSeconds: number;
  constructor(reason: TooManyConnectionsReason, max: number, tenant: string | undefined, what: string, retryAfterSeconds: number) {
    super(
      reason === 'tenant'
        ? `${tenant === undefined ? 'callers without a tenant have' : `tenant ${JSON.stringify(tenant)} has`} ${max} ${what} open, the most this feed allows per tenant; ` +
            `close one or retry after ${retryAfterSeconds} s (the feed's maxConnectionsPerTenant option sets the limit)`
        : `this feed serves ${max} ${what}, the most it allows; retry after ${retryAfterSeconds} s (the feed's maxConnections option sets the limit)`,
    );
    this.reason = reason;
    this.max = max;
    this.tenant = tenant;
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

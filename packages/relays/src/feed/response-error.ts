import { CursorExpiredError, InvalidCursorError } from '@tidings/outbox';
import { AccessDeniedError, FeedResponseError } from './errors.ts';

/** A feed's problem `{ error, message, cursor? }`, as sent in a JSON body or a `feed-error` frame. */
export interface ProblemBody {
  readonly error?: string;
  readonly message?: string;
  readonly cursor?: string;
}

/** The error a client helper raises for a problem the server reported. */
export function problemError(url: string, status: number, body: ProblemBody | undefined, retryAfterMs?: number): Error {
  const reason = body?.error;
  if (reason === 'cursor-expired' || status === 410) return new CursorExpiredError(body?.cursor ?? '(unknown)');
  if (reason === 'invalid-cursor') return new InvalidCursorError(body?.cursor ?? '(unknown)');
  if (status === 401 || status === 403) return new AccessDeniedError(status, body?.message);
  return new FeedResponseError(url, status, reason, body?.message ?? 'unexpected answer', retryAfterMs);
}

/** Reads a non-2xx answer (JSON, or an event stream holding one `feed-error` frame) into an error. */
export async function responseError(url: string, response: Response): Promise<Error> {
  const text = (await response.text().catch(() => '')).slice(0, 64 * 1024);
  return problemError(url, response.status, parseProblem(text), retryAfterMs(response.headers.get('retry-after')));
}

/** The longest `Retry-After` a consumer honours: a server cannot park it for longer. */
const maxRetryAfterMs = 3_600_000;

/** `Retry-After` in seconds (the HTTP-date form is not used by feeds), in ms; undefined when absent or malformed. */
function retryAfterMs(header: string | null): number | undefined {
  if (header === null || !/^\d{1,7}$/.test(header.trim())) return undefined;
  return Math.min(Number(header.trim()) * 1000, maxRetryAfterMs);
}

export function parseProblem(text: string): ProblemBody | undefined {
  const data = /^data: ?(.*)$/m.exec(text)?.[1] ?? text;
  try {
    const parsed: unknown = JSON.parse(data);
    return typeof parsed === 'object' && parsed !== null ? (parsed as ProblemBody) : undefined;
  } catch {
    return undefined;
  }
}

/** Errors after which asking the feed again cannot help: the consumer stops with them. */
export function isFatal(error: unknown): boolean {
  if (error instanceof CursorExpiredError || error instanceof InvalidCursorError || error instanceof AccessDeniedError) return true;
  return error instanceof FeedResponseError && !error.retryable;
}

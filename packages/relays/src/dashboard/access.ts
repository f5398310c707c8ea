import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** What a request wants to do: look, or change something (retry, discard, enable, disable, rotate a secret). */
export type DashboardAction = 'read' | 'act';

/**
 * The application's decision: may this request read the dashboard, or act on it? Called for
 * every request, with `'act'` also when a page decides whether to show its action buttons.
 */
export type DashboardAuthorize = (request: IncomingMessage, action: DashboardAction) => boolean | Promise<boolean>;

export const cookieName = 'tidings_dashboard';

/** A new access token: 32 random bytes, URL-safe. */
export function newAccessToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Compares in constant time (both sides hashed to the same length first). */
export function sameToken(given: string, expected: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** Where a request carried the access token, if it did. */
export type TokenSource = 'bearer' | 'cookie' | 'query' | undefined;

/** Finds the token in the Authorization header, the cookie or (for GET) the `token` query parameter. */
export function presentedToken(request: IncomingMessage, url: URL, expected: string): TokenSource {
  const authorization = request.headers.authorization;
  if (authorization?.startsWith('Bearer ') && sameToken(authorization.slice(7).trim(), expected)) return 'bearer';
  const cookie = readCookie(request.headers.cookie, cookieName);
  if (cookie !== undefined && sameToken(cookie, expected)) return 'cookie';
  const query = url.searchParams.get('token');
  if (request.method === 'GET' && query !== null && sameToken(query, expected)) return 'query';
  return undefined;
}

function readCookie(header: string | undefined, name: string): string | undefined {
  for (const part of header?.split(';') ?? []) {
    const at = part.indexOf('=');
    if (at > 0 && part.slice(0, at).trim() === name) return decodeCookie(part.slice(at + 1).trim());
  }
  return undefined;
}

/** A cookie value as sent; one that is not percent-encoded text (`%`, `%FF`) is no token at all. */
function decodeCookie(value: string): string | undefined {
  try {
    return decodeURIComponent(value);
  } catch {
    return undefined;
  }
}

/** The cookie that carries the token after the first visit: not readable by scripts, never sent cross-site. */
export function tokenCookie(token: string, path: string, secure: boolean): string {
  return `${cookieName}=${encodeURIComponent(token)}; Path=${path}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

/**
 * Cross-site request forgery check for state-changing requests: the browser's Origin header (or,
 * when a browser sent none, its Referer) must name this very host. A request that proved itself
 * with a bearer token needs no such check: a browser never attaches one on its own.
 */
export function sameOrigin(request: IncomingMessage): boolean {
  const host = request.headers.host;
  const origin = request.headers.origin ?? request.headers.referer;
  if (!host || !origin || origin === 'null') return false;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

/**
 * Masks credentials in URLs and connection strings before they reach a log, a listing or an error
 * message. URLs are parsed, never cut at the first `@`, so a password containing `@` is masked
 * whole rather than leaking its tail.
 */

/**
 * The URL with its password replaced by `***` (the user name kept), for operators' logs.
 *
 * @example
 * maskPassword('postgres://app:p@ss@db.internal/orders'); // 'postgres://app:***@db.internal/orders'
 */
export function maskPassword(url: string): string {
  return mask(url, (user, password) => (password === undefined ? user : `${user}:***`));
}

/**
 * The URL with its user name and password replaced by `***`: for listings that people other than
 * the operator see (a webhook endpoint's Basic-auth credentials are write-only).
 *
 * @example
 * maskCredentials('https://hook:s3cret@acme.example.com/in'); // 'https://***:***@acme.example.com/in'
 */
export function maskCredentials(url: string): string {
  return mask(url, (_user, password) => (password === undefined ? '***' : '***:***'));
}

function mask(url: string, userinfo: (user: string, password: string | undefined) => string): string {
  if (typeof url !== 'string') return url;
  // key=value connection strings (libpq): password=… up to the next space, or a quoted value.
  if (!/^[a-z][a-z0-9+.-]*:/i.test(url) && /(^|\s)password\s*=/i.test(url)) {
    return url.replace(/((?:^|\s)password\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)/gi, '$1***');
  }
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (parsed && parsed.host !== '') {
    if (!parsed.username && !parsed.password) return url;
    const scheme = url.slice(0, url.indexOf(':') + 1);
    const start = scheme.length + 2;
    const end = authorityEnd(url, start);
    const at = url.lastIndexOf('@', end - 1);
    if (url.slice(scheme.length, start) === '//' && at >= start) {
      return url.slice(0, start) + userinfo(parsed.username, parsed.password === '' ? undefined : parsed.password) + url.slice(at);
    }
  }
  return stripUserinfo(url, userinfo);
}

/** Without a parse (or when parsing disagrees with the text): everything up to the authority's last `@`. */
function stripUserinfo(url: string, userinfo: (user: string, password: string | undefined) => string): string {
  const match = /^([a-z][a-z0-9+.-]*:\/\/)/i.exec(url);
  if (!match) return url;
  const start = match[1]!.length;
  const end = authorityEnd(url, start);
  const at = url.lastIndexOf('@', end - 1);
  if (at < start) return url;
  const info = url.slice(start, at);
  const colon = info.indexOf(':');
  return url.slice(0, start) + userinfo(colon < 0 ? info : info.slice(0, colon), colon < 0 ? undefined : info.slice(colon + 1)) + url.slice(at);
}

/** Where the authority of a URL starting its authority at `start` ends: the first `/`, `?` or `#`. */
function authorityEnd(url: string, start: number): number {
  const rest = url.slice(start).search(/[/?#]/);
  return rest < 0 ? url.length : start + rest;
}

import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { ConfigError, discardDeadLetters, listDeadLetters, retryDeadLetters, status, TidingsError, type Database, type OutboxStatus, type StatusOptions } from '@tidings/outbox';
import { maskPassword } from '../redact.ts';
import { newAccessToken, presentedToken, sameOrigin, tokenCookie, type DashboardAuthorize } from './access.ts';
import { html } from './html.ts';
import type { SecretKeyring } from '../webhook/secret-keyring.ts';
import { LiveStatus, overviewMessage, relayMessage, type Reading } from './live-status.ts';
import { confirmPage, deadLettersPage, endpointsPage, messagePage, notice, overviewPage, relayPage, rotatedPage, type PageContext } from './pages.ts';
import { Sampler, throughputMeasure } from './sampler.ts';

export interface DashboardOptions {
  /** The tidings database handle (`pgDatabase(url)`), as relays and admin calls take it. */
  readonly database: Database;
  /** Default `tidings`. */
  readonly schema?: string;
  /** The path the handler is mounted at, starting and ending with `/`. Default `/`. */
  readonly path?: string;
  /**
   * Who may read and who may act. Without it, every request needs the access token (`token`);
   * with it, the application decides, and the token is checked only when one is given.
   */
  readonly authorize?: DashboardAuthorize;
  /** The access token (at least 16 characters). Default: a random one when there is no `authorize`. */
  readonly token?: string;
  /** How often open pages get a new reading of `status()`, in ms. Default 2 000. */
  readonly refreshMs?: number;
  /**
   * How often the throughput and lag charts get a point, in ms, from the handler's creation until
   * `close()`, whether or not a page is open; an hour of points is kept. Default 10 000.
   */
  readonly sampleMs?: number;
  /**
   * The keys webhook signing secrets are encrypted with, as `webhookEndpoints` takes them; needed
   * to rotate a secret from the endpoints page. Default: `TIDINGS_SECRET_KEY` (and
   * `TIDINGS_SECRET_KEY_OLD`) from the environment. Without either, rotation is refused.
   */
  readonly keyring?: SecretKeyring;
  /** As in `status()`. */
  readonly stalledAfterSeconds?: number;
  readonly abandonedAfterSeconds?: number;
  /** Shown in the page header, e.g. which database; a URL's password is masked. */
  readonly label?: string;
  /**
   * Gets every error a request met that no page explains (the database unreachable, an
   * `authorize` that threw), answered 500 without the reason, and every failed reading of the
   * charts' sampler (its message begins "a reading for the dashboard's charts failed", the
   * original error is its cause).
   */
  readonly onError?: (error: Error) => void;
}

/** A node:http request handler, with what it needs to be reached and stopped. */
export interface Dashboard {
  /** Never rejects, so it can be mounted with `void board(request, response)` (errors go to `onError`). */
  (request: IncomingMessage, response: ServerResponse): Promise<void>;
  /** The access token requests must carry, or undefined when `authorize` alone decides. */
  readonly token: string | undefined;
  /** Where it is mounted. */
  readonly path: string;
  /** Stops the charts' sampler and ends the live streams of open pages. */
  close(): Promise<void>;
}

const letterLimit = 200;
const assets = new URL('../../src/dashboard/assets/', import.meta.url); // the same folder from src/ and dist/

/**
 * The dashboard: relays and their lag per partition (live while a page is open), what holds the
 * feeds, throughput and lag over the last hour as charts, dead letters with payload, headers and
 * every attempt (retry, discard), parked keys, and webhook endpoints (enable, disable, rotate the
 * signing secret). Everything comes from `status()`, the dead-letter functions and the endpoint
 * registry. Pages are plain HTML with one small script, served from the package.
 *
 * @example
 * const board = dashboard({ database: pgDatabase(url), path: '/tidings/', authorize: (req, action) => isAdmin(req) });
 * http.createServer((req, res) => (req.url?.startsWith('/tidings/') ? board(req, res) : app(req, res))).listen(3000);
 */
export function dashboard(options: DashboardOptions): Dashboard {
  const settings = checkOptions(options);
  const { database: db, schema, base, token, authorize } = settings;
  const readStatusWith = async (): Promise<{ report: OutboxStatus; filters: StatusOptions['filters'] }> => {
    const { webhookFilters } = await import('../webhook/status-filters.ts');
    const filters = await webhookFilters(db, schema);
    return { filters, report: await status(db, { schema, stalledAfterSeconds: options.stalledAfterSeconds, abandonedAfterSeconds: options.abandonedAfterSeconds, filters }) };
  };
  const readStatus = async (): Promise<OutboxStatus> => (await readStatusWith()).report;
  const live = new LiveStatus(readStatus, settings.refreshMs);
  const onSampleError = options.onError && ((error: Error) => options.onError!(new Error(`a reading for the dashboard's charts failed: ${error.message}`, { cause: error })));
  const sampler = new Sampler(throughputMeasure(db, schema, readStatusWith), settings.sampleMs, onSampleError);
  sampler.start();
  const streams = new Set<ServerResponse>();
  const label = options.label === undefined ? '' : maskPassword(options.label);

  const handler = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    headers(response);
    const url = requestUrl(request);
    if (url === undefined) return plain(response, 400, 'bad request target: expected a path such as /');
    if (!url.pathname.startsWith(base)) return plain(response, 404, 'not found');
    const route = url.pathname.slice(base.length);
    if (request.method !== 'GET' && request.method !== 'HEAD' && request.method !== 'POST') {
      response.setHeader('Allow', 'GET, HEAD, POST');
      return plain(response, 405, 'method not allowed');
    }
    const via = token === undefined ? undefined : presentedToken(request, url, token);
    if (token !== undefined && via === undefined) {
      response.setHeader('WWW-Authenticate', 'Bearer');
      return plain(response, 401, 'the dashboard needs its access token: open the URL `tidings dashboard` printed, or send Authorization: Bearer TOKEN');
    }
    const action = request.method === 'POST' ? 'act' : 'read';
    if (authorize && !(await authorize(request, action))) return plain(response, 403, action === 'act' ? 'you may not act on this dashboard' : 'you may not read this dashboard');
    if (via === 'query') {
      // The token leaves the address bar (and history) at once; the cookie carries it from here.
      url.searchParams.delete('token');
      response.setHeader('Set-Cookie', tokenCookie(token!, base, Boolean((request.socket as TLSSocket).encrypted)));
      // One leading slash: a path such as //evil.example/ would be read by the browser as another host.
      response.setHeader('Location', url.pathname.replace(/^\/+/, '/') + url.search);
      return plain(response, 303, 'signed in');
    }
    const ctx: PageContext = { base, label, canAct: action === 'act' || !authorize || (await authorize(request, 'act')) };
    try {
      if (request.method === 'POST') {
        if (route !== 'act') return plain(response, 404, 'not found');
        if (via !== 'bearer' && !sameOrigin(request)) return plain(response, 403, 'refused: the request did not come from a page of this dashboard (Origin check)');
        return await act(request, response, ctx);
      }
      switch (route) {
        case '':
          return page(response, overviewPage(ctx, await readStatus(), notice(url.searchParams.get('done'), url.searchParams.get('n')), sampler.samples()));
        case 'relay':
          return page(response, relayPage(ctx, await readStatus(), url.searchParams.get('name') ?? ''));
        case 'dead-letters': {
          const relay = url.searchParams.get('relay') || null;
          const letters = await listDeadLetters(db, { schema, relay: relay ?? undefined, limit: letterLimit });
          return page(response, deadLettersPage(ctx, letters, relay, notice(url.searchParams.get('done'), url.searchParams.get('n')), letterLimit));
        }
        case 'endpoints': {
          const [{ allEndpoints }, { webhookRelayName }] = await Promise.all([import('../webhook/status-filters.ts'), import('../webhook/endpoint.ts')]);
          const [endpoints, report] = await Promise.all([allEndpoints(db, schema), readStatus()]);
          return page(response, endpointsPage(ctx, endpoints, report, webhookRelayName, notice(url.searchParams.get('done'), null)));
        }
        case 'live':
          return stream(request, response, url.searchParams.get('relay'));
        case 'dashboard.js':
          return asset(response, 'dashboard.js', 'text/javascript; charset=utf-8');
        case 'dashboard.css':
          return asset(response, 'dashboard.css', 'text/css; charset=utf-8');
        default:
          return plain(response, 404, 'not found');
      }
    } catch (error) {
      if (error instanceof TidingsError) return page(response, messagePage(ctx, 'Not done', error.message), 409);
      throw error;
    }
  };

  async function act(request: IncomingMessage, response: ServerResponse, ctx: PageContext): Promise<void> {
    const form = await readForm(request);
    if (form === undefined) return plain(response, 400, 'expected a form (application/x-www-form-urlencoded) of at most 8 KiB');
    const action = form.get('action') ?? '';
    const id = form.get('id') ?? '';
    const confirmed = form.get('confirmed') === 'yes';
    if (action === 'retry' || action === 'discard') {
      if (!/^\d{1,19}$/.test(id)) return plain(response, 400, 'id: expected a dead letter number');
      const [letter] = await listDeadLetters(db, { schema, ids: [id] });
      if (!letter) return page(response, messagePage(ctx, 'Not found', `No dead letter #${id}: it was retried or discarded already.`), 404);
      if (!confirmed) {
        const parked = letter.parksKey ? ` Its key is parked with ${letter.parkedEvents} events behind it: ${action === 'retry' ? 'they follow it, in order' : 'they are released and delivered'}.` : '';
        const what = action === 'retry' ? 'Deliver dead letter' : 'Delete dead letter';
        return page(response, confirmPage(ctx, action, id, html`${what} #${id} (${letter.topic}, relay ${letter.relay}) ${action === 'discard' ? 'for good' : 'again'}?${parked}`, 'dead-letters'));
      }
      const n = action === 'retry' ? await retryDeadLetters(db, { schema, ids: [id] }) : await discardDeadLetters(db, { schema, ids: [id] });
      return redirect(response, `${base}dead-letters?done=${action}&n=${n}`);
    }
    if (action === 'enable' || action === 'disable') {
      const { webhookEndpoints } = await import('../webhook/endpoints.ts');
      const endpoints = webhookEndpoints({ schema });
      const endpoint = /^[\w-]{1,100}$/.test(id) ? await endpoints.get(db, id) : undefined;
      if (!endpoint) return page(response, messagePage(ctx, 'Not found', `No webhook endpoint ${id}.`), 404);
      if (!confirmed) {
        const question = action === 'disable' ? html`Stop deliveries to ${endpoint.url} (${endpoint.id})? Its place is kept.` : html`Resume deliveries to ${endpoint.url} (${endpoint.id}) where they stopped?`;
        return page(response, confirmPage(ctx, action, id, question, 'endpoints'));
      }
      if (action === 'disable') await endpoints.disable(db, id, 'disabled from the dashboard');
      else await endpoints.enable(db, id);
      return redirect(response, `${base}endpoints?done=${action}`);
    }
    if (action === 'rotate-secret') return rotate(response, ctx, id, form, confirmed);
    return plain(response, 400, 'action: expected retry, discard, enable, disable or rotate-secret');
  }

  async function rotate(response: ServerResponse, ctx: PageContext, id: string, form: URLSearchParams, confirmed: boolean): Promise<void> {
    const [{ webhookEndpoints, defaultGracePeriodMs }, { requireKeyring }, { graceChoices, rotateOnce }] = await Promise.all([
      import('../webhook/endpoints.ts'),
      import('../webhook/secret-keyring.ts'),
      import('./secret-rotation.ts'),
    ]);
    const endpoint = /^[\w-]{1,100}$/.test(id) ? await webhookEndpoints({ schema }).get(db, id) : undefined;
    if (!endpoint) return page(response, messagePage(ctx, 'Not found', `No webhook endpoint ${id}.`), 404);
    // Refused before the confirmation: without the key, the new secret could not be stored.
    const keyring = requireKeyring(settings.keyring, 'rotate a webhook signing secret from the dashboard');
    if (!confirmed) return page(response, confirmPage(ctx, 'rotate-secret', id, html`Give ${endpoint.url} (${endpoint.id}) a new signing secret?`, 'endpoints', { version: endpoint.version, graceChoices, defaultMs: defaultGracePeriodMs }));
    const gracePeriodMs = Number(form.get('grace'));
    const version = Number(form.get('version'));
    if (!graceChoices.some((choice) => choice.ms === gracePeriodMs)) return plain(response, 400, `grace: expected one of ${graceChoices.map((c) => c.ms).join(', ')} (ms)`);
    if (!Number.isSafeInteger(version) || version < 0) return plain(response, 400, 'version: expected the version the confirmation page showed');
    const rotated = await rotateOnce(db, { schema, keyring }, id, version, gracePeriodMs);
    if (!rotated) {
      return page(response, messagePage(ctx, 'Not rotated again', `This confirmation was used already, or endpoint ${id} changed since it was shown: the secret was not rotated. The secret shown after the first submission is the current one; to rotate again, start from the endpoints page.`), 409);
    }
    return page(response, rotatedPage(ctx, endpoint, rotated.secret, rotated.previousValidUntil));
  }

  function stream(request: IncomingMessage, response: ServerResponse, relay: string | null): void {
    response.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-store', Connection: 'keep-alive' });
    response.write('retry: 5000\n\n');
    streams.add(response);
    const stop = live.subscribe((reading: Reading) => {
      // A page that does not keep up skips readings rather than piling them up in memory.
      if (response.writableLength > 1_048_576) return;
      if ('failed' in reading) response.write(`event: failure\ndata: ${JSON.stringify({ at: reading.at.toISOString() })}\n\n`);
      else response.write(`data: ${relay === null ? overviewMessage(reading.report, reading.at, sampler.samples()) : relayMessage(reading.report, reading.at, relay)}\n\n`);
    });
    const end = () => {
      stop();
      streams.delete(response);
    };
    request.once('close', end);
    response.once('close', end);
  }

  /** An error no page explains: answered 500 and handed to `onError`, never left to reject a promise the application ignores. */
  const failed = (response: ServerResponse, error: unknown): void => {
    try {
      options.onError?.(error instanceof Error ? error : new Error(String(error)));
    } catch {
      // The observer's failure is its own; the request is still answered.
    }
    if (response.headersSent) return void response.destroy();
    plain(response, 500, 'the dashboard could not answer this request (the reason went to its onError)');
  };

  return Object.assign((request: IncomingMessage, response: ServerResponse) => handler(request, response).catch((error: unknown) => failed(response, error)), {
    token,
    path: base,
    async close() {
      sampler.stop();
      live.stop();
      for (const response of streams) response.end();
      streams.clear();
    },
  });
}

function checkOptions(options: DashboardOptions) {
  if (!options || typeof options.database?.query !== 'function') throw new ConfigError('database', 'expected a tidings Database, e.g. pgDatabase(url)');
  const base = options.path ?? '/';
  if (typeof base !== 'string' || !base.startsWith('/') || !base.endsWith('/')) throw new ConfigError('path', `must start and end with "/", got ${JSON.stringify(base)}`);
  if (options.authorize !== undefined && typeof options.authorize !== 'function') throw new ConfigError('authorize', 'expected a function (request, action) => boolean');
  if (options.onError !== undefined && typeof options.onError !== 'function') throw new ConfigError('onError', 'expected a function (error) => void');
  if (options.token !== undefined && (typeof options.token !== 'string' || options.token.length < 16)) throw new ConfigError('token', 'expected a string of at least 16 characters');
  const refreshMs = options.refreshMs ?? 2000;
  if (!Number.isInteger(refreshMs) || refreshMs < 250) throw new ConfigError('refreshMs', `expected a whole number of milliseconds of at least 250, got ${refreshMs}`);
  const sampleMs = options.sampleMs ?? 10_000;
  if (!Number.isInteger(sampleMs) || sampleMs < 100 || sampleMs > 600_000) throw new ConfigError('sampleMs', `expected a whole number of milliseconds from 100 to 600 000, got ${sampleMs}`);
  if (options.keyring !== undefined && typeof options.keyring?.seal !== 'function') throw new ConfigError('keyring', 'expected a SecretKeyring, e.g. secretKeyring({ current: process.env.TIDINGS_SECRET_KEY })');
  const token = options.token ?? (options.authorize ? undefined : newAccessToken());
  return { database: options.database, schema: options.schema, base, token, authorize: options.authorize, refreshMs, sampleMs, keyring: options.keyring };
}

function headers(response: ServerResponse): void {
  response.setHeader('Content-Security-Policy', "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'");
  response.setHeader('X-Content-Type-Options', 'nosniff');
  // same-origin, not no-referrer: with no-referrer a browser sends `Origin: null` on POST, and the CSRF check needs the origin.
  response.setHeader('Referrer-Policy', 'same-origin');
  response.setHeader('Cache-Control', 'no-store');
}

/** The request's path and query; undefined for a target that is no URL path (`//`, `//[`), which a client may send. */
function requestUrl(request: IncomingMessage): URL | undefined {
  try {
    return new URL(request.url ?? '/', 'http://dashboard.invalid');
  } catch {
    return undefined;
  }
}

function plain(response: ServerResponse, code: number, text: string): void {
  response.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8' });
  response.end(`${text}\n`);
}

function page(response: ServerResponse, body: string, code = 200): void {
  response.writeHead(code, { 'Content-Type': 'text/html; charset=utf-8' });
  response.end(body);
}

function redirect(response: ServerResponse, location: string): void {
  response.writeHead(303, { Location: location });
  response.end();
}

async function asset(response: ServerResponse, name: string, type: string): Promise<void> {
  const body = await readFile(new URL(name, assets));
  response.writeHead(200, { 'Content-Type': type });
  response.end(body);
}

async function readForm(request: IncomingMessage): Promise<URLSearchParams | undefined> {
  if (!request.headers['content-type']?.startsWith('application/x-www-form-urlencoded')) return undefined;
  let body = '';
  for await (const chunk of request) {
    body += chunk;
    if (body.length > 8192) return undefined;
  }
  return new URLSearchParams(body);
}

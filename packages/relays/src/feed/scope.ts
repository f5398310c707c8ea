import type { IncomingMessage } from 'node:http';
import type { FeedRequest } from './http-types.ts';
import type { OutboxEvent } from '@tidings/outbox';
import { AccessDeniedError, FeedRequestError } from './errors.ts';

/**
 * What one caller may read: one tenant's events (absent: every event, whatever its tenant) and
 * topic patterns (exact names, or prefixes ending in `*`; absent: every topic).
 *
 * @example
 * const scope: FeedScope = { tenant: 'acme', topics: ['orders.*', 'billing.invoice-paid'] };
 */
export interface FeedScope {
  readonly tenant?: string | undefined;
  readonly topics?: readonly string[] | undefined;
}

/**
 * Maps a request to what its caller may read, or refuses it: return `false` (403) or throw
 * `AccessDeniedError` (401 or 403). Return `{}` only for callers that may read every tenant's
 * events. The topics a client asks for with `?topics=` are narrowed to what the hook allows.
 *
 * @example
 * const authorize: Authorize = async (req) => {
 *   const session = await sessions.fromCookie(req.headers.cookie);
 *   return session ? { tenant: session.tenantId, topics: ['orders.*'] } : false;
 * };
 */
export type Authorize = {
  // A method's parameter is checked both ways, so a hook written for node:http's IncomingMessage still fits.
  check(request: FeedRequest): FeedScope | false | Promise<FeedScope | false>;
}['check'];

/** A scope after authorization and the client's own topic filter: what a connection reads. */
export interface ResolvedScope {
  readonly tenant: string | undefined;
  readonly topics: readonly string[] | undefined;
  /** Equal for scopes that select the same events, so their reads can be shared. */
  readonly key: string;
  /** The same selection as `readFeed` makes with `tenant` and `topics`, for events in memory. */
  matches(event: OutboxEvent): boolean;
}

const patternShape = /^(?:[A-Za-z0-9._-]{1,249}\*?|\*)$/;

/** Whether `pattern` is a topic name or a prefix ending in `*`, as feeds accept them. */
export function isTopicPattern(pattern: unknown): pattern is string {
  return typeof pattern === 'string' && patternShape.test(pattern);
}

/** Runs the hook and narrows its topics by the client's `?topics=` list. */
export async function resolveScope(authorize: Authorize, request: IncomingMessage, requested: readonly string[] | undefined): Promise<ResolvedScope> {
  const granted = await authorize(request);
  if (granted === false) throw new AccessDeniedError(403);
  if (typeof granted !== 'object' || granted === null) {
    throw new TypeError(`the authorize hook must return a scope object or false; it returned ${String(granted)}`);
  }
  const allowed = granted.topics === undefined ? undefined : granted.topics.map((p) => checkPattern(p, 'authorize().topics'));
  const topics = intersect(requested, allowed);
  if (topics !== undefined && topics.length === 0) {
    throw new AccessDeniedError(403, `none of the requested topics (${requested!.join(', ')}) may be read by this caller`);
  }
  return scope(granted.tenant, topics);
}

/** Builds a resolved scope directly (tests, and feeds without a request). */
export function scope(tenant: string | undefined, topics: readonly string[] | undefined): ResolvedScope {
  if (tenant !== undefined && (typeof tenant !== 'string' || tenant.length === 0)) {
    throw new TypeError(`a feed scope's tenant must be a non-empty string; got ${JSON.stringify(tenant)}`);
  }
  const sorted = topics === undefined ? undefined : [...new Set(topics)].sort();
  const match = topicMatcher(sorted);
  return {
    tenant,
    topics: sorted,
    key: JSON.stringify([tenant ?? null, sorted ?? null]),
    matches: (event) => (tenant === undefined || event.tenant === tenant) && match(event.topic),
  };
}

/** Parses `?topics=a,b.*` (also repeated `?topics=`); undefined when absent. */
export function requestedTopics(query: URLSearchParams): string[] | undefined {
  const values = query.getAll('topics');
  if (values.length === 0) return undefined;
  const list = values.flatMap((value) => value.split(',')).map((p) => p.trim()).filter((p) => p !== '');
  if (list.length === 0) throw new FeedRequestError('topics', 'is empty; list topic names or prefixes ending in *, separated by commas');
  return list.map((p) => checkPattern(p, 'topics'));
}

function checkPattern(pattern: string, where: string): string {
  if (!isTopicPattern(pattern)) {
    const detail = `has ${JSON.stringify(pattern)}, which is not a topic name or a prefix ending in *`;
    if (where === 'topics') throw new FeedRequestError('topics', detail);
    throw new TypeError(`${where} ${detail}`);
  }
  return pattern;
}

function topicMatcher(patterns: readonly string[] | undefined): (topic: string) => boolean {
  if (patterns === undefined) return () => true;
  const exact = new Set(patterns.filter((p) => !p.endsWith('*')));
  const prefixes = patterns.filter((p) => p.endsWith('*')).map((p) => p.slice(0, -1));
  return (topic) => exact.has(topic) || prefixes.some((prefix) => topic.startsWith(prefix));
}

/** The topics in both lists; undefined stands for every topic. */
function intersect(requested: readonly string[] | undefined, allowed: readonly string[] | undefined): string[] | undefined {
  if (requested === undefined) return allowed && [...allowed];
  if (allowed === undefined) return [...requested];
  const both = new Set<string>();
  for (const r of requested) {
    for (const a of allowed) {
      if (within(r, a)) both.add(r);
      else if (within(a, r)) both.add(a);
    }
  }
  return [...both];
}

/** Whether every topic matched by pattern `inner` is matched by `outer`. */
function within(inner: string, outer: string): boolean {
  if (!outer.endsWith('*')) return inner === outer;
  return inner.startsWith(outer.slice(0, -1));
}

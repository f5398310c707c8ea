import type { Json } from '@tidings/outbox';
import { randomBytes } from 'node:crypto';
import { InvalidEndpointError } from './errors.ts';

/** Why an endpoint is disabled: by an operator, by a 410 Gone answer, or after failing too long. */
export type DisabledReason = 'manual' | 'gone' | 'failing';

/** A registered webhook endpoint, as the registry returns it (without its secrets). */
export interface WebhookEndpoint {
  /** `ep_…`; its relay is named `webhook:<id>` (see `webhookRelayName`). */
  readonly id: string;
  readonly url: string;
  readonly description: string;
  /** Topic names or prefixes ending in `*`; null: every topic. */
  readonly topics: readonly string[] | null;
  /** The tenant whose events the endpoint receives; null: every event, whatever its tenant. */
  readonly tenant: string | null;
  readonly metadata: Readonly<Record<string, Json>>;
  readonly enabled: boolean;
  /** Why and when it was disabled; null while enabled. */
  readonly disabled: { readonly reason: DisabledReason; readonly detail: string; readonly at: Date } | null;
  /** When the current run of failed attempts began; null while deliveries succeed. */
  readonly failingSince: Date | null;
  readonly lastError: { readonly message: string; readonly at: Date } | null;
  /** Grows with every change. */
  readonly version: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
}

/** What `create()` takes. */
export interface NewEndpoint {
  readonly url: string;
  /** Topic names or prefixes ending in `*`. Default: every topic. */
  readonly topics?: readonly string[] | null;
  /** Only this tenant's events. Default: every event (an endpoint of your own, not a customer's). */
  readonly tenant?: string | null;
  readonly description?: string;
  /** Your own data (owner, labels); at most 16 KiB of JSON. */
  readonly metadata?: Readonly<Record<string, Json>>;
  /** A `whsec_…` secret to use instead of a generated one (e.g. when migrating endpoints). */
  readonly secret?: string;
}

/** What `update()` can change; absent fields are left as they are. */
export interface EndpointChanges {
  readonly url?: string;
  /** null: every topic. */
  readonly topics?: readonly string[] | null;
  readonly description?: string;
  readonly metadata?: Readonly<Record<string, Json>>;
}

/**
 * The name of the relay that delivers an endpoint's events: use it with `listDeadLetters`,
 * `retryDeadLetters`, `replay`, …
 *
 * @example
 * await replay(db, { relay: webhookRelayName(endpoint.id), from: new Date(Date.now() - 3_600_000) });
 */
export function webhookRelayName(endpointId: string): string {
  return `webhook:${endpointId}`;
}

const topicPattern = /^[A-Za-z0-9._-]{1,249}\*?$|^\*$/;
const crockford = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

let lastTime = -1;
let lastRandom: number[] = [];

/**
 * A new endpoint id: `ep_`, then 26 Crockford base32 characters that sort in creation order. The
 * first 10 encode the millisecond; the last 16 are random for each new millisecond and, for ids
 * made within the same millisecond in this process, the previous id's plus one, so that listing
 * by id (the pagination cursor) is creation order even for endpoints created back to back. A clock
 * that steps back keeps the last time, for the same reason.
 */
export function newEndpointId(): string {
  const now = Date.now();
  if (now > lastTime) {
    lastTime = now;
    lastRandom = [...randomBytes(16)].map((byte) => byte % 32);
  } else {
    increment(lastRandom);
  }
  let time = lastTime;
  let id = '';
  for (let i = 0; i < 10; i++) {
    id = crockford[time % 32] + id;
    time = Math.floor(time / 32);
  }
  for (const digit of lastRandom) id += crockford[digit];
  return `ep_${id}`;
}

/** Adds one to base-32 digits, most significant first; 80 bits do not run out within a millisecond. */
function increment(digits: number[]): void {
  for (let i = digits.length - 1; i >= 0; i--) {
    if (digits[i]! < 31) {
      digits[i]!++;
      return;
    }
    digits[i] = 0;
  }
}

export function validateTopics(topics: readonly string[] | null | undefined): string[] | null {
  if (topics === undefined || topics === null) return null;
  if (!Array.isArray(topics) || topics.length === 0 || topics.length > 100) {
    throw new InvalidEndpointError('topics', 'must be a list of 1 to 100 topic names or prefixes ending in "*", or null for every topic');
  }
  for (const topic of topics) {
    if (typeof topic !== 'string' || !topicPattern.test(topic)) {
      throw new InvalidEndpointError('topics', `entry ${JSON.stringify(topic)} is not a topic name (letters, digits, ".", "_", "-") or a prefix ending in "*"`);
    }
  }
  return [...new Set(topics)];
}

export function validateTenant(tenant: string | null | undefined): string | null {
  if (tenant === undefined || tenant === null) return null;
  if (typeof tenant !== 'string' || tenant.length === 0 || tenant.length > 256) {
    throw new InvalidEndpointError('tenant', 'must be a non-empty string of at most 256 characters, or null');
  }
  return tenant;
}

export function validateDescription(description: string | undefined): string {
  if (description === undefined) return '';
  if (typeof description !== 'string' || description.length > 1000) throw new InvalidEndpointError('description', 'must be a string of at most 1 000 characters');
  return description;
}

export function validateMetadata(metadata: Readonly<Record<string, Json>> | undefined): string {
  if (metadata === undefined) return '{}';
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) throw new InvalidEndpointError('metadata', 'must be a JSON object');
  let text: string;
  try {
    text = JSON.stringify(metadata);
  } catch (error) {
    throw new InvalidEndpointError('metadata', `is not JSON-serializable: ${(error as Error).message}`);
  }
  if (Buffer.byteLength(text) > 16 * 1024) throw new InvalidEndpointError('metadata', 'must be at most 16 KiB of JSON');
  return text;
}

export interface EndpointRow {
  id: string;
  url: string;
  description: string;
  topics: string[] | null;
  tenant: string | null;
  metadata: Record<string, Json>;
  enabled: boolean;
  disabled_reason: DisabledReason | null;
  disabled_detail: string | null;
  disabled_at: Date | null;
  failing_since: Date | null;
  last_error: string | null;
  last_error_at: Date | null;
  version: string;
  created_at: Date;
  updated_at: Date;
}

export const endpointColumns =
  'id, url, description, topics, tenant, metadata, enabled, disabled_reason, disabled_detail, disabled_at, failing_since, last_error, last_error_at, version::text AS version, created_at, updated_at';

export function rowToEndpoint(row: EndpointRow): WebhookEndpoint {
  return {
    id: row.id,
    url: row.url,
    description: row.description,
    topics: row.topics,
    tenant: row.tenant,
    metadata: row.metadata,
    enabled: row.enabled,
    disabled: row.disabled_reason ? { reason: row.disabled_reason, detail: row.disabled_detail ?? '', at: new Date(row.disabled_at!) } : null,
    failingSince: row.failing_since ? new Date(row.failing_since) : null,
    lastError: row.last_error ? { message: row.last_error, at: new Date(row.last_error_at!) } : null,
    version: Number(row.version),
    createdAt: new Date(row.created_at),
    updatedAt: new Date(row.updated_at),
  };
}

import { type Executor } from '@tidings/outbox';
import { relayRegistrationSql, resolveSchema, toExecutor } from '@tidings/outbox/internal';
import { validatePolicy, type AddressPolicy } from './address-policy.ts';
import {
  endpointColumns,
  newEndpointId,
  rowToEndpoint,
  validateDescription,
  validateMetadata,
  validateTenant,
  validateTopics,
  webhookRelayName,
  type EndpointChanges,
  type EndpointRow,
  type NewEndpoint,
  type WebhookEndpoint,
} from './endpoint.ts';
import { EndpointNotFoundError, InvalidEndpointError } from './errors.ts';
import { checkWebhookUrl, parseWebhookUrl } from './guarded-lookup.ts';
import { translateError, webhookChannel, webhookTables } from './schema.ts';
import { openStoredSecret, storedSecretJson, type StoredSecret } from './sealed-secrets.ts';
import { generateWebhookSecret, normalizeSecret } from './secret.ts';
import { requireKeyring, secretDigest, type SecretKeyring } from './secret-keyring.ts';

export interface WebhookEndpointsOptions {
  /** The schema the outbox and the registry were migrated into. Default `tidings`. */
  readonly schema?: string;
  /** Which addresses an endpoint URL may resolve to. Default: public addresses only. */
  readonly addressPolicy?: AddressPolicy;
  /**
   * The keys that encrypt signing secrets at rest (AES-256-GCM). Default: `TIDINGS_SECRET_KEY`
   * and `TIDINGS_SECRET_KEY_OLD` from the environment, read when a secret is written or read.
   * Without a key, `create`, `rotateSecret` and `secrets` throw `MissingSecretKeyError`.
   */
  readonly keyring?: SecretKeyring;
}

/** How long an old signing secret keeps signing after `rotateSecret`, unless told otherwise: 24 hours. */
export const defaultGracePeriodMs = 24 * 3600 * 1000;

/** A signing secret of an endpoint: the current one, or an old one still valid during a rotation. */
export interface EndpointSecret {
  readonly secret: string;
  /** null for the current secret. */
  readonly expiresAt: Date | null;
}

/**
 * The webhook endpoint registry. Signing secrets are encrypted before they leave this process:
 * the database receives and stores only ciphertext (AES-256-GCM under the keyring's current key,
 * bound to the endpoint id) and a digest. URL credentials are write-only: every endpoint this
 * registry returns shows them as `***`. Every method takes the database handle to run on first:
 * a kysely instance or `Transaction`, a pg `Pool`/`Client`, or a tidings `Database`, so endpoints
 * can be created in the same transaction as your own records. Each write is one statement (atomic on
 * any handle) and notifies running dispatchers, which start, restart or stop the endpoint's relay.
 */
export interface WebhookEndpoints {
  readonly schema: string;
  /** The tenant this registry is limited to, or undefined for an unscoped (operator) registry. */
  readonly tenant: string | undefined;

  /**
   * A registry that sees and creates only `tenant`'s endpoints: the one to hand to a tenant's API
   * requests. Another tenant's endpoint ids are reported as not found.
   *
   * @example
   * const mine = endpoints.forTenant(request.auth.tenantId);
   * await mine.list(db);
   */
  forTenant(tenant: string): WebhookEndpoints;

  /**
   * Registers an endpoint and returns it with its new signing secret (shown to its owner once).
   * The URL must resolve to allowed addresses only. Deliveries start with the events committed
   * after this call's transaction began; earlier events are not sent.
   *
   * @example
   * const { id, secret } = await endpoints.create(db, { url: 'https://acme.example.com/hooks', topics: ['orders.*'], tenant: 'acme' });
   */
  create(db: unknown, endpoint: NewEndpoint): Promise<WebhookEndpoint & { readonly secret: string }>;

  /** The endpoint, or undefined. @example const endpoint = await endpoints.get(db, id); */
  get(db: unknown, id: string): Promise<WebhookEndpoint | undefined>;

  /**
   * Endpoints in creation order, a page at a time.
   *
   * @example
   * const page = await endpoints.list(db, { limit: 50, after: previous.at(-1)?.id });
   */
  list(db: unknown, options?: { readonly limit?: number; readonly after?: string }): Promise<WebhookEndpoint[]>;

  /**
   * Changes the URL, topics, description or metadata. A new URL is checked like at registration and
   * starts with a clean health record. Topic changes apply to events the relay has not passed yet.
   *
   * @example
   * await endpoints.update(db, id, { url: 'https://acme.example.com/v2/hooks' });
   */
  update(db: unknown, id: string, changes: EndpointChanges): Promise<WebhookEndpoint>;

  /**
   * Re-enables a disabled endpoint: delivery resumes where it stopped, with a clean health record.
   * @example await endpoints.enable(db, id);
   */
  enable(db: unknown, id: string): Promise<WebhookEndpoint>;

  /**
   * Stops deliveries to an endpoint, keeping its place: `enable()` resumes from there.
   * @example await endpoints.disable(db, id, 'paused by the customer');
   */
  disable(db: unknown, id: string, detail?: string): Promise<WebhookEndpoint>;

  /**
   * Replaces the signing secret. The old secret keeps signing for `gracePeriodMs` (default 24 h):
   * every request carries both signatures, so the receiver can switch secrets without losing any.
   * A grace period of 0 revokes the old secret at once.
   *
   * @example
   * const { secret } = await endpoints.rotateSecret(db, id, { gracePeriodMs: 3_600_000 });
   */
  rotateSecret(
    db: unknown,
    id: string,
    options?: { readonly gracePeriodMs?: number; readonly secret?: string },
  ): Promise<{ readonly secret: string; readonly previousValidUntil: Date | null }>;

  /** The secrets that sign right now, the current one first. @example const [{ secret }] = await endpoints.secrets(db, id); */
  secrets(db: unknown, id: string): Promise<EndpointSecret[]>;

  /**
   * Deletes an endpoint and its secrets. A running dispatcher stops its relay and drops the relay's
   * cursors and dead letters. Returns whether it existed.
   * @example await endpoints.remove(db, id);
   */
  remove(db: unknown, id: string): Promise<boolean>;
}

/**
 * The webhook endpoint registry (see {@link WebhookEndpoints}). Cheap and immutable: create it once.
 *
 * @example
 * const endpoints = webhookEndpoints({ schema: 'tidings' });
 * const created = await endpoints.create(pool, { url: 'https://hooks.example.com/in', topics: ['invoices.*'] });
 */
export function webhookEndpoints(options: WebhookEndpointsOptions = {}): WebhookEndpoints {
  return registry(resolveSchema(options.schema), validatePolicy(options.addressPolicy), options.keyring, undefined);
}

function registry(schema: string, policy: AddressPolicy, keys: SecretKeyring | undefined, scope: string | undefined): WebhookEndpoints {
  const { s, endpoints, secrets } = webhookTables(schema);
  const channel = webhookChannel(schema);
  const run = async <R>(db: unknown, text: string, params: unknown[]): Promise<R[]> => {
    const executor: Executor = toExecutor(db);
    try {
      return (await executor.query<R>(text, params)).rows;
    } catch (error) {
      throw translateError(error, schema);
    }
  };
  /** Runs a statement on one endpoint of this scope and returns its row, or throws not found. */
  const one = async (db: unknown, id: string, text: string, params: unknown[]): Promise<WebhookEndpoint> => {
    const [row] = await run<EndpointRow>(db, text, [id, scope ?? null, channel, ...params]);
    if (!row) throw new EndpointNotFoundError(String(id));
    return rowToEndpoint(row);
  };
  const inScope = 'id = $1 AND ($2::text IS NULL OR tenant = $2)';
  const checkedUrl = async (url: string): Promise<string> => {
    const parsed = parseWebhookUrl(url);
    await checkWebhookUrl(parsed, policy);
    return parsed.href;
  };

  return Object.freeze({
    schema,
    tenant: scope,
    forTenant(tenant: string): WebhookEndpoints {
      const checked = validateTenant(tenant);
      if (checked === null) throw new InvalidEndpointError('tenant', 'of a scoped registry must be a non-empty string');
      return registry(schema, policy, keys, checked);
    },

    async create(db: unknown, endpoint: NewEndpoint) {
      const keyring = requireKeyring(keys, 'create a webhook endpoint');
      const tenant = validateTenant(endpoint.tenant);
      if (scope !== undefined && tenant !== null && tenant !== scope) {
        throw new InvalidEndpointError('tenant', `"${tenant}" differs from the registry's tenant "${scope}"`);
      }
      const id = newEndpointId();
      const secret = endpoint.secret === undefined ? generateWebhookSecret() : normalizeSecret(endpoint.secret);
      const sealed = keyring.seal(id, secret);
      const params = [
        id,
        await checkedUrl(endpoint.url),
        validateDescription(endpoint.description),
        validateTopics(endpoint.topics),
        scope ?? tenant,
        validateMetadata(endpoint.metadata),
        secretDigest(id, secret),
        webhookRelayName(id),
        channel,
        sealed.keyId,
        sealed.nonce,
        sealed.ciphertext,
      ];
      // The relay's cursors are placed here, in the caller's transaction, so that every event
      // committed after it is delivered, however long the dispatcher takes to notice the endpoint.
      const [row] = await run<EndpointRow>(
        db,
        `WITH ep AS (
           INSERT INTO ${endpoints} (id, url, description, topics, tenant, metadata)
           VALUES ($1, $2, $3, $4::text[], $5, $6::jsonb) RETURNING *
         ), secret AS (
           INSERT INTO ${secrets} (endpoint_id, digest, key_id, nonce, ciphertext) SELECT id, $7, $10, $11, $12 FROM ep
         ), cursors AS (${relayRegistrationSql(s, '$8', 'true')})
         SELECT ${endpointColumns}, pg_notify($9, id) IS NULL AS _ FROM ep`,
        params,
      );
      return { ...rowToEndpoint(row!), secret };
    },

    async get(db: unknown, id: string) {
      const [row] = await run<EndpointRow>(db, `SELECT ${endpointColumns} FROM ${endpoints} WHERE ${inScope}`, [id, scope ?? null]);
      return row ? rowToEndpoint(row) : undefined;
    },

    async list(db: unknown, { limit = 100, after }: { readonly limit?: number; readonly after?: string } = {}) {
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new InvalidEndpointError('list limit', 'must be a whole number from 1 to 1 000');
      const rows = await run<EndpointRow>(
        db,
        `SELECT ${endpointColumns} FROM ${endpoints}
         WHERE ($1::text IS NULL OR tenant = $1) AND ($2::text IS NULL OR id > $2)
         ORDER BY id LIMIT $3`,
        [scope ?? null, after ?? null, limit],
      );
      return rows.map(rowToEndpoint);
    },

    async update(db: unknown, id: string, changes: EndpointChanges) {
      const sets: string[] = [];
      const params: unknown[] = [];
      const set = (column: string, value: unknown, cast = '') => {
        params.push(value);
        sets.push(`${column} = $${params.length + 3}${cast}`);
      };
      if (changes.url !== undefined) {
        set('url', await checkedUrl(changes.url));
        sets.push('failing_since = NULL');
      }
      if (changes.topics !== undefined) set('topics', validateTopics(changes.topics), '::text[]');
      if (changes.description !== undefined) set('description', validateDescription(changes.description));
      if (changes.metadata !== undefined) set('metadata', validateMetadata(changes.metadata), '::jsonb');
      if (sets.length === 0) return one(db, id, `SELECT ${endpointColumns} FROM ${endpoints} WHERE ${inScope} AND $3::text IS NOT NULL`, []);
      return one(
        db,
        id,
        `UPDATE ${endpoints} SET ${sets.join(', ')}, version = version + 1, updated_at = now()
         WHERE ${inScope} RETURNING ${endpointColumns}, pg_notify($3, id) IS NULL AS _`,
        params,
      );
    },

    enable(db: unknown, id: string) {
      return one(
        db,
        id,
        `UPDATE ${endpoints}
         SET enabled = true, disabled_reason = NULL, disabled_detail = NULL, disabled_at = NULL, failing_since = NULL,
             version = version + 1, updated_at = now()
         WHERE ${inScope} RETURNING ${endpointColumns}, pg_notify($3, id) IS NULL AS _`,
        [],
      );
    },

    disable(db: unknown, id: string, detail = 'disabled by an operator') {
      return one(
        db,
        id,
        `UPDATE ${endpoints}
         SET enabled = false, disabled_reason = 'manual', disabled_detail = $4, disabled_at = now(),
             version = version + 1, updated_at = now()
         WHERE ${inScope} RETURNING ${endpointColumns}, pg_notify($3, id) IS NULL AS _`,
        [String(detail).slice(0, 1000)],
      );
    },

    async rotateSecret(db: unknown, id: string, options: { readonly gracePeriodMs?: number; readonly secret?: string } = {}) {
      const gracePeriodMs = options.gracePeriodMs ?? defaultGracePeriodMs;
      if (!Number.isInteger(gracePeriodMs) || gracePeriodMs < 0) throw new InvalidEndpointError('gracePeriodMs', 'must be a whole number of ms, at least 0');
      const keyring = requireKeyring(keys, 'rotate a webhook signing secret');
      const secret = options.secret === undefined ? generateWebhookSecret() : normalizeSecret(options.secret);
      const sealed = keyring.seal(id, secret);
      let rows: Array<{ previous_until: Date | null }>;
      try {
        // One statement: every sub-statement sees the same snapshot, so the old secrets are
        // expired and the new one inserted atomically, whatever handle runs it.
        rows = await run(
          db,
          `WITH ep AS (
             UPDATE ${endpoints} SET version = version + 1, updated_at = now() WHERE ${inScope} RETURNING id
           ), old AS (
             UPDATE ${secrets} w SET expires_at = LEAST(COALESCE(w.expires_at, 'infinity'), now() + $5 * interval '1 millisecond')
             FROM ep WHERE w.endpoint_id = ep.id AND (w.expires_at IS NULL OR w.expires_at > now())
             RETURNING w.expires_at
           ), expired AS (
             DELETE FROM ${secrets} w USING ep WHERE w.endpoint_id = ep.id AND w.expires_at <= now()
           ), fresh AS (
             INSERT INTO ${secrets} (endpoint_id, digest, key_id, nonce, ciphertext) SELECT id, $4, $6, $7, $8 FROM ep
           )
           SELECT (SELECT max(expires_at) FROM old) AS previous_until, pg_notify($3, ep.id) IS NULL AS _ FROM ep`,
          [id, scope ?? null, channel, secretDigest(id, secret), gracePeriodMs, sealed.keyId, sealed.nonce, sealed.ciphertext],
        );
      } catch (error) {
        if ((error as { code?: string }).code === '23505') throw new InvalidEndpointError('secret', 'is already one of the endpoint\'s secrets; pass a new one');
        throw error;
      }
      if (rows.length === 0) throw new EndpointNotFoundError(id);
      const until = rows[0]!.previous_until;
      return { secret, previousValidUntil: until && gracePeriodMs > 0 ? new Date(until) : null };
    },

    async secrets(db: unknown, id: string) {
      const keyring = requireKeyring(keys, "read a webhook endpoint's signing secrets");
      const rows = await run<{ stored: StoredSecret | null; expires_at: Date | null }>(
        db,
        `SELECT CASE WHEN w.digest IS NOT NULL THEN json_build_object(${storedSecretJson}) END AS stored, w.expires_at FROM ${endpoints} e
         LEFT JOIN ${secrets} w ON w.endpoint_id = e.id AND (w.expires_at IS NULL OR w.expires_at > now())
         WHERE e.id = $1 AND ($2::text IS NULL OR e.tenant = $2)
         ORDER BY w.expires_at DESC NULLS FIRST, w.created_at DESC`,
        [id, scope ?? null],
      );
      if (rows.length === 0) throw new EndpointNotFoundError(id);
      return rows
        .filter((row) => row.stored !== null)
        .map((row) => ({ secret: openStoredSecret(keyring, id, row.stored!), expiresAt: row.expires_at ? new Date(row.expires_at) : null }));
    },

    async remove(db: unknown, id: string) {
      const rows = await run(db, `DELETE FROM ${endpoints} WHERE ${inScope} RETURNING pg_notify($3, id) IS NULL AS _`, [id, scope ?? null, channel]);
      return rows.length > 0;
    },
  });
}

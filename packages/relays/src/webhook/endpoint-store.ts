import { type Executor } from '@tidings/outbox';
import { notifyChannel, quoteIdent } from '@tidings/outbox/internal';
import type { DisabledReason } from './endpoint.ts';
import { webhookChannel, webhookTables } from './schema.ts';
import { openStoredSecret, storedSecretJson, type StoredSecret } from './sealed-secrets.ts';
import type { SecretKeyring } from './secret-keyring.ts';
import type { SigningSecret } from './webhook-transport.ts';

/** What a dispatcher needs to run an enabled endpoint's relay. */
export interface ActiveEndpoint {
  readonly id: string;
  readonly url: string;
  readonly topics: readonly string[] | null;
  readonly tenant: string | null;
  readonly version: number;
  readonly failing: boolean;
  /** The decrypted secrets, or why they could not be decrypted. */
  readonly secrets: readonly SigningSecret[] | Error;
}

/** The dispatcher's statements on the registry. */
export class EndpointStore {
  readonly #db: Executor;
  readonly #schema: string;
  readonly #tables;
  readonly #channel: string;
  readonly #keyring: SecretKeyring;

  constructor(db: Executor, schema: string, keyring: SecretKeyring) {
    this.#db = db;
    this.#keyring = keyring;
    this.#schema = schema;
    this.#tables = webhookTables(schema);
    this.#channel = webhookChannel(schema);
  }

  /** Every enabled endpoint with the secrets that sign now, the current one first. */
  async enabled(): Promise<ActiveEndpoint[]> {
    const { endpoints, secrets } = this.#tables;
    const { rows } = await this.#db.query<{
      id: string;
      url: string;
      topics: string[] | null;
      tenant: string | null;
      version: string;
      failing: boolean;
      secrets: Array<{ stored: StoredSecret; expiresAt: string | null }>;
    }>(
      `SELECT e.id, e.url, e.topics, e.tenant, e.version::text AS version, e.failing_since IS NOT NULL AS failing,
              COALESCE(json_agg(json_build_object('stored', json_build_object(${storedSecretJson}), 'expiresAt', w.expires_at)
                                ORDER BY w.expires_at DESC NULLS FIRST) FILTER (WHERE w.digest IS NOT NULL), '[]') AS secrets
       FROM ${endpoints} e
       LEFT JOIN ${secrets} w ON w.endpoint_id = e.id AND (w.expires_at IS NULL OR w.expires_at > now())
       WHERE e.enabled
       GROUP BY e.id`,
    );
    return rows.map((row) => ({
      id: row.id,
      url: row.url,
      topics: row.topics,
      tenant: row.tenant,
      version: Number(row.version),
      failing: row.failing,
      secrets: this.#open(row.id, row.secrets),
    }));
  }

  #open(id: string, secrets: Array<{ stored: StoredSecret; expiresAt: string | null }>): SigningSecret[] | Error {
    try {
      return secrets.map((s) => ({ secret: openStoredSecret(this.#keyring, id, s.stored), expiresAt: s.expiresAt ? new Date(s.expiresAt) : null }));
    } catch (error) {
      return error as Error;
    }
  }

  /** A delivery succeeded: the endpoint is healthy again. */
  async recordSuccess(id: string): Promise<void> {
    await this.#db.query(`UPDATE ${this.#tables.endpoints} SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL`, [id]);
  }

  /**
   * An attempt failed: starts or continues the endpoint's failing run, and disables the endpoint
   * (reason `failing`) once the run is older than `disableAfterMs`. Returns whether it disabled it.
   */
  async recordFailure(id: string, message: string, disableAfterMs: number): Promise<boolean> {
    const overdue = `failing_since IS NOT NULL AND failing_since <= now() - $3 * interval '1 millisecond'`;
    const { rows } = await this.#db.query<{ enabled: boolean }>(
      `UPDATE ${this.#tables.endpoints} SET
         failing_since = COALESCE(failing_since, now()),
         last_error = $2, last_error_at = now(),
         enabled = NOT (${overdue}),
         disabled_reason = CASE WHEN ${overdue} THEN 'failing' END,
         disabled_detail = CASE WHEN ${overdue}
           THEN 'no delivery succeeded since ' || to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') || '; last error: ' || $2 END,
         disabled_at = CASE WHEN ${overdue} THEN now() END,
         version = version + CASE WHEN ${overdue} THEN 1 ELSE 0 END
       WHERE id = $1 AND enabled
       RETURNING enabled`,
      [id, message.slice(0, 2000), disableAfterMs],
    );
    const disabled = rows[0]?.enabled === false;
    if (disabled) await this.#notify(id);
    return disabled;
  }

  /** Disables an enabled endpoint for `reason`; a manual disable is never overwritten. */
  async disable(id: string, reason: DisabledReason, detail: string): Promise<boolean> {
    const { rowCount } = await this.#db.query(
      `UPDATE ${this.#tables.endpoints}
       SET enabled = false, disabled_reason = $2, disabled_detail = $3, disabled_at = now(), version = version + 1, updated_at = now()
       WHERE id = $1 AND enabled`,
      [id, reason, detail.slice(0, 2000)],
    );
    if (rowCount > 0) await this.#notify(id);
    return rowCount > 0;
  }

  /** Relays named `webhook:<id>` whose endpoint no longer exists. */
  async orphanRelays(): Promise<string[]> {
    const { rows } = await this.#db.query<{ relay: string }>(
      `SELECT DISTINCT rp.relay FROM ${quoteIdent(this.#schema)}.relay_partitions rp
       WHERE rp.relay LIKE 'webhook:%'
         AND NOT EXISTS (SELECT 1 FROM ${this.#tables.endpoints} e WHERE 'webhook:' || e.id = rp.relay)`,
    );
    return rows.map((row) => row.relay);
  }

  /** The channels to LISTEN on: registry changes, and new events (to wake relays). */
  get channels(): { readonly registry: string; readonly events: string } {
    return { registry: this.#channel, events: notifyChannel(this.#schema) };
  }

  async #notify(id: string): Promise<void> {
    await this.#db.query('SELECT pg_notify($1, $2)', [this.#channel, id]);
  }
}

import { dropRelay, type Database, type Relay, type RelayEvent, type RetryPolicy } from '@tidings/outbox';
import { createSharedRelay, ownStatements, resolveSchema, sharedClusterCheck, SharedHeartbeats, SharedPartitionReads, type RelayShares } from '@tidings/outbox/internal';
import { validatePolicy, type AddressPolicy } from './address-policy.ts';
import { webhookRelayName, type DisabledReason } from './endpoint.ts';
import { EndpointStore, type ActiveEndpoint } from './endpoint-store.ts';
import { WebhookDeliveryError } from './errors.ts';
import { translateError } from './schema.ts';
import { tenantMessage } from './tenant-message.ts';
import { requireKeyring, type SecretKeyring } from './secret-keyring.ts';
import { resolveCloudEvents } from '../shared/cloud-events.ts';
import { webhookTransport, type WebhookAttempt, type WebhookTransportOptions } from './webhook-transport.ts';

/**
 * The default schedule: 15 retries from 5 s, growing 2.5× to at most an hour, each delay
 * randomised up to twice its length (jitter) within that cap: 5-10 s, 12-25 s, 31-62 s, … then
 * hourly, about 8½ to 10 hours of retries before the event becomes a dead letter (which
 * `retryDeadLetters` can send again).
 */
export const webhookRetryPolicy: Required<RetryPolicy> = Object.freeze({ retries: 15, minDelayMs: 5_000, maxDelayMs: 3_600_000, factor: 2.5 });

/** Something a dispatcher did or saw; for logs, metrics and tests. */
export type WebhookDispatcherEvent =
  | { readonly type: 'endpoint-started' | 'endpoint-stopped' | 'endpoint-removed'; readonly endpointId: string }
  | { readonly type: 'endpoint-disabled'; readonly endpointId: string; readonly reason: DisabledReason; readonly detail: string }
  | { readonly type: 'attempt'; readonly endpointId: string; readonly attempt: WebhookAttempt }
  | { readonly type: 'relay'; readonly endpointId: string; readonly event: RelayEvent }
  | { readonly type: 'error'; readonly endpointId?: string; readonly error: Error };

export interface WebhookDispatcherOptions
  extends Pick<WebhookTransportOptions, 'connectTimeoutMs' | 'sendTimeoutMs' | 'maxRetryAfterMs' | 'maxConnections' | 'userAgent' | 'cloudEvents'> {
  readonly database: Database;
  /** The schema of the outbox and the registry. Default `tidings`. */
  readonly schema?: string;
  /** Checked on every new connection. Default: public addresses only. */
  readonly addressPolicy?: AddressPolicy;
  /**
   * Decrypts the endpoints' signing secrets. Default: `TIDINGS_SECRET_KEY` and
   * `TIDINGS_SECRET_KEY_OLD` from the environment; without one, starting throws `MissingSecretKeyError`.
   */
  readonly keyring?: SecretKeyring;
  /** Retries of each event before it becomes a dead letter. Default {@link webhookRetryPolicy}. */
  readonly retry?: RetryPolicy;
  /**
   * An endpoint with no successful delivery for this long, while attempts keep failing, is
   * disabled (reason `failing`, with the last error). Default 5 days.
   */
  readonly disableAfterMs?: number;
  /** How often the registry is read even without a NOTIFY. Default 10 000 ms. */
  readonly refreshIntervalMs?: number;
  /** How long a stopping relay may finish the request in flight. Default 2 000 ms. */
  readonly stopGraceMs?: number;
  /** Options of every endpoint's relay. */
  readonly relay?: {
    /** How often an idle partition polls without a NOTIFY. Default 5 000 ms. */
    readonly pollIntervalMs?: number;
    readonly leaseTtlMs?: number;
    readonly heartbeatIntervalMs?: number;
  };
  readonly onEvent?: (event: WebhookDispatcherEvent) => void;
}

/** A running dispatcher: one relay per enabled endpoint, kept in step with the registry. */
export interface WebhookDispatcher {
  /** Ids of the endpoints this process is relaying now. */
  readonly endpoints: readonly string[];
  /** Reads the registry now and starts, restarts or stops relays to match it. */
  refresh(): Promise<void>;
  /** Stops every relay (each finishing its request in flight) and stops watching the registry. */
  stop(): Promise<void>;
}

/**
 * Starts delivering webhooks: one relay per enabled endpoint (named `webhook:<id>`, with the
 * endpoint's topics and tenant), so a failing or slow endpoint never delays another. It follows
 * the registry by NOTIFY and by polling: new endpoints start, changed ones restart, disabled and
 * removed ones stop (removed ones also lose their cursors and dead letters). It disables endpoints
 * that answer 410 Gone or keep failing for `disableAfterMs`. Run it in as many processes as you
 * like: each endpoint's partitions are shared among them by leases.
 *
 * Cost: the endpoints' relays share their reads of the log: one read of a partition, handed to
 * every endpoint with its own topics and tenant, serves every endpoint that has caught up; an
 * endpoint that fell more than 1 000 events of a partition behind (its receiver slow or failing)
 * reads on its own until it caught up, so it never holds the others back. NOTIFY wakes the
 * partitions at once; idle, each partition is read once every `relay.pollIntervalMs` (default
 * 5 s) whatever the number of endpoints. Each endpoint keeps its own cursors and leases; their
 * heartbeats, lease renewals and looks for dead letters to retry go out together, one statement
 * of each kind per 100 ms. The endpoints started by one look at the registry share one cluster
 * check (see `inspectCluster`). The dispatcher holds one LISTEN connection per channel.
 *
 * @example
 * const dispatcher = await startWebhookDispatcher({ database: pgDatabase(process.env.DATABASE_URL!) });
 * process.on('SIGTERM', () => dispatcher.stop());
 */
export async function startWebhookDispatcher(options: WebhookDispatcherOptions): Promise<WebhookDispatcher> {
  const dispatcher = new Dispatcher(options);
  await dispatcher.start();
  return dispatcher;
}

interface Running {
  readonly version: number;
  readonly relay: Relay;
  readonly health: Health;
}

/** What this process knows of an endpoint's health, and its health writes, one after another. */
interface Health {
  failing: boolean;
  writes: Promise<void>;
}

class Dispatcher implements WebhookDispatcher {
  readonly #options: WebhookDispatcherOptions;
  readonly #schema: string;
  readonly #policy: AddressPolicy;
  readonly #database: Database;
  readonly #store: EndpointStore;
  /**
   * Every endpoint's relay reads the log through `reads` (one read serves them all) and sends its
   * heartbeats with the others' ones.
   */
  readonly #shares: RelayShares & { readonly reads: SharedPartitionReads };
  readonly #running = new Map<string, Running>();
  #timer: NodeJS.Timeout | undefined;
  #unlisten: (() => Promise<void>) | undefined;
  #refreshing: Promise<void> | undefined;
  #queued: Promise<void> | undefined;
  #stopped = false;

  constructor(options: WebhookDispatcherOptions) {
    this.#options = options;
    this.#schema = resolveSchema(options.schema);
    this.#policy = validatePolicy(options.addressPolicy);
    resolveCloudEvents(options.cloudEvents); // a bad value fails here, not when an endpoint starts
    // pgDatabase shares one LISTEN connection among every endpoint's relay and this dispatcher.
    this.#database = ownStatements(options.database);
    this.#store = new EndpointStore(this.#database, this.#schema, requireKeyring(options.keyring, 'deliver webhooks'));
    this.#shares = { reads: new SharedPartitionReads(this.#database, this.#schema), heartbeats: new SharedHeartbeats(this.#database, this.#schema) };
  }

  get endpoints(): readonly string[] {
    return [...this.#running.keys()];
  }

  async start(): Promise<void> {
    try {
      await this.#store.enabled(); // fails fast, and clearly, on a schema without the registry
    } catch (error) {
      throw translateError(error, this.#schema);
    }
    this.#unlisten = await this.#database.listen(this.#store.channels.registry, () => void this.refresh().catch(() => {}));
    await this.refresh();
    this.#timer = setInterval(() => void this.refresh().catch(() => {}), this.#options.refreshIntervalMs ?? 10_000);
  }

  refresh(): Promise<void> {
    if (this.#stopped) return Promise.resolve();
    if (this.#refreshing) {
      // One more pass after the current one, shared by every call made meanwhile: it sees their changes.
      this.#queued ??= this.#refreshing.then(() => {
        this.#queued = undefined;
        return this.refresh();
      });
      return this.#queued;
    }
    this.#refreshing = this.#reconcile()
      .catch((error: unknown) => this.#emit({ type: 'error', error: translateError(error, this.#schema) as Error }))
      .finally(() => {
        this.#refreshing = undefined;
      });
    return this.#refreshing;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    await this.#queued;
    await this.#refreshing;
    await this.#unlisten?.();
    await Promise.all([...this.#running.keys()].map((id) => this.#stopEndpoint(id)));
    this.#shares.reads.close();
  }

  async #reconcile(): Promise<void> {
    const active = await this.#store.enabled();
    if (this.#stopped) return;
    const wanted = new Map(active.map((endpoint) => [endpoint.id, endpoint]));
    const stale = [...this.#running].filter(([id, running]) => wanted.get(id)?.version !== running.version).map(([id]) => id);
    await Promise.all(stale.map((id) => this.#stopEndpoint(id)));
    if (this.#stopped) return;
    // The relays started in this pass share one cluster check: one scan of the cursors, not one per endpoint.
    const clusterCheck = sharedClusterCheck(this.#database, this.#schema);
    await Promise.all(active.filter((endpoint) => !this.#running.has(endpoint.id)).map((endpoint) => this.#startEndpoint(endpoint, clusterCheck)));
    for (const relay of await this.#store.orphanRelays()) {
      await dropRelay(this.#options.database, { schema: this.#schema, relay });
      this.#emit({ type: 'endpoint-removed', endpointId: relay.slice('webhook:'.length) });
    }
  }

  async #startEndpoint(endpoint: ActiveEndpoint, clusterCheck: () => Promise<void>): Promise<void> {
    const id = endpoint.id;
    let relay: Relay;
    try {
      relay = this.#createRelay(endpoint, clusterCheck);
    } catch (error) {
      // A row this dispatcher cannot use (e.g. a URL its policy refuses): report it at every refresh.
      this.#emit({ type: 'error', endpointId: id, error: error as Error });
      return;
    }
    try {
      await relay.start();
      this.#emit({ type: 'endpoint-started', endpointId: id });
    } catch (error) {
      this.#running.delete(id);
      await relay.stop({ graceMs: 0 }).catch(() => {});
      this.#emit({ type: 'error', endpointId: id, error: translateError(error, this.#schema) as Error });
    }
  }

  #createRelay(endpoint: ActiveEndpoint, clusterCheck: () => Promise<void>): Relay {
    const id = endpoint.id;
    if (endpoint.secrets instanceof Error) throw endpoint.secrets;
    const options = this.#options;
    const health: Health = { failing: endpoint.failing, writes: Promise.resolve() };
    const transport = webhookTransport({
      url: endpoint.url,
      secrets: endpoint.secrets,
      addressPolicy: this.#policy,
      connectTimeoutMs: options.connectTimeoutMs,
      sendTimeoutMs: options.sendTimeoutMs,
      maxRetryAfterMs: options.maxRetryAfterMs,
      maxConnections: options.maxConnections,
      userAgent: options.userAgent,
      cloudEvents: options.cloudEvents,
      name: webhookRelayName(id),
      gone: 'unavailable',
      onEvent: (event) => {
        if (event.type === 'gone') return this.#disable(id, 'gone', tenantMessage(event.error));
        this.#emit({ type: 'attempt', endpointId: id, attempt: event.attempt });
        this.#recordHealth(id, health, event.attempt);
      },
    });
    const relay = createSharedRelay({
      name: webhookRelayName(id),
      database: this.#database,
      schema: this.#schema,
      transport,
      topics: endpoint.topics ?? undefined,
      tenant: endpoint.tenant ?? undefined,
      retry: options.retry ?? webhookRetryPolicy,
      startFrom: 'now',
      pollIntervalMs: options.relay?.pollIntervalMs ?? 5_000,
      leaseTtlMs: options.relay?.leaseTtlMs,
      heartbeatIntervalMs: options.relay?.heartbeatIntervalMs,
      onEvent: (event) => this.#emit({ type: 'relay', endpointId: id, event }),
    }, { ...this.#shares, clusterCheck });
    this.#running.set(id, { version: endpoint.version, relay, health });
    return relay;
  }

  async #stopEndpoint(id: string): Promise<void> {
    const running = this.#running.get(id);
    if (!running) return;
    this.#running.delete(id);
    await running.relay.stop({ graceMs: this.#options.stopGraceMs ?? 2_000 }).catch((error: unknown) => this.#emit({ type: 'error', endpointId: id, error: error as Error }));
    await running.health.writes;
    this.#emit({ type: 'endpoint-stopped', endpointId: id });
  }

  /** Keeps the endpoint's failing run in the registry; writes only when its state changes or an attempt fails. */
  #recordHealth(id: string, health: Health, attempt: WebhookAttempt): void {
    if (attempt.error instanceof WebhookDeliveryError && attempt.error.reason === 'aborted') return;
    const ok = attempt.outcome === 'delivered';
    if (ok && !health.failing) return;
    health.failing = !ok;
    const disableAfterMs = this.#options.disableAfterMs ?? 5 * 24 * 3600 * 1000;
    health.writes = health.writes.then(async () => {
      try {
        if (ok) {
          await this.#store.recordSuccess(id);
        } else if (await this.#store.recordFailure(id, tenantMessage(attempt.error), disableAfterMs)) {
          this.#emit({ type: 'endpoint-disabled', endpointId: id, reason: 'failing', detail: tenantMessage(attempt.error) });
          void this.refresh();
        }
      } catch (error) {
        this.#emit({ type: 'error', endpointId: id, error: error as Error });
      }
    });
  }

  async #disable(id: string, reason: DisabledReason, detail: string): Promise<void> {
    try {
      if (await this.#store.disable(id, reason, detail)) this.#emit({ type: 'endpoint-disabled', endpointId: id, reason, detail });
    } catch (error) {
      this.#emit({ type: 'error', endpointId: id, error: error as Error });
    }
    void this.refresh();
  }

  #emit(event: WebhookDispatcherEvent): void {
    try {
      this.#options.onEvent?.(event);
    } catch {
      // A throwing listener must not break deliveries.
    }
  }
}

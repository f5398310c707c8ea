import { ConfigError, delivered, failed, retry, TransportClosedError, unavailable, type OutboxEvent, type SendOutcome, type Transport, type TransportCapabilities } from '@tidings/outbox';
import http from 'node:http';
import https from 'node:https';
import { isIP } from 'node:net';
import { validatePolicy, type AddressPolicy } from './address-policy.ts';
import { encodeEnvelope } from './envelope.ts';
import { cloudEventBody, cloudEventHeaders } from './cloud-event.ts';
import { resolveCloudEvents, wireVersion, type CloudEventsOptions, type ResolvedCloudEvents } from '../shared/cloud-events.ts';
import { WebhookAddressRefusedError, WebhookDeliveryError, WebhookSecretsExpiredError, type DeliveryFailureReason } from './errors.ts';
import { bareHostname, guardedLookup, parseWebhookUrl, redactUrl, refuseUnlessAllowed } from './guarded-lookup.ts';
import { wholeOption } from '../shared/options.ts';
import { post } from './http-post.ts';
import { parseRetryAfter } from './retry-after.ts';
import { signWebhook } from './signature.ts';

/** A signing secret, optionally valid only until a time (the old secret during a rotation). */
export type SigningSecret = string | { readonly secret: string; readonly expiresAt?: Date | null };

/** What one delivery attempt did; for endpoint health, metrics and logs. */
export interface WebhookAttempt {
  readonly eventId: string;
  /** The URL with any credentials removed. */
  readonly url: string;
  readonly outcome: SendOutcome['status'];
  /** HTTP status, when the receiver answered. */
  readonly status: number | undefined;
  readonly durationMs: number;
  readonly error: Error | undefined;
}

/**
 * What the transport did; for endpoint health, metrics and logs. `gone`: the receiver answered
 * 410 Gone (with `gone: 'unavailable'`, what `onEvent` returns for it is awaited before the event
 * is reported pending, so it can disable the endpoint first).
 */
export type WebhookTransportEvent =
  | { readonly type: 'attempt'; readonly attempt: WebhookAttempt }
  | { readonly type: 'gone'; readonly error: WebhookDeliveryError };

export interface WebhookTransportOptions {
  /** Where to POST: an http(s) URL. Credentials in it are sent as Basic authentication. */
  readonly url: string;
  /** `whsec_…` secrets; each signs every request (several while a rotation's old secret is valid). */
  readonly secrets: readonly SigningSecret[];
  /** Which addresses may be called. Default: public addresses only. */
  readonly addressPolicy?: AddressPolicy;
  /** Time to establish the TCP (and TLS) connection. Default 10 000 ms. */
  readonly connectTimeoutMs?: number;
  /** Time for the whole attempt, until the answer is read; then it counts as failed (`unavailable`). Default 30 000 ms. */
  readonly sendTimeoutMs?: number;
  /** Longest `Retry-After` honoured; longer asks are cut to it. Default 1 hour. */
  readonly maxRetryAfterMs?: number;
  /** Most connections kept open to the receiver. Default 16 (one per partition). */
  readonly maxConnections?: number;
  /** Default `tidings-webhooks/1`. */
  readonly userAgent?: string;
  /** Default `webhook:<host>`. */
  readonly name?: string;
  /**
   * What an event answered with 410 Gone counts as; either way `onEvent` hears a `gone` event.
   * - `failed` (default): a dead letter at once.
   * - `unavailable`: the event stays pending (tried again after `maxRetryAfterMs`), for a caller
   *   that disables the endpoint when it hears `gone` (the webhook dispatcher does).
   */
  readonly gone?: 'failed' | 'unavailable';
  /**
   * Hears every attempt and every 410 Gone. What it throws, or a promise it returns rejects with,
   * is ignored: an observer never breaks delivery.
   */
  readonly onEvent?: (event: WebhookTransportEvent) => void | Promise<void>;
  /**
   * Send every event as a CloudEvent 1.0 in HTTP binary content mode: the body is the payload,
   * the attributes are `ce-*` headers. Default: off (the body is the `WebhookEnvelope`).
   */
  readonly cloudEvents?: CloudEventsOptions;
}

/** A transport that POSTs each event to one webhook URL. */
export interface WebhookTransport extends Transport {
  /** The URL with any credentials removed. */
  readonly url: string;
}

/** One request per event, in batch order, stopping at the first event not delivered. */
export const webhookCapabilities: TransportCapabilities = Object.freeze({ orderedPerKey: true, persistent: true, maxBatchSize: 50 });

/**
 * A transport that POSTs each event to one URL, signed per Standard Webhooks (`webhook-id`,
 * `webhook-timestamp`, `webhook-signature`), with the JSON body described by `WebhookEnvelope`.
 * 2xx is delivered. The receiver is `unavailable` (waited for, never counted against the event)
 * on a network error, a timeout, 408, 429, any 5xx and a redirect (not followed), honouring its
 * `Retry-After`; any other 4xx refuses the event (`retry`, counted toward its retries); 410 Gone
 * is `failed` (or `unavailable`, per the `gone` option). The host is resolved and checked against the address policy on every new connection, and the connection
 * goes to the checked address. Connections are kept alive.
 *
 * Usually created by the webhook dispatcher, one per endpoint; use it directly to relay to one
 * fixed URL.
 *
 * @example
 * const relay = createRelay({
 *   name: 'billing-hook', database, topics: ['invoices.*'],
 *   transport: webhookTransport({ url: 'https://billing.example.com/hooks', secrets: [process.env.HOOK_SECRET!] }),
 * });
 */
export function webhookTransport(options: WebhookTransportOptions): WebhookTransport {
  return new HttpWebhookTransport(options);
}

interface ResolvedWebhookOptions {
  readonly connectTimeoutMs: number;
  readonly sendTimeoutMs: number;
  readonly maxRetryAfterMs: number;
  readonly userAgent: string;
  readonly gone: 'failed' | 'unavailable';
  readonly onEvent: (event: WebhookTransportEvent) => void | Promise<void>;
  readonly cloudEvents: ResolvedCloudEvents | undefined;
}

class HttpWebhookTransport implements WebhookTransport {
  readonly name: string;
  readonly system = 'webhook';
  readonly capabilities = webhookCapabilities;
  readonly url: string;
  readonly #url: URL;
  readonly #secrets: readonly SigningSecret[];
  readonly #policy: AddressPolicy;
  /** Why the URL's IP literal is not allowed, when it is one that is not. */
  readonly #refusedLiteral: Error | undefined;
  readonly #agent: http.Agent;
  readonly #options: ResolvedWebhookOptions;
  readonly #lookup;
  readonly #inFlight = new Set<Promise<unknown>>();
  #closing: Promise<void> | undefined;

  constructor(options: WebhookTransportOptions) {
    this.#url = parseWebhookUrl(options.url);
    this.url = redactUrl(this.#url);
    if (!Array.isArray(options.secrets) || options.secrets.length === 0) {
      throw new ConfigError('secrets', 'webhookTransport needs a list of at least one signing secret, e.g. [process.env.HOOK_SECRET] (generateWebhookSecret() makes one)');
    }
    signWebhook({ id: 'check', timestamp: 0, body: '' }, options.secrets.map(secretOf)); // fails early on a malformed secret
    this.#secrets = options.secrets;
    this.#policy = validatePolicy(options.addressPolicy);
    const gone = options.gone ?? 'failed';
    if (gone !== 'failed' && gone !== 'unavailable') throw new ConfigError('gone', `expected "failed" or "unavailable", got ${JSON.stringify(gone)}`);
    this.#options = {
      connectTimeoutMs: wholeOption('connectTimeoutMs', options.connectTimeoutMs, 10_000),
      sendTimeoutMs: wholeOption('sendTimeoutMs', options.sendTimeoutMs, 30_000),
      maxRetryAfterMs: wholeOption('maxRetryAfterMs', options.maxRetryAfterMs, 3_600_000),
      userAgent: options.userAgent ?? 'tidings-webhooks/1',
      gone,
      onEvent: observeAsync(options.onEvent),
      cloudEvents: resolveCloudEvents(options.cloudEvents),
    };
    this.name = options.name ?? `webhook:${this.#url.host}`;
    const agentOptions = { keepAlive: true, maxSockets: wholeOption('maxConnections', options.maxConnections, 16), scheduling: 'lifo' as const };
    this.#agent = this.#url.protocol === 'https:' ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.#lookup = guardedLookup(this.#url, this.#policy);
    // An IP literal never reaches the lookup: it is judged here, once (the URL and policy are fixed).
    const host = bareHostname(this.#url);
    if (isIP(host)) {
      try {
        refuseUnlessAllowed(this.#url, host, host, this.#policy);
      } catch (error) {
        this.#refusedLiteral = error as Error;
      }
    }
  }

  /**
   * Sends the batch in order. Throws `WebhookSecretsExpiredError`, sending nothing, once every
   * signing secret has expired.
   */
  async send(batch: readonly OutboxEvent[], signal: AbortSignal): Promise<readonly SendOutcome[]> {
    if (this.#closing) throw new TransportClosedError(`webhook ${this.url}`);
    this.#validSecrets(); // throws when none is left
    const sending = this.#sendInOrder(batch, signal);
    this.#inFlight.add(sending);
    try {
      return await sending;
    } finally {
      this.#inFlight.delete(sending);
    }
  }

  /** Lets sends in flight finish, then closes the kept-alive connections. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#inFlight]);
      this.#agent.destroy();
    })();
    return this.#closing;
  }

  async #sendInOrder(batch: readonly OutboxEvent[], signal: AbortSignal): Promise<SendOutcome[]> {
    const outcomes: SendOutcome[] = [];
    for (const event of batch) {
      const outcome = signal.aborted ? unavailable(signal.reason ?? new Error('the send was aborted')) : await this.#deliver(event, signal);
      outcomes.push(outcome);
      if (outcome.status !== 'delivered') break;
    }
    // Events after the first one not delivered are not attempted: sending them would break key order.
    if (outcomes.length < batch.length) {
      const notAttempted = retry(new Error('not attempted: an earlier event of the batch was not delivered'));
      while (outcomes.length < batch.length) outcomes.push(notAttempted);
    }
    return outcomes;
  }

  async #deliver(event: OutboxEvent, signal: AbortSignal): Promise<SendOutcome> {
    const started = performance.now();
    const cloudEvents = this.#options.cloudEvents;
    const body = cloudEvents === undefined ? encodeEnvelope(event) : cloudEventBody(event);
    let outcome: SendOutcome;
    let status: number | undefined;
    try {
      if (this.#refusedLiteral) throw this.#refusedLiteral;
      const result = await post({
        url: this.#url,
        headers: this.#headers(event, body),
        body,
        agent: this.#agent,
        lookup: this.#lookup,
        connectTimeoutMs: this.#options.connectTimeoutMs,
        timeoutMs: this.#options.sendTimeoutMs,
        signal,
      });
      if (result.ok) {
        status = result.status;
        outcome = await this.#judge(event, result.status, result.headers, result.snippet);
      } else if (result.cause instanceof WebhookAddressRefusedError) {
        outcome = unavailable(result.cause);
      } else {
        outcome = unavailable(this.#error(event, result.failure, result.message, { cause: result.cause }));
      }
    } catch (error) {
      outcome = unavailable(error);
    }
    const attempt: WebhookAttempt = {
      eventId: event.eventId,
      url: this.url,
      outcome: outcome.status,
      status,
      durationMs: performance.now() - started,
      error: outcome.status === 'delivered' ? undefined : outcome.error,
    };
    this.#options.onEvent({ type: 'attempt', attempt });
    return outcome;
  }

  async #judge(event: OutboxEvent, status: number, headers: http.IncomingHttpHeaders, snippet: string): Promise<SendOutcome> {
    if (status >= 200 && status < 300) return delivered;
    const answer = { status, responseSnippet: snippet || undefined };
    if (status === 410) {
      const error = this.#error(event, 'gone', 'the receiver answered 410 Gone: it wants no more webhooks', answer);
      if (this.#options.gone === 'failed') {
        this.#options.onEvent({ type: 'gone', error });
        return failed(error);
      }
      await this.#options.onEvent({ type: 'gone', error });
      return unavailable(error, this.#options.maxRetryAfterMs);
    }
    const asked = parseRetryAfter(headers['retry-after']);
    const retryAfterMs = asked === undefined ? undefined : Math.min(asked, this.#options.maxRetryAfterMs);
    const hint = retryAfterMs === undefined ? '' : `; Retry-After ${headers['retry-after']} (${retryAfterMs} ms)`;
    if (status >= 300 && status < 400) {
      const location = typeof headers.location === 'string' ? ` to ${headers.location.slice(0, 200)}` : '';
      return unavailable(
        this.#error(event, 'redirect', `the receiver answered ${status}, a redirect${location}; redirects are not followed, update the endpoint's URL instead`, answer),
        retryAfterMs,
      );
    }
    const said = `the receiver answered ${status}${hint}${snippet ? `: ${oneLine(snippet)}` : ''}`;
    const error = this.#error(event, 'status', said, { ...answer, retryAfterMs });
    // The receiver is down, overloaded or slow: wait for it. Any other 4xx is about this event.
    if (status === 408 || status === 429 || status >= 500) return unavailable(error, retryAfterMs);
    return retry(error, retryAfterMs);
  }

  #headers(event: OutboxEvent, body: Buffer): http.OutgoingHttpHeaders {
    const timestamp = Math.floor(Date.now() / 1000);
    const headers: http.OutgoingHttpHeaders = {
      'content-type': 'application/json',
      'content-length': body.length,
      'user-agent': this.#options.userAgent,
      'webhook-id': event.eventId,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signWebhook({ id: event.eventId, timestamp, body }, this.#validSecrets()),
      'tidings-wire-version': wireVersion,
      ...(this.#options.cloudEvents === undefined ? {} : cloudEventHeaders(event, this.#options.cloudEvents)),
    };
    // Trace context travels as HTTP headers too, so the receiver's tracing picks it up.
    for (const name of ['traceparent', 'tracestate'] as const) {
      const value = event.headers[name];
      if (value !== undefined && /^[\x20-\x7e]{1,512}$/.test(value)) headers[name] = value;
    }
    return headers;
  }

  /** The secrets that sign now; never an expired one. */
  #validSecrets(): string[] {
    const now = Date.now();
    const valid = this.#secrets.filter((s) => typeof s === 'string' || !s.expiresAt || s.expiresAt.getTime() > now).map(secretOf);
    if (valid.length === 0) {
      const last = Math.max(...this.#secrets.map((s) => (typeof s === 'string' ? 0 : (s.expiresAt?.getTime() ?? 0))));
      throw new WebhookSecretsExpiredError(this.url, new Date(last));
    }
    return valid;
  }

  #error(
    event: OutboxEvent,
    reason: DeliveryFailureReason,
    message: string,
    extra: { status?: number; retryAfterMs?: number | undefined; responseSnippet?: string | undefined; cause?: unknown } = {},
  ): WebhookDeliveryError {
    return new WebhookDeliveryError({
      reason,
      url: this.url,
      eventId: event.eventId,
      message,
      ...(extra.status === undefined ? {} : { status: extra.status }),
      ...(extra.retryAfterMs === undefined ? {} : { retryAfterMs: extra.retryAfterMs }),
      ...(extra.responseSnippet === undefined ? {} : { responseSnippet: extra.responseSnippet }),
      ...(extra.cause === undefined ? {} : { cause: extra.cause }),
    });
  }
}

/** An observer whose throw, or whose returned promise's rejection, never reaches delivery; the promise is returned to be awaited. */
function observeAsync(onEvent: WebhookTransportOptions['onEvent']): (event: WebhookTransportEvent) => void | Promise<void> {
  if (!onEvent) return () => {};
  return (event) => {
    try {
      const returned = onEvent(event);
      if (returned instanceof Promise) return returned.then(() => {}, () => {});
    } catch {
      // An observer's failure is its own; delivery goes on.
    }
  };
}

function secretOf(secret: SigningSecret): string {
  return typeof secret === 'string' ? secret : secret.secret;
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim().slice(0, 200);
}

import { TidingsError } from '@tidings/outbox';

/** Why an address is refused as a webhook destination. */
export type AddressCategory =
  | 'unspecified'
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'metadata'
  | 'shared'
  | 'multicast'
  | 'broadcast'
  | 'reserved'
  | 'documentation'
  | 'benchmarking'
  | 'unique-local'
  | 'site-local'
  | 'translation';

/** Why a webhook URL is refused: the category of its address, no address at all, or a scheme other than http(s). */
export type AddressRefusedReason = AddressCategory | 'unresolvable' | 'scheme';

/**
 * A webhook URL points, directly or through DNS, at an address that tidings refuses to call
 * (server-side request forgery guard). Thrown at registration; at send time it is the error of a
 * `retry` outcome, and no request is made.
 */
export class WebhookAddressRefusedError extends TidingsError {
  override readonly name = 'WebhookAddressRefusedError';
  /** The URL with any credentials removed. */
  readonly url: string;
  readonly hostname: string;
  /** The refused address, or undefined when the host could not be resolved at all. */
  readonly address: string | undefined;
  readonly reason: AddressRefusedReason;
  constructor(url: string, hostname: string, address: string | undefined, reason: AddressRefusedReason, detail?: string) {
    super(refusalMessage(url, hostname, address, reason, detail));
    this.url = url;
    this.hostname = hostname;
    this.address = address;
    this.reason = reason;
  }
}

function refusalMessage(url: string, hostname: string, address: string | undefined, reason: AddressRefusedReason, detail?: string): string {
  if (reason === 'scheme') return `webhook URL ${url} is refused: ${detail ?? 'only http: and https: URLs can receive webhooks'}.`;
  if (reason === 'unresolvable') return `webhook URL ${url} is refused: its host "${hostname}" could not be resolved (${detail ?? 'no address'}).`;
  const via = address === hostname ? '' : ` (${hostname} resolves to ${address})`;
  return (
    `webhook URL ${url} is refused: ${address} is a ${reason} address${via}. Webhooks are not sent to ` +
    'loopback, private, link-local, shared, multicast, reserved or cloud metadata addresses, to prevent ' +
    "server-side request forgery. For local development or tests, allow the range explicitly: " +
    `addressPolicy({ allow: ['${address?.includes(':') ? `${address}/128` : `${address}/32`}'] }).`
  );
}

/** Why a received webhook was rejected. The receiver answers 401 for each of them. */
export type VerificationFailureReason =
  | 'missing-headers'
  | 'invalid-timestamp'
  | 'timestamp-too-old'
  | 'timestamp-too-new'
  | 'signature-mismatch';

/** A received webhook does not carry a valid Standard Webhooks signature within the time tolerance. */
export class WebhookVerificationError extends TidingsError {
  override readonly name = 'WebhookVerificationError';
  readonly reason: VerificationFailureReason;
  /** The `webhook-id` header, when there was one. */
  readonly webhookId: string | undefined;
  constructor(reason: VerificationFailureReason, webhookId: string | undefined, detail: string) {
    super(`webhook${webhookId ? ` ${webhookId}` : ''} rejected: ${detail}`);
    this.reason = reason;
    this.webhookId = webhookId;
  }
}

/** How a delivery attempt failed. */
export type DeliveryFailureReason =
  | 'connect-timeout'
  | 'timeout'
  | 'network'
  | 'redirect'
  | 'status'
  | 'gone'
  | 'aborted';

/** One delivery attempt did not get a 2xx answer: the error of a `retry` or `failed` outcome. */
export class WebhookDeliveryError extends TidingsError {
  override readonly name = 'WebhookDeliveryError';
  readonly reason: DeliveryFailureReason;
  /** The URL with any credentials removed. */
  readonly url: string;
  readonly eventId: string;
  /** HTTP status, when the receiver answered. */
  readonly status: number | undefined;
  /** What `Retry-After` asked for, in ms. */
  readonly retryAfterMs: number | undefined;
  /** The first bytes of the answer's body, for the dead letter and the endpoint's last error. */
  readonly responseSnippet: string | undefined;
  constructor(init: {
    reason: DeliveryFailureReason;
    url: string;
    eventId: string;
    message: string;
    status?: number;
    retryAfterMs?: number;
    responseSnippet?: string;
    cause?: unknown;
  }) {
    super(`webhook ${init.eventId} to ${init.url}: ${init.message}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.reason = init.reason;
    this.url = init.url;
    this.eventId = init.eventId;
    this.status = init.status;
    this.retryAfterMs = init.retryAfterMs;
    this.responseSnippet = init.responseSnippet;
  }
}

/** An endpoint given to the registry cannot be stored; nothing was written. */
export class InvalidEndpointError extends TidingsError {
  override readonly name = 'InvalidEndpointError';
  /** The field at fault, e.g. `url` or `topics`. */
  readonly field: string;
  constructor(field: string, detail: string) {
    super(`webhook endpoint ${field} ${detail}`);
    this.field = field;
  }
}

/** No webhook endpoint has this id (in this schema). */
export class EndpointNotFoundError extends TidingsError {
  override readonly name = 'EndpointNotFoundError';
  readonly endpointId: string;
  constructor(endpointId: string) {
    super(`no webhook endpoint has id "${endpointId}"; it may have been removed.`);
    this.endpointId = endpointId;
  }
}


/**
 * Every signing secret of a webhook transport has expired: nothing is sent, since a request
 * signed with a revoked secret must not be accepted and one without a signature would be refused.
 * Give the transport a current secret (`rotateSecret` for a registered endpoint).
 */
export class WebhookSecretsExpiredError extends TidingsError {
  override readonly name = 'WebhookSecretsExpiredError';
  /** The URL with any credentials removed. */
  readonly url: string;
  /** When the last of the secrets expired. */
  readonly expiredAt: Date;
  constructor(url: string, expiredAt: Date) {
    super(
      `webhook to ${url} not sent: every signing secret expired (the last at ${expiredAt.toISOString()}). ` +
        'Give the transport a current secret, e.g. with rotateSecret() or `tidings endpoints rotate-secret`.',
    );
    this.url = url;
    this.expiredAt = expiredAt;
  }
}

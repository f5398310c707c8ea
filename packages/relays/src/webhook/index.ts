/**
 * @tidings/relays/webhook — webhooks with delivery guarantees.
 *
 * - **Registry** (`webhookEndpoints`): endpoints with URL, topics, optional tenant, signing secrets
 *   (rotation with a grace period), enable/disable/remove; run `migrateWebhooks()` once. Secrets
 *   are encrypted at rest under `TIDINGS_SECRET_KEY` (`secretKeyring`, `rotateWebhookSecretKey`).
 * - **Dispatcher** (`startWebhookDispatcher`): one relay per enabled endpoint, so a failing
 *   endpoint never delays a healthy one; retries over hours, then dead letters; 410 and long
 *   failure disable the endpoint; SSRF guard on every new connection.
 * - **Transport** (`webhookTransport`): signed Standard Webhooks POSTs to one URL.
 * - **Receiver** (`webhookReceiver`): verifies, deduplicates through the inbox, answers 2xx after commit.
 *
 * @example
 * import { migrateWebhooks, startWebhookDispatcher, webhookEndpoints } from '@tidings/relays/webhook';
 *
 * await migrateWebhooks(db);
 * const endpoints = webhookEndpoints();
 * const { secret } = await endpoints.create(db, { url: 'https://acme.example.com/hooks', topics: ['orders.*'], tenant: 'acme' });
 * const dispatcher = await startWebhookDispatcher({ database: db });
 */
export { classifyAddress, judgeAddress, type AddressPolicy, type AddressVerdict, type Resolver } from './address-policy.ts';
export { startWebhookDispatcher, webhookRetryPolicy, type WebhookDispatcher, type WebhookDispatcherEvent, type WebhookDispatcherOptions } from './dispatcher.ts';
export { webhookRelayName, type DisabledReason, type EndpointChanges, type NewEndpoint, type WebhookEndpoint } from './endpoint.ts';
export { webhookEndpoints, type EndpointSecret, type WebhookEndpoints, type WebhookEndpointsOptions } from './endpoints.ts';
export { encodeEnvelope, type WebhookEnvelope, type WebhookMessage } from './envelope.ts';
export {
  EndpointNotFoundError,
  InvalidEndpointError,
  WebhookAddressRefusedError,
  WebhookDeliveryError,
  WebhookSecretsExpiredError,
  WebhookVerificationError,
  type AddressCategory,
  type AddressRefusedReason,
  type DeliveryFailureReason,
  type VerificationFailureReason,
} from './errors.ts';
export { checkWebhookUrl } from './guarded-lookup.ts';
export { expressWebhookHandler, fastifyWebhookHandler, type FastifyLikeReply, type FastifyLikeRequest } from './receiver-adapters.ts';
export { webhookReceiver, type WebhookReceiver, type WebhookReceiverOptions, type WebhookReply, type WebhookRequest } from './receiver.ts';
export { parseRetryAfter } from './retry-after.ts';
export { migrateWebhooks, type MigrateWebhooksOptions } from './schema.ts';
export { rotateWebhookSecretKey, type RotateSecretKeyOptions, type SecretKeyRotation } from './sealed-secrets.ts';
export { generateWebhookSecret } from './secret.ts';
export { MissingSecretKeyError, SecretDecryptionError, SecretKeyFormatError, type SecretDecryptionReason } from './secret-errors.ts';
export {
  generateSecretKey,
  oldSecretKeysVariable,
  secretKeyring,
  type SecretKeyring,
  secretKeyringFromEnv,
  secretKeyVariable,
  type SealedSecret,
} from './secret-keyring.ts';
export { signWebhook, type SignedContent } from './signature.ts';
export { verifyWebhook, type HeaderSource, type VerifiedWebhook, type VerifyOptions } from './verify.ts';
export {
  webhookCapabilities,
  webhookTransport,
  type SigningSecret,
  type WebhookAttempt,
  type WebhookTransport,
  type WebhookTransportEvent,
  type WebhookTransportOptions,
} from './webhook-transport.ts';
export { wireVersion, type CloudEventsOptions } from '../shared/cloud-events.ts';

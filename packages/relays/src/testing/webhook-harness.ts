import { generateWebhookSecret } from '../webhook/secret.ts';
import { verifyWebhook } from '../webhook/verify.ts';
import { webhookTransport, type WebhookTransport, type WebhookTransportOptions } from '../webhook/webhook-transport.ts';
import { collectingSubscription, type CollectingSubscription } from './conformance-subscription.ts';
import type { TransportHarness } from './harness.ts';
import { startWebhookServer, type TestWebhookServer, type WebhookDownMode } from './webhook-server.ts';

/**
 * An `addressPolicy` that lets the webhook transport reach loopback addresses only: what tests
 * allow past the SSRF guard.
 */
export const loopbackOnly = { allow: ['127.0.0.1/32', '::1/128'] } as const;

export interface WebhookHarness extends TransportHarness {
  /** The receiver the transports send to. */
  readonly server: TestWebhookServer;
  /** The signing secret the transports sign with and the receiver verifies. */
  readonly secret: string;
}

export interface WebhookHarnessOptions {
  /** How the receiver fails while the suite takes it down. */
  readonly downMode: WebhookDownMode;
  /** The transports' send timeout. Default 1 000 ms. */
  readonly sendTimeoutMs?: number;
  /** Options of every transport the harness creates, over its own (URL, secret, loopback policy, timeouts). */
  readonly transport?: Partial<WebhookTransportOptions>;
}

/**
 * The webhook transport's conformance harness: a real node:http receiver on 127.0.0.1 that
 * verifies every signature (a bad one is answered 401, so the suite sees it as undelivered) and
 * routes each envelope to the subscription of its topic. `options.transport` runs the suite with
 * the transport settings of your own service.
 *
 * @example
 * describeTransport('webhook', webhookCapabilities, () => webhookHarness({ downMode: 'error', transport: { userAgent: 'shop-webhooks/1', maxConnections: 4 } }));
 */
export async function webhookHarness(options: WebhookHarnessOptions): Promise<WebhookHarness> {
  const secret = generateWebhookSecret();
  const subscriptions = new Map<string, Set<CollectingSubscription>>();
  const transports = new Set<WebhookTransport>();
  const server = await startWebhookServer(
    (req, res, body) => {
      let envelope: { id: string; topic: string; key: string | null; headers: Record<string, string>; payload: never };
      try {
        verifyWebhook(req.headers, body, secret);
        envelope = JSON.parse(body.toString('utf8'));
      } catch (error) {
        res.writeHead(401).end(String(error));
        return;
      }
      for (const subscription of subscriptions.get(envelope.topic) ?? []) {
        subscription.push({ eventId: envelope.id, topic: envelope.topic, key: envelope.key, headers: envelope.headers, payload: envelope.payload });
      }
      res.writeHead(204).end();
    },
    { downMode: options.downMode },
  );
  return {
    server,
    secret,
    async createTransport() {
      const transport = webhookTransport({
        url: server.url,
        secrets: [secret],
        addressPolicy: loopbackOnly,
        sendTimeoutMs: options.sendTimeoutMs ?? 1_000,
        connectTimeoutMs: 500,
        ...options.transport,
      });
      transports.add(transport);
      return transport;
    },
    async subscribe(topic) {
      const subscription = collectingSubscription(topic, () => {
        subscriptions.get(topic)?.delete(subscription);
      });
      subscriptions.set(topic, (subscriptions.get(topic) ?? new Set()).add(subscription));
      return subscription;
    },
    faults: {
      takeDown: () => server.takeDown(),
      recover: () => server.recover(),
      cutConnections: async () => server.cutConnections(),
    },
    async close() {
      await Promise.all([...transports].map((t) => t.close()));
      await server.close();
    },
  };
}

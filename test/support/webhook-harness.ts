import { collectingSubscription, type CollectingSubscription, type TransportHarness } from '@tidings/relays/testing';
import { generateWebhookSecret, verifyWebhook, webhookTransport, type WebhookTransport } from '@tidings/relays/webhook';
import { startWebhookServer, type DownMode, type TestWebhookServer } from './webhook-server.ts';

/** Loopback only: what tests allow past the SSRF guard. */
export const loopback = { allow: ['127.0.0.1/32', '::1/128'] } as const;

export interface WebhookHarness extends TransportHarness {
  readonly server: TestWebhookServer;
  readonly secret: string;
}

/**
 * The webhook transport's conformance harness: a real node:http receiver on 127.0.0.1 that
 * verifies every signature (a bad one is answered 401, so the suite sees it as undelivered) and
 * routes each envelope to the subscription of its topic.
 */
export async function webhookHarness(options: { downMode: DownMode; sendTimeoutMs?: number }): Promise<WebhookHarness> {
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
        addressPolicy: loopback,
        sendTimeoutMs: options.sendTimeoutMs ?? 1_000,
        connectTimeoutMs: 500,
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

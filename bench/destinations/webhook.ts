import http from 'node:http';
import type { OutboxEvent } from '@tidings/outbox';
import { encodeEnvelope, generateWebhookSecret, signWebhook, webhookTransport } from '@tidings/relays/webhook';
import { startChild } from '../child.ts';
import type { Destination, Target } from './destination.ts';

/** The transport's default connection limit: one per partition. */
const maxConnections = 16;

/**
 * Webhooks: a receiver process on 127.0.0.1 that answers 204. Direct: the same signed Standard
 * Webhooks requests (same body, same headers) over a keep-alive agent with the transport's
 * connection limit, one request at a time per partition, every partition at once — the
 * concurrency the relay has.
 */
export async function webhookDestination(): Promise<Destination> {
  const receiver = startChild('webhook-receiver');
  const { port } = (await receiver.next('listening')) as unknown as { port: number };
  const url = `http://127.0.0.1:${port}/hooks`;
  const secret = generateWebhookSecret();
  return {
    name: 'webhook',
    async target() {
      const agent = new http.Agent({ keepAlive: true, maxSockets: maxConnections, scheduling: 'lifo' });
      return {
        transport: () => webhookTransport({ url, secrets: [secret], addressPolicy: { allow: ['127.0.0.1/32'] }, maxConnections }),
        async direct(lanes) {
          await Promise.all(lanes.map(async (lane) => {
            for (const event of lane) await post(agent, url, secret, event);
          }));
        },
        publishOne: (event) => post(agent, url, secret, event),
        async dispose() {
          agent.destroy();
        },
      } satisfies Target;
    },
    async close() {
      await receiver.stop();
    },
  };
}

function post(agent: http.Agent, url: string, secret: string, event: OutboxEvent): Promise<void> {
  const body = encodeEnvelope(event);
  const timestamp = Math.floor(Date.now() / 1000);
  const headers = {
    'content-type': 'application/json',
    'content-length': body.length,
    'user-agent': 'tidings-bench',
    'webhook-id': event.eventId,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signWebhook({ id: event.eventId, timestamp, body }, [secret]),
  };
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: 'POST', agent, headers }, (response) => {
      response.resume();
      response.on('end', () => (response.statusCode! >= 200 && response.statusCode! < 300 ? resolve() : reject(new Error(`receiver answered ${response.statusCode}`))));
    });
    request.on('error', reject);
    request.end(body);
  });
}

/**
 * Webhooks: relay worker processes POST each event, signed, through a fault proxy to a real
 * node:http receiver on loopback, where `webhookReceiver` verifies it and applies it through the
 * inbox. The receiver can answer 500, hold its transaction past the relay's timeout (so the retry
 * races the first attempt), answer slowly, handle a request twice at once, or commit and then drop
 * the connection before answering. An arrival is a request the receiver accepted (2xx).
 */
import { generateWebhookSecret, webhookReceiver } from '@tidings/relays/webhook';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { services } from '../../support/env.ts';
import { createFaultProxy } from '@tidings/relays/testing';
import { processFleet } from '../../support/property-fleet.ts';
import type { DestinationSpec, ReceiverFailure } from '../destination.ts';
import type { Arrival } from '../history.ts';
import { applyEffect, readEffects } from '../inbox-consumer.ts';
import { postgresProxy } from '../proxies.ts';

/** The relay gives up on a request after this long; a `timeout` failure holds the receiver longer. */
const relayTimeoutMs = 1_000;

type Failure = ReceiverFailure | 'duplicate' | 'crash';

async function readBody(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

export const webhookDestination: DestinationSpec = {
  name: 'webhook',
  ordered: true,
  ciRuns: 5,
  faults: ['crash-relay', 'pause-relay', 'join-relay', 'cut-broker', 'broker-outage', 'cut-relay-db', 'receiver-failures', 'duplicate-delivery', 'consumer-crash'],
  async create(context) {
    const { schema } = context;
    const pool = new pg.Pool({ connectionString: services.postgres, max: 6 });
    pool.on('error', () => {});
    const secret = generateWebhookSecret();
    const holds = new Map<string, number>();
    const receiver = webhookReceiver({
      secrets: secret,
      consumer: 'property',
      schema,
      database: async <R>(work: (trx: pg.PoolClient) => Promise<R>): Promise<R> => {
        const client = await pool.connect();
        let broken: Error | undefined;
        try {
          await client.query('BEGIN');
          const result = await work(client);
          await client.query('COMMIT');
          return result;
        } catch (error) {
          broken = error as Error;
          await client.query('ROLLBACK').catch(() => {});
          throw error;
        } finally {
          client.release(broken);
        }
      },
      handler: async (trx, message) => {
        const holdMs = holds.get(message.eventId) ?? 0;
        await context.swallower.handle(trx, message, () => applyEffect(trx, schema, { eventId: message.eventId, key: message.key }, holdMs));
      },
    });
    const arrivals: Arrival[] = [];
    const failures: Failure[] = [];
    const server = http.createServer((req, res) => {
      void (async () => {
        const body = await readBody(req);
        const failure = failures.shift();
        if (failure === '500') return void res.writeHead(500).end('failing on purpose');
        const request = { method: req.method, headers: req.headers, body };
        const id = String(req.headers['webhook-id']);
        if (failure === 'slow') await sleep(relayTimeoutMs / 3);
        if (failure === 'timeout') holds.set(id, relayTimeoutMs * 1.5);
        if (failure === 'duplicate') holds.set(id, 50);
        const [reply] = await Promise.all(failure === 'duplicate' ? [receiver.handle(request), receiver.handle(request)] : [receiver.handle(request)]);
        holds.delete(id);
        if (reply.status < 300) {
          const envelope = JSON.parse(body.toString('utf8')) as { id: string; key: string | null };
          arrivals.push({ eventId: envelope.id, key: envelope.key });
        }
        if (failure === 'crash') return void req.socket.destroy(); // committed, never answered
        if (!res.destroyed) res.writeHead(reply.status, reply.headers).end(reply.body);
      })().catch(() => res.destroy());
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: (server.address() as AddressInfo).port } });
    const relayDb = await postgresProxy();

    return {
      fleet: processFleet({
        databaseUrl: relayDb.url,
        schema,
        relay: context.relay,
        leaseMs: context.leaseMs,
        transport: () => ({
          kind: 'webhook',
          options: {
            url: `http://127.0.0.1:${proxy.port}/hooks`,
            secrets: [secret],
            addressPolicy: { allow: ['127.0.0.1/32', '::1/128'] },
            sendTimeoutMs: relayTimeoutMs,
            connectTimeoutMs: 500,
          },
        }),
      }),
      cutBroker: async () => proxy.cutAll(),
      brokerDown: async () => {
        proxy.refuseNew(true);
        proxy.cutAll();
      },
      brokerUp: async () => proxy.refuseNew(false),
      cutRelayDatabase: async () => relayDb.proxy.cutAll(),
      receiverFailures: async (mode, count) => void failures.push(...Array<Failure>(count).fill(mode)),
      duplicateDelivery: async (count) => void failures.push(...Array<Failure>(count).fill('duplicate')),
      consumerCrash: async () => void failures.push('crash'),
      heal: async () => {
        proxy.refuseNew(false);
        failures.length = 0;
      },
      observe: async () => ({ arrivals: [...arrivals], effects: await readEffects(pool, schema) }),
      async close() {
        await Promise.all([proxy.close(), relayDb.proxy.close()]);
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
        await pool.end();
      },
    };
  },
};

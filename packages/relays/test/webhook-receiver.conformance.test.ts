import { migrateInbox } from '@tidings/inbox';
import type { OutboxEvent } from '@tidings/outbox';
import { describeConsumer, testEvent, type ConsumerHarness, loopbackOnly, startWebhookServer } from '@tidings/relays/testing';
import { generateWebhookSecret, webhookReceiver, webhookTransport } from '@tidings/relays/webhook';
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { freshOutbox } from '../../../test/support/db.ts';

/**
 * webhookReceiver behind a real node:http server on loopback, fed by tidings' webhook sender that
 * signs each request; like the relay, the sender tries an event again until it is answered 2xx. A
 * crash is the receiver committing and then dropping the connection without answering.
 */
async function webhookConsumerHarness(): Promise<ConsumerHarness> {
  const outbox = await freshOutbox('webhook_conformance');
  await migrateInbox(outbox.db, { schema: outbox.schema });
  return {
    database: outbox.pool,
    schema: outbox.schema,
    configure: (overrides) => webhookReceiver({ secrets: generateWebhookSecret(), consumer: 'c', database: outbox.pool, handler: () => {}, ...overrides }),
    async start(run) {
      const secret = generateWebhookSecret();
      const topic = `conformance.${randomBytes(4).toString('hex')}`;
      let crashes = 0;
      let crashNow = false;
      const receiver = webhookReceiver({
        secrets: secret,
        consumer: run.consumer,
        schema: outbox.schema,
        database: outbox.pool,
        handler: (trx: pg.PoolClient, event) => run.handler(trx, event),
        onEvent: (event) => {
          if (run.crashAfterFirstCommit && crashes === 0 && event.type === 'committed' && event.applied) {
            crashes++;
            crashNow = true;
          }
          run.onEvent(event);
        },
      });
      const server = await startWebhookServer(async (req, res, body) => {
        const reply = await receiver.handle({ method: req.method, headers: req.headers, body });
        if (crashNow) {
          crashNow = false;
          res.socket?.destroy();
          return;
        }
        res.writeHead(reply.status, reply.headers).end(reply.body);
      });
      const transport = webhookTransport({ url: server.url, secrets: [secret], addressPolicy: loopbackOnly, sendTimeoutMs: 10_000 });
      const sent = new Map<string, OutboxEvent>();
      const unanswered = new Set<string>();
      const sending = new Set<Promise<void>>();
      let closed = false;
      // The relay's part: send until each event is answered 2xx.
      const send = (events: readonly OutboxEvent[]): void => {
        for (const event of events) unanswered.add(event.eventId);
        const loop = (async () => {
          let left = [...events];
          while (left.length > 0 && !closed) {
            const outcomes = await transport.send(left, AbortSignal.timeout(15_000));
            const failed = left.filter((_, i) => outcomes[i]!.status !== 'delivered');
            for (const event of left) if (!failed.includes(event)) unanswered.delete(event.eventId);
            left = failed;
            if (left.length > 0) await new Promise((resolve) => setTimeout(resolve, 20));
          }
        })();
        sending.add(loop);
        void loop.finally(() => sending.delete(loop));
      };
      return {
        consumer: receiver,
        get crashes() {
          return crashes;
        },
        async deliver(inputs) {
          const events = inputs.map((input) => testEvent({ topic, key: input.key, payload: input.payload }));
          for (const event of events) sent.set(event.eventId, event);
          send(events);
          return events.map((event) => event.eventId);
        },
        async redeliver(eventIds) {
          send(eventIds.map((id) => sent.get(id)!));
          await Promise.all([...sending]);
        },
        pending: async () => unanswered.size,
        async close() {
          closed = true;
          await Promise.allSettled([...sending]);
          await receiver.close();
          await transport.close();
          await server.close();
        },
      };
    },
    close: () => outbox.close(),
  };
}

describeConsumer('webhookReceiver', {
  transport: 'webhook',
  onExhausted: 'sender-retries',
  orderedPerKey: true,
  countsAttempts: false,
  crash: 'commits, then drops the connection without answering',
}, webhookConsumerHarness);

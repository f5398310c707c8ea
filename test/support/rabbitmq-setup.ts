import { migrateInbox } from '@tidings/inbox';
import type { OutboxEvent } from '@tidings/outbox';
import { consumeRabbitmq, type RabbitmqConsumer, type RabbitmqConsumerEvent, type RetryOptions } from '@tidings/relays/rabbitmq';
import amqp, { type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { waitUntil } from './check.ts';
import { freshOutbox, type TestOutbox } from './db.ts';
import { services } from './env.ts';

/** An outbox and an inbox in one fresh schema, plus the business table the handlers write to. */
export interface RabbitmqWorld {
  readonly outbox: TestOutbox;
  readonly schema: string;
  /** Every application of an effect, in order; no unique key, so a double apply shows. */
  effects(consumer: string): Promise<{ event_id: string; key: string | null }[]>;
  close(): Promise<void>;
}

export async function rabbitmqWorld(label: string): Promise<RabbitmqWorld> {
  const outbox = await freshOutbox(label, { partitions: 4 });
  await migrateInbox(outbox.db, { schema: outbox.schema });
  await outbox.pool.query(`CREATE TABLE "${outbox.schema}".effects (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, consumer text NOT NULL, event_id text NOT NULL, key text
  )`);
  return {
    outbox,
    schema: outbox.schema,
    async effects(consumer) {
      const { rows } = await outbox.pool.query<{ event_id: string; key: string | null }>(
        `SELECT event_id, key FROM "${outbox.schema}".effects WHERE consumer = $1 ORDER BY seq`,
        [consumer],
      );
      return rows;
    },
    close: () => outbox.close(),
  };
}

/** How often each event id appears; the ids that appear more than once. */
export function applicationsOver(rows: readonly { event_id: string }[], limit = 1): string[] {
  const counts = new Map<string, number>();
  for (const row of rows) counts.set(row.event_id, (counts.get(row.event_id) ?? 0) + 1);
  return [...counts].filter(([, n]) => n > limit).map(([id, n]) => `${id} ×${n}`);
}

export interface TestConsumer {
  readonly consumer: RabbitmqConsumer;
  readonly events: RabbitmqConsumerEvent[];
  readonly queue: string;
}

/** A consumer helper whose handler records each event in the effects table (inside the inbox transaction). */
export async function startEffectConsumer(
  world: RabbitmqWorld,
  options: {
    name: string;
    bindings: string[];
    url?: string;
    queue?: string;
    prefetch?: number;
    fail?: (event: { eventId: string; attempt: number; payload: unknown }) => boolean;
    retry?: RetryOptions;
    onEvent?: (event: RabbitmqConsumerEvent) => void;
  },
): Promise<TestConsumer> {
  const events: RabbitmqConsumerEvent[] = [];
  const queue = options.queue ?? `test.${options.name}.${randomBytes(4).toString('hex')}`;
  const consumer = await consumeRabbitmq({
    url: options.url ?? services.rabbitmq,
    queue,
    bindings: options.bindings,
    consumer: options.name,
    schema: world.schema,
    database: world.outbox.pool,
    prefetch: options.prefetch ?? 20,
    heartbeatSeconds: 5,
    reconnect: { minDelayMs: 50, maxDelayMs: 500 },
    retry: options.retry ?? { attempts: 5, minDelayMs: 100, maxDelayMs: 100 },
    handler: async (trx: pg.PoolClient, event) => {
      if (options.fail?.({ eventId: event.eventId, attempt: event.attempt, payload: event.payload })) {
        throw new Error(`handler refused ${event.eventId} on attempt ${event.attempt}`);
      }
      await trx.query(`INSERT INTO "${world.schema}".effects (consumer, event_id, key) VALUES ($1, $2, $3)`, [options.name, event.eventId, event.key]);
    },
    onEvent: (event) => {
      events.push(event);
      options.onEvent?.(event);
    },
  });
  return { consumer, events, queue };
}

/** A plain amqplib connection for tests that publish or inspect queues by hand. */
export async function rawChannel(): Promise<{ connection: ChannelModel; channel: Channel; close(): Promise<void> }> {
  const connection = await amqp.connect(services.rabbitmq);
  connection.on('error', () => {});
  const channel = await connection.createChannel();
  return { connection, channel, close: () => connection.close().catch(() => {}) };
}

/** Waits until `queue` holds `count` messages and takes them all. */
export async function drainQueue(channel: Channel, queue: string, count: number, timeoutMs = 20_000): Promise<GetMessage[]> {
  const taken: GetMessage[] = [];
  await waitUntil(`${count} messages in ${queue}`, async () => {
    let message;
    while ((message = await channel.get(queue, { noAck: true }))) taken.push(message);
    return taken.length >= count;
  }, timeoutMs);
  return taken;
}

/** Runs `rabbitmqctl` with `args`. */
export function rabbitmqctl(...args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile('rabbitmqctl', args, { timeout: 120_000 }, (error, stdout, stderr) => (error ? reject(new Error(`rabbitmqctl ${args.join(' ')}: ${stderr || error.message}`)) : resolve(stdout))),
  );
}

/**
 * Restarts the RabbitMQ application (every connection drops; durable queues and persistent
 * messages survive) and waits until it accepts connections again.
 */
export async function restartRabbitmq(): Promise<void> {
  try {
    await rabbitmqctl('stop_app');
  } finally {
    await rabbitmqctl('start_app');
  }
  await waitUntil('RabbitMQ accepts connections again', async () => {
    const connection = await amqp.connect(services.rabbitmq);
    await connection.close();
    return true;
  }, 60_000);
}

/** Event ids in commit order, for `judge`. */
export function idsOf(events: readonly OutboxEvent[]): string[] {
  return events.map((e) => e.eventId);
}

import { createKafkaClient } from '@tidings/relays/kafka';
import type { OutboxEvent } from '@tidings/outbox';
import { startWebhookServer, type TestWebhookServer } from '@tidings/relays/testing';
import amqp from 'amqplib';
import type { Admin, KafkaMessage } from 'kafkajs';
import type { IncomingHttpHeaders } from 'node:http';
import { randomBytes } from 'node:crypto';
import { waitUntil } from './check.ts';
import { services } from './env.ts';

/** The bytes a transport put on the wire, captured by plain clients of each protocol. */

/** An AMQP queue bound to `topic` on the `tidings` exchange, read with amqplib's `get`. */
export interface AmqpCapture {
  /** Waits for the next message and returns it raw (fields, properties, content). */
  next(): Promise<amqp.GetMessage>;
  close(): Promise<void>;
}

export async function captureAmqp(topic: string, exchange = 'tidings'): Promise<AmqpCapture> {
  const connection = await amqp.connect(services.rabbitmq);
  const channel = await connection.createChannel();
  await channel.assertExchange(exchange, 'topic', { durable: true });
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true });
  await channel.bindQueue(queue, exchange, topic);
  return {
    async next() {
      let message: amqp.GetMessage | false = false;
      await waitUntil(`a message on ${topic}`, async () => {
        message = await channel.get(queue, { noAck: true });
        return message !== false;
      });
      return message as unknown as amqp.GetMessage;
    },
    async close() {
      await connection.close().catch(() => {});
    },
  };
}

/** A Kafka topic of its own, and every record on it as kafkajs reads it. */
export interface KafkaCapture {
  readonly topic: string;
  records(count: number): Promise<KafkaMessage[]>;
  close(): Promise<void>;
}

export async function captureKafka(label: string): Promise<KafkaCapture> {
  const kafka = createKafkaClient({ brokers: services.kafka, logLevel: 'nothing' });
  const admin: Admin = kafka.admin();
  await admin.connect();
  const topic = `wire.${label}.${randomBytes(4).toString('hex')}`;
  await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
  return {
    topic,
    async records(count) {
      const records: KafkaMessage[] = [];
      const consumer = kafka.consumer({ groupId: `wire-${randomBytes(6).toString('hex')}`, maxWaitTimeInMs: 100 });
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({ eachMessage: async ({ message }) => void records.push(message) });
      try {
        await waitUntil(`${count} records read from ${topic}`, async () => records.length >= count);
      } finally {
        await consumer.disconnect();
      }
      return records;
    },
    async close() {
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    },
  };
}

/** Kafka headers as strings (kafkajs hands them as Buffers). */
export function kafkaHeaderText(message: KafkaMessage): Record<string, string> {
  return Object.fromEntries(Object.entries(message.headers ?? {}).map(([name, value]) => [name, String(value)]));
}

/** One HTTP request as the receiver got it. */
export interface CapturedRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

/** A webhook receiver on loopback that answers 204 and keeps every request. */
export interface WebhookCapture {
  readonly server: TestWebhookServer;
  readonly requests: CapturedRequest[];
  next(): Promise<CapturedRequest>;
  close(): Promise<void>;
}

export async function captureWebhooks(): Promise<WebhookCapture> {
  const requests: CapturedRequest[] = [];
  let taken = 0;
  const server = await startWebhookServer((req, res, body) => {
    requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
    res.writeHead(204).end();
  });
  return {
    server,
    requests,
    async next() {
      await waitUntil('a webhook request', async () => requests.length > taken);
      return requests[taken++]!;
    },
    close: () => server.close(),
  };
}

/** Sends one event through a transport and closes it; throws unless the event was delivered. */
export async function sendOne(
  transport: { send(batch: readonly OutboxEvent[], signal: AbortSignal): Promise<readonly { status: string; error?: unknown }[]>; close(): Promise<void> },
  event: OutboxEvent,
): Promise<void> {
  try {
    const [outcome] = await transport.send([event], AbortSignal.timeout(30_000));
    if (outcome?.status !== 'delivered') throw new Error(`the event was not delivered: ${outcome?.status}`, { cause: outcome?.error });
  } finally {
    await transport.close();
  }
}

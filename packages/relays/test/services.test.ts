import { randomBytes } from 'node:crypto';
import amqp from 'amqplib';
import { createKafkaClient } from '@tidings/relays/kafka';
import { createTopicWhenReady } from '@tidings/relays/testing';
import { describe, expect, it } from 'vitest';
import { services } from '../../../test/support/env.ts';

// The wiring every relay test stands on: the real brokers answer, with the clients and versions
// tidings uses.
describe('the brokers the relay tests use', () => {
  it('RabbitMQ takes a persistent message with publisher confirms and hands it to a consumer', async () => {
    const connection = await amqp.connect(services.rabbitmq);
    try {
      const channel = await connection.createConfirmChannel();
      const { queue } = await channel.assertQueue('', { exclusive: true });
      const body = Buffer.from(JSON.stringify({ hello: randomBytes(4).toString('hex') }));
      channel.sendToQueue(queue, body, { persistent: true, messageId: 'm1' });
      await channel.waitForConfirms();
      const message = await channel.get(queue, { noAck: true });
      expect(message && message.content.toString()).toBe(body.toString());
      expect(message && message.properties.messageId).toBe('m1');
    } finally {
      await connection.close();
    }
  });

  it('Kafka round-trips keyed messages with headers through kafkajs 2.2.4 (idempotent producer, acks all)', async () => {
    // The kafkajs client as tidings configures it (the same library, with its negative-timer fix).
    const kafka = createKafkaClient({ clientId: 'tidings-wiring', brokers: services.kafka, logLevel: 'nothing' });
    const topic = `wiring-${randomBytes(4).toString('hex')}`;
    const admin = kafka.admin();
    await admin.connect();
    await createTopicWhenReady(admin, { topic, numPartitions: 2 });
    await admin.disconnect();

    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await producer.connect();
    await producer.send({
      topic,
      acks: -1,
      messages: [
        { key: 'k', value: 'one', headers: { event_id: 'e1' } },
        { key: 'k', value: 'two', headers: { event_id: 'e2' } },
      ],
    });
    await producer.disconnect();

    const consumer = kafka.consumer({ groupId: `${topic}-group` });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    const seen: string[] = [];
    const done = new Promise<void>((resolve) => {
      void consumer.run({
        eachMessage: async ({ message }) => {
          seen.push(`${message.key?.toString()}:${message.value?.toString()}:${message.headers?.event_id?.toString()}`);
          if (seen.length === 2) resolve();
        },
      });
    });
    await done;
    await consumer.disconnect();
    // Same key, same partition, in order.
    expect(seen).toEqual(['k:one:e1', 'k:two:e2']);
  });
});

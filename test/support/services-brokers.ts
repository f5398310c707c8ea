import amqp from 'amqplib';
import { ensureKafka } from '../../kafka/broker.mjs';
import { services } from './env.ts';

/**
 * Finds RabbitMQ and Kafka before any relay test runs. RabbitMQ must already be running; Kafka is
 * started from the official jars (see kafka/README.md) when nothing listens on its port, and stopped
 * again when the run ends.
 */
export default async function setup(): Promise<() => Promise<void>> {
  try {
    const connection = await amqp.connect(services.rabbitmq, { timeout: 5_000 });
    await connection.close();
  } catch (error) {
    throw new Error(
      `RabbitMQ is not reachable at ${services.rabbitmq.replace(/:[^:@/]*@/, ':***@')} ` +
        `(${(error as Error).message}). Start it (for example \`rabbitmq-server -detached\`, or ` +
        '`docker compose up -d rabbitmq`) or point RABBITMQ_URL at a running broker.',
    );
  }
  const kafka = await ensureKafka({ brokers: services.kafka, log: (line: string) => console.error(line) });
  return () => kafka.stop();
}

/** Where the tests find their services; every address can be overridden by the environment. */
export const services = {
  postgres: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
  rabbitmq: process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672',
  kafka: process.env.KAFKA_BROKERS ?? '127.0.0.1:9092',
} as const;

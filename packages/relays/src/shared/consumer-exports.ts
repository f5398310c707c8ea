/** The consumer contract's types, re-exported by every transport entry point that has a consumer helper. */
export type { Consumer, ConsumerOptions, Delivery, FeedDelivery, KafkaDelivery, RabbitmqDelivery, ReceivedEvent, RetryOptions, WebhookDelivery } from './consumer.ts';
export type { KyselyLike, MikroOrmLike, OrmTransactionLike, PgPoolLike, PostgresJsLike, PrismaLike, TransactionOf, TransactionRunner, TransactionSource } from './transaction-source.ts';

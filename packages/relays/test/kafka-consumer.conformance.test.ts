import { describeConsumer } from '@tidings/relays/testing';
import { kafkaConsumerHarness } from '../../../test/support/kafka-consumer-harness.ts';

describeConsumer('consumeKafka', {
  transport: 'kafka',
  onExhausted: 'dead-letter',
  orderedPerKey: true,
  countsAttempts: true,
  crash: 'its connections cut after the database commit, before the offset commit',
}, () => kafkaConsumerHarness('kafkajs'));

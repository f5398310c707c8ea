import { describeConsumer } from '@tidings/relays/testing';
import { kafkaConsumerHarness } from '../../../test/support/kafka-consumer-harness.ts';

// The same checks as kafka-consumer.conformance.test.ts, with the @platformatic/kafka consumer:
// its connections go through the TCP fault proxy by its `connectTo` option.
describeConsumer('consumeKafka (@platformatic/kafka)', {
  transport: 'kafka',
  onExhausted: 'dead-letter',
  orderedPerKey: true,
  countsAttempts: true,
  crash: 'its connections cut after the database commit, before the offset commit',
}, () => kafkaConsumerHarness('platformatic'));

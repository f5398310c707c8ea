import { describeConsumer } from '@tidings/relays/testing';
import { feedConsumerHarness } from '../../../test/support/feed-consumer-harness.ts';

describeConsumer('websocketConsumer', {
  transport: 'websocket',
  onExhausted: 'stop',
  orderedPerKey: true,
  countsAttempts: true,
  crash: 'stopped after the commit and restarted from the stored cursor',
}, () => feedConsumerHarness('websocket'));

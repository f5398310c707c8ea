import { consumerConformance } from '@tidings/relays/testing';
import { feedConsumerHarness } from '../../../test/support/feed-consumer-harness.ts';

consumerConformance('websocketConsumer', () => feedConsumerHarness('websocket'), {
  transport: 'websocket',
  onExhausted: 'stop',
  orderedPerKey: true,
  countsAttempts: true,
  crash: 'stopped after the commit and restarted from the stored cursor',
});

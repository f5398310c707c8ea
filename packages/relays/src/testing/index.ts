/**
 * Test kit for transports and for services that use tidings: the transport, consumer and feed
 * conformance suites, harnesses for the in-memory, RabbitMQ, Kafka and webhook transports, a
 * webhook receiver whose faults a test switches, SSE and polling feed clients, synthetic events,
 * and the fault proxy.
 *
 * Importing this module loads vitest (the suite declares vitest tests).
 */
export {
  describeTransport,
  runCheck,
  transportChecks,
  type CheckContext,
  type ConformanceOptions,
  type TransportCheck,
} from './conformance.ts';
export {
  ArrivalAssertionError,
  assertAllArrived,
  compareArrivals,
  describeReport,
  waitForIds,
  type ArrivalOptions,
  type ArrivalReport,
} from './conformance-arrivals.ts';
export { memoryHarness, type MemoryHarness, type MemoryHarnessOptions } from './conformance-memory.ts';
export { collectingSubscription, type CollectingSubscription } from './conformance-subscription.ts';
export { newEventId, sampleEvents, testEvent, testEvents, type SampleEvent, type TestEventInit, type TestEventsInit } from './events.ts';
export type { ReceivedMessage, Subscription, TransportFaults, TransportHarness } from './harness.ts';
export { MemoryBroker, type MemoryBrokerOptions } from './memory-broker.ts';
export { MemoryBrokerError, type DownBehaviour, type FailurePredicate, type MemoryFailureReason } from './memory-broker-faults.ts';
export { memoryCapabilities, memoryTransport, type MemoryTransport, type MemoryTransportOptions } from './memory-transport.ts';
export { createFaultProxy, type FaultProxy, type FaultProxyOptions, type FaultProxyTarget } from './fault-proxy.ts';
export { createTopicWhenReady, kafkaHarness, type KafkaHarness, type KafkaHarnessOptions } from './kafka-harness.ts';
export { rabbitmqHarness, type RabbitmqHarness, type RabbitmqHarnessOptions } from './rabbitmq-harness.ts';
export { loopbackOnly, webhookHarness, type WebhookHarness, type WebhookHarnessOptions } from './webhook-harness.ts';
export { startWebhookServer, type TestWebhookServer, type WebhookDownMode, type WebhookServerHandler } from './webhook-server.ts';
export {
  describeFeed,
  pollingFeedReader,
  sseFeedReader,
  type FeedCapabilities,
  type FeedConformanceOptions,
  type FeedHarness,
  type FeedRead,
  type FeedReaderOptions,
  type FeedReadRequest,
  type ScopeHeaders,
} from './feed-conformance.ts';
export { openSse, pollFeed, pollFeedAll, type PollAnswer, type SseReader } from './feed-clients.ts';
export { openWebSocketFeed, websocketFeedReader, type WebSocketReader } from './websocket-client.ts';
export {
  describeConsumer,
  type AppliedEvent,
  type ConsumerCapabilities,
  type ConsumerCheck,
  type ConsumerCheckContext,
  type ConsumerConformanceOptions,
  type ConsumerHarness,
  type ConsumerInput,
  type ConsumerRun,
  type ConsumerUnderTest,
  type SqlTransaction,
} from './consumer-conformance.ts';
export { consumerChecks } from './consumer-conformance-checks.ts';
export { waitUntil } from './wait-until.ts';

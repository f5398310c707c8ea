import { describeTransport, memoryCapabilities, memoryHarness, type ConformanceOptions } from '@tidings/relays/testing';

// An in-process destination answers at once; the real-broker defaults would only slow these runs down.
const fast: ConformanceOptions = { downSendTimeoutMs: 300, settleMs: 50 };

describeTransport('memory', memoryCapabilities, memoryHarness, fast);
describeTransport('memory, slow and hanging while down', memoryCapabilities, () => memoryHarness({ latencyMs: 5, whenDown: 'hang' }), fast);
describeTransport(
  'memory, batches of at most 64, throwing while down',
  { ...memoryCapabilities, maxBatchSize: 64 },
  () => memoryHarness({ maxBatchSize: 64, whenDown: 'throw', latencyMs: 1 }),
  fast,
);

import { describe, it } from 'vitest';
import { kafkaCheckpointDestination as destination } from './destinations/kafka.ts';
import { runProperty } from './run-property.ts';
import { settings } from './settings.ts';

describe('the Kafka transport, its consumer in checkpoint mode, under faults', () => {
  it('delivers every committed event at least once, in per-key log order, with each record applied exactly once', () => runProperty(destination), settings(destination.ciRuns).testTimeoutMs);
});

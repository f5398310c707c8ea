import { describe, it } from 'vitest';
import { kafkaPlatformaticCheckpointDestination, kafkaPlatformaticDestination } from './destinations/kafka.ts';
import { runProperty } from './run-property.ts';
import { settings } from './settings.ts';

describe('the Kafka transport, its consumer on @platformatic/kafka, under faults', () => {
  it(
    'delivers every committed event at least once, in per-key commit order, with exactly-once effects (inbox mode)',
    () => runProperty(kafkaPlatformaticDestination),
    settings(kafkaPlatformaticDestination.ciRuns).testTimeoutMs,
  );
  it(
    'delivers every committed event at least once, in per-key log order, with each record applied exactly once (checkpoint mode)',
    () => runProperty(kafkaPlatformaticCheckpointDestination),
    settings(kafkaPlatformaticCheckpointDestination.ciRuns).testTimeoutMs,
  );
});

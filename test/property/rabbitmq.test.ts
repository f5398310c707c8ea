import { afterAll, beforeAll, describe, it } from 'vitest';
import { holdBroker } from '../support/rabbitmq-broker-lock.ts';
import { rabbitmqDestination as destination } from './destinations/rabbitmq.ts';
import { runProperty } from './run-property.ts';
import { settings } from './settings.ts';

describe('the RabbitMQ transport under faults', () => {
  // Other test files restart the broker under an exclusive lock: not in the middle of these runs.
  let release: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    release = await holdBroker('shared');
  });
  afterAll(() => release?.());

  it('delivers every committed event at least once, in per-key commit order, with exactly-once effects', () => runProperty(destination), settings(destination.ciRuns).testTimeoutMs);
});

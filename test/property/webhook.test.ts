import { describe, it } from 'vitest';
import { webhookDestination as destination } from './destinations/webhook.ts';
import { runProperty } from './run-property.ts';
import { settings } from './settings.ts';

describe('webhooks to a real HTTP receiver under faults', () => {
  it('delivers every committed event at least once, in per-key commit order, with exactly-once effects', () => runProperty(destination), settings(destination.ciRuns).testTimeoutMs);
});

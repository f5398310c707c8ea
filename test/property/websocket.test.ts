import { describe, it } from 'vitest';
import { websocketDestination as destination } from './destinations/feeds.ts';
import { runProperty } from './run-property.ts';
import { settings } from './settings.ts';

describe('the WebSocket feed and its consumer under faults', () => {
  it('delivers every committed event at least once, in per-key commit order, with exactly-once effects', () => runProperty(destination), settings(destination.ciRuns).testTimeoutMs);
});

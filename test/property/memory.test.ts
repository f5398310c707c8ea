import { describe, it } from 'vitest';
import { memoryDestination as destination } from './destinations/memory.ts';
import { runProperty } from './run-property.ts';
import { settings } from './settings.ts';

describe('the in-memory transport under faults', () => {
  it('delivers every committed event at least once, in per-key commit order, with exactly-once effects', () => runProperty(destination), settings(destination.ciRuns).testTimeoutMs);
});

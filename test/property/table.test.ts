import { describe, it } from 'vitest';
import { tableDestination as destination } from './destinations/table.ts';
import { runProperty } from './run-property.ts';
import { settings } from './settings.ts';

describe('the table transport with relay worker processes under faults', () => {
  it('delivers every committed event at least once, in per-key commit order, with exactly-once effects', () => runProperty(destination), settings(destination.ciRuns).testTimeoutMs);
});

import fc from 'fast-check';
import { describe, it } from 'vitest';
import { parkingCase, runParkingCase } from './parking-run.ts';
import { settings } from './settings.ts';

// TIDINGS_PROPERTY_RUNS, _SEED, _PATH and TIDINGS_SOAK work here as in the rest of the suite.
const config = settings(8);
const runs = config.runs;

describe('key parking and outages under the default relay policy', () => {
  it('keeps every key in commit order through random permanent failures and outages, without delaying keys that did not fail', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(parkingCase(20), async (c) => {
        const anomalies = await runParkingCase(c, `r${++run}`);
        if (anomalies.length > 0) {
          throw new Error(`${anomalies.length} anomalies (${[...new Set(anomalies.map((a) => a.split(':')[0]))].join(', ')}):\n  ${anomalies.slice(0, 20).join('\n  ')}`);
        }
      }),
      { numRuns: runs, seed: config.seed, path: config.path, endOnFailure: true, interruptAfterTimeLimit: config.timeLimitMs },
    );
  }, (config.timeLimitMs ?? runs * 90_000) + 60_000);
});

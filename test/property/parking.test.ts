import fc from 'fast-check';
import { describe, it } from 'vitest';
import { parkingCase, runParkingCase } from './parking-run.ts';

// TIDINGS_PROPERTY_RUNS, TIDINGS_PROPERTY_SEED and TIDINGS_PROPERTY_PATH work here as in the rest of the suite.
const runs = Number(process.env.TIDINGS_PROPERTY_RUNS || 6);
const seed = process.env.TIDINGS_PROPERTY_SEED ? Number(process.env.TIDINGS_PROPERTY_SEED) : Math.floor(Math.random() * 2 ** 31);

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
      { numRuns: runs, seed, path: process.env.TIDINGS_PROPERTY_PATH || undefined, endOnFailure: true },
    );
  }, runs * 90_000 + 60_000);
});

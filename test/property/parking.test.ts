import fc from 'fast-check';
import { describe, it } from 'vitest';
import { parkingCase, runParkingCase } from './parking-run.ts';
import { settings } from './settings.ts';

// TIDINGS_PROPERTY_RUNS, _SEED, _PATH and TIDINGS_SOAK work here as in the rest of the suite.
const config = settings(8);
const runs = config.runs;
// CI: 4 to 20 transactions a case; the soak: TIDINGS_SOAK_TRANSACTIONS (500) to a fifth more.
const size = config.minTransactions > 0 ? { min: config.minTransactions, max: Math.ceil(config.minTransactions * 1.2) } : { min: 4, max: 20 };

describe('key parking and outages under the default relay policy', () => {
  it('keeps every key in commit order through random permanent failures and outages, without delaying keys that did not fail', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(parkingCase(size), async (c) => {
        const started = Date.now();
        const anomalies = await runParkingCase(c, `r${++run}`);
        if (config.verbose) {
          const events = c.transactions.flat();
          console.log(
            `[parking #${run}] ${c.transactions.length} transactions, ${events.length} events (${events.filter((e) => e.poison).length} refused for good) ` +
              `on ${c.keys} keys, ${c.outagesBefore.length} outages, ${c.restartBefore === undefined ? 'no' : 'a'} worker restart, ` +
              `${anomalies.length} anomalies in ${Date.now() - started} ms`,
          );
        }
        if (anomalies.length > 0) {
          throw new Error(`${anomalies.length} anomalies (${[...new Set(anomalies.map((a) => a.split(':')[0]))].join(', ')}):\n  ${anomalies.slice(0, 20).join('\n  ')}`);
        }
      }),
      { numRuns: runs, seed: config.seed, path: config.path, endOnFailure: true, interruptAfterTimeLimit: config.timeLimitMs },
    );
  }, (config.timeLimitMs ?? runs * (90_000 + size.max * 300)) + 60_000);
});

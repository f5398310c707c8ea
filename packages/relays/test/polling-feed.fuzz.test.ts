import fc from 'fast-check';
import type { PollingPage } from '@tidings/relays/polling';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkProblem, requestArbitrary, send } from '../../../test/support/feed-fuzz.ts';
import { countStatuses, startFuzzWorld, type FuzzWorld } from '../../../test/support/feed-fuzz-world.ts';

/** Generated requests per run (`FUZZ_RUNS` for more). */
const numRuns = Number(process.env.FUZZ_RUNS ?? 300);
let world: FuzzWorld;

beforeAll(async () => {
  // Long polls wait at most 1 s here, so a generated ?wait= that is valid costs little time.
  world = await startFuzzWorld('fuzz_polling', { polling: { maxWaitSeconds: 1, maxLimit: 50 } });
});
afterAll(async () => {
  await world?.close();
});

describe('fuzzing the polling feed over HTTP', () => {
  it('answers every generated request with a page of the caller\'s own events, 304, 405 or a 4xx problem saying what is wrong; never a 5xx, never a stall', { timeout: 300_000 }, async () => {
    const { feed } = world;
    await feed.command('reset');
    const statuses: number[] = [];
    const wait = fc.oneof(fc.constantFrom('0', '1', '2', '30', '-1', '1.0', '', 'x'), fc.integer({ min: 0, max: 99_999 }).map(String));
    await fc.assert(
      fc.asyncProperty(requestArbitrary('/feed', world.cursors, world.tenants, wait), async (request) => {
        const answer = await send(feed.origin, request, 0, 15_000);
        statuses.push(answer.status);
        const said = `${request.method} ${request.path} ${JSON.stringify(request.headers)} -> ${answer.status} ${answer.body.slice(0, 300)}`;
        expect(answer.status, said).toBeLessThan(500);
        if (answer.status === 405) {
          expect(request.method, said).not.toBe('GET');
          return;
        }
        if (answer.status === 304) {
          expect(request.headers['if-none-match'], said).toBeDefined();
          return;
        }
        if (answer.status === 200) {
          const page = JSON.parse(answer.body) as PollingPage;
          expect(typeof page.next, said).toBe('string');
          for (const event of page.events) expect(event.tenant, said).toBe(request.tenant);
          return;
        }
        expect(answer.headers['content-type'], said).toBe('application/problem+json');
        checkProblem(request, answer, JSON.parse(answer.body));
      }),
      { numRuns },
    );
    const stats = await feed.command('stats');
    console.info(`polling feed fuzz: ${statuses.length} requests, by status ${JSON.stringify(countStatuses(statuses))}, event-loop delay at most ${stats.loopDelayMaxMs.toFixed(1)} ms, ${stats.queries} queries`);
    expect(statuses).toHaveLength(numRuns);
    expect(stats.errors, 'errors the feed reported (each a 5xx or a cut answer)').toEqual([]);
    expect(stats.loopDelayMaxMs, 'the feed process event-loop delay (ms)').toBeLessThan(2_000);
  });
});

import fc from 'fast-check';
import type { FeedEnvelope } from '@tidings/relays/sse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkProblem, requestArbitrary, send, sseMessages } from '../../../test/support/feed-fuzz.ts';
import { countStatuses, startFuzzWorld, type FuzzWorld } from '../../../test/support/feed-fuzz-world.ts';

/** Generated requests per run (`FUZZ_RUNS` for more). */
const numRuns = Number(process.env.FUZZ_RUNS ?? 150);
/** How long each accepted stream is read before the client hangs up. */
const streamMs = 120;
let world: FuzzWorld;

beforeAll(async () => {
  world = await startFuzzWorld('fuzz_sse');
});
afterAll(async () => {
  await world?.close();
});

describe('fuzzing the SSE feed over HTTP', () => {
  it('answers every generated request with a stream of the caller\'s own events, 405 or a 4xx problem saying what is wrong; never a 5xx, never a stall', { timeout: 300_000 }, async () => {
    const { feed } = world;
    await feed.command('reset');
    const statuses: number[] = [];
    let events = 0;
    await fc.assert(
      fc.asyncProperty(requestArbitrary('/events', world.cursors, world.tenants, fc.constantFrom('0', '1', 'x')), async (request) => {
        const answer = await send(feed.origin, request, streamMs, 15_000);
        statuses.push(answer.status);
        const said = `${request.method} ${request.path} ${JSON.stringify(request.headers)} -> ${answer.status} ${answer.body.slice(0, 300)}`;
        expect(answer.status, said).toBeLessThan(500);
        if (answer.status === 405) {
          expect(request.method, said).not.toBe('GET');
          return;
        }
        if (answer.status !== 200 && answer.headers['content-type'] === 'application/problem+json') {
          // Only a client that asked for JSON and not for a stream gets the problem as JSON.
          expect(request.headers['accept'], said).toMatch(/json/);
          checkProblem(request, answer, JSON.parse(answer.body));
          return;
        }
        expect(answer.headers['content-type'], said).toBe('text/event-stream; charset=utf-8');
        const messages = sseMessages(answer.body);
        if (answer.status === 200) {
          for (const message of messages) {
            if (message.event === 'feed-error') {
              checkProblem(request, { ...answer, status: JSON.parse(message.data).status }, JSON.parse(message.data));
              continue;
            }
            const event = JSON.parse(message.data) as FeedEnvelope;
            expect(event.tenant, said).toBe(request.tenant);
            events++;
          }
          return;
        }
        expect(messages.map((m) => m.event), said).toEqual(['feed-error']);
        checkProblem(request, answer, JSON.parse(messages[0]!.data));
      }),
      { numRuns },
    );
    const stats = await feed.command('stats');
    console.info(
      `SSE feed fuzz: ${statuses.length} requests, by status ${JSON.stringify(countStatuses(statuses))}, ${events} events received, ` +
        `event-loop delay at most ${stats.loopDelayMaxMs.toFixed(1)} ms, ${stats.queries} queries`,
    );
    expect(statuses).toHaveLength(numRuns);
    expect(stats.errors, 'errors the feed reported (each a 5xx or a cut stream)').toEqual([]);
    expect(stats.loopDelayMaxMs, 'the feed process event-loop delay (ms)').toBeLessThan(2_000);
  });
});

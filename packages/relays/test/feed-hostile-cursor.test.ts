import { setTimeout as sleep } from 'node:timers/promises';
import { comparePositions, encodePosition, publish, type Position } from '@tidings/outbox';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openSse, pollFeed } from '@tidings/relays/testing';
import { freshOutbox, inCommitOrder, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { startGuardedFeed, type GuardedFeed } from '../../../test/support/feed-guard.ts';
import { parseCursor } from '../src/feed/cursor.js';
import { FeedHub, type LiveMember } from '../src/feed/feed-hub.js';
import { scope } from '../src/feed/scope.js';

/**
 * A hostile tenant's cursor must not reach the state the feed process shares between connections.
 * The feeds run in a child process, watched from here: a frozen event loop cannot report itself.
 * The bounds are generous (the feed's own figures are a few queries and a few milliseconds); the
 * faults they catch cost orders of magnitude more, or freeze the process for good.
 */
/** bigint's largest value as a commit number: one no log will draw. */
const beyondHead = 'c9223372036854775807-0';
const maxLoopDelayMs = 2_000;
const maxLatencyMs = 5_000;

let outbox: TestOutbox;
const feeds: GuardedFeed[] = [];

beforeAll(async () => {
  outbox = await freshOutbox('feed_hostile');
});
afterEach(async () => {
  for (const feed of feeds.splice(0)) await feed.stop();
});
afterAll(async () => {
  await outbox?.close();
});

async function startFeed(): Promise<GuardedFeed> {
  const feed = await startGuardedFeed(outbox.schema);
  feeds.push(feed);
  return feed;
}

async function publishFor(tenant: string, topic: string): Promise<number> {
  await inTransaction(outbox.pool, (client) => publish(client, { topic, tenant, payload: { tenant } }, { schema: outbox.schema }));
  return Date.now();
}

describe('a cursor beyond the head of the log', () => {
  it('on SSE (Last-Event-ID) is refused with 400, and other tenants keep their delivery latency and the process its event loop', async () => {
    const feed = await startFeed();
    await feed.command('reset');
    const hostile = await openSse(`${feed.origin}/events`, { 'x-tenant': 'mallory', 'last-event-id': beyondHead });
    await sleep(200);
    const victim = await openSse(`${feed.origin}/events?topics=hostile.sse`, { 'x-tenant': 'alice' });
    await sleep(200);
    const committedAt = await publishFor('alice', 'hostile.sse');
    const arrived = await victim.waitFor(1, 10_000).then(
      () => Date.now(),
      () => Infinity,
    );
    const stats = await feed.command('stats');
    hostile.close();
    victim.close();
    console.info(`SSE, after a hostile Last-Event-ID: another tenant's latency ${arrived - committedAt} ms, event-loop delay at most ${stats.loopDelayMaxMs.toFixed(1)} ms, ${stats.feedReads} log reads`);
    expect(arrived - committedAt, 'delivery latency of another tenant (ms)').toBeLessThan(maxLatencyMs);
    expect(stats.loopDelayMaxMs, 'the feed process event-loop delay (ms)').toBeLessThan(maxLoopDelayMs);
    expect(stats.feedReads, 'log reads while one stream waited').toBeLessThan(100);
    expect(hostile.status).toBe(400);
    const problem = JSON.parse(hostile.messages[0]!.data);
    expect(problem).toMatchObject({ status: 400, error: 'invalid-cursor', cursor: beyondHead });
    expect(problem.detail).toMatch(/beyond the head of the log/);
    expect(victim.events.map((e) => e.tenant)).toEqual(['alice']);
  });

  it('on a long poll (?after=&wait=30) is refused with 400, and another tenant\'s long poll costs a few queries, not thousands', async () => {
    const feed = await startFeed();
    // Settled either way: a frozen feed process is killed before this test's assertions are done.
    const hostile = pollFeed(feed.origin, { after: beyondHead, wait: 30 }, { 'x-tenant': 'mallory' }).catch((error: unknown) => error);
    await sleep(300);
    const { body: now } = await pollFeed(feed.origin, { after: 'now', topics: 'hostile.polling' }, { 'x-tenant': 'alice' });
    await feed.command('reset');
    const quiet = await pollFeed(feed.origin, { after: now.next, topics: 'hostile.polling', wait: 3 }, { 'x-tenant': 'alice' });
    const duringQuietPoll = await feed.command('stats');

    const waiting = pollFeed(feed.origin, { after: quiet.body.next, topics: 'hostile.polling', wait: 20 }, { 'x-tenant': 'alice' });
    await sleep(300);
    const committedAt = await publishFor('alice', 'hostile.polling');
    const answer = await waiting;
    const latency = Date.now() - committedAt;
    const stats = await feed.command('stats');

    console.info(
      `polling, after a hostile long poll: another tenant's quiet 3 s long poll made ${duringQuietPoll.queries} queries; ` +
        `latency ${latency} ms, event-loop delay at most ${stats.loopDelayMaxMs.toFixed(1)} ms`,
    );
    expect(duringQuietPoll.queries, 'queries during a quiet 3 s long poll of another tenant').toBeLessThan(100);
    expect(latency, 'delivery latency of another tenant (ms)').toBeLessThan(maxLatencyMs);
    expect(stats.loopDelayMaxMs, 'the feed process event-loop delay (ms)').toBeLessThan(maxLoopDelayMs);
    expect(answer.body.events.map((e) => e.tenant)).toEqual(['alice']);
    const refused = (await hostile) as Awaited<ReturnType<typeof pollFeed>>;
    expect(refused.status).toBe(400);
    expect(refused.headers.get('content-type')).toBe('application/problem+json');
    expect(refused.body).toMatchObject({ status: 400, error: 'invalid-cursor', cursor: beyondHead });
    expect((refused.body as { detail?: string }).detail).toMatch(/beyond the head of the log/);
  });

  it('or outside the range of xid8 and bigint is refused with 400 on both feeds, and is no error of the server', async () => {
    const feed = await startFeed();
    await feed.command('reset');
    const cursors = ['c9223372036854775808-0', 'c99999999999999999999-0', 'c1-9223372036854775808', 'c1-9999999999999999999'];
    for (const cursor of cursors) {
      const answer = await pollFeed(feed.origin, { after: cursor }, { 'x-tenant': 'mallory' });
      expect(answer.status, cursor).toBe(400);
      expect(answer.body, cursor).toMatchObject({ error: 'invalid-cursor', cursor });
      expect((answer.body as { detail?: string }).detail, cursor).toMatch(/out of range/);
      const stream = await openSse(`${feed.origin}/events`, { 'x-tenant': 'mallory', 'last-event-id': cursor });
      await stream.ended;
      expect(stream.status, cursor).toBe(400);
      expect(JSON.parse(stream.messages[0]!.data), cursor).toMatchObject({ error: 'invalid-cursor', cursor });
    }
    expect((await feed.command('stats')).errors).toEqual([]);
  });

  it('is refused on SSE as application/problem+json to a client that asks for JSON, not an event stream', async () => {
    const feed = await startFeed();
    const response = await fetch(`${feed.origin}/events`, {
      headers: { 'x-tenant': 'mallory', 'last-event-id': beyondHead, accept: 'application/problem+json, application/json' },
    });
    expect(response.status).toBe(400);
    expect(response.headers.get('content-type')).toBe('application/problem+json');
    expect(await response.json()).toMatchObject({ status: 400, error: 'invalid-cursor', cursor: beyondHead, detail: expect.stringMatching(/beyond the head of the log/) });
  });
});

describe('a cursor ahead of what the feeds have read', () => {
  it('is accepted when its commit number was drawn, yet cannot put the shared tail beyond what every reader reaches', async () => {
    const errors: unknown[] = [];
    const hub = new FeedHub(outbox.db, { schema: outbox.schema, pollIntervalMs: 60_000, batchSize: 100, onError: (e) => errors.push(e) });
    const member = (cursor: Position): LiveMember => ({ scope: scope('mallory', undefined), cursor, deliver() {}, resume() {}, fail() {} });
    const members: LiveMember[] = [];
    try {
      const { next: reached } = await hub.read(scope('alice', undefined), 'now', 10);
      // Committed after the hub's last read: a real cursor, further than the hub has reached.
      const [ahead] = await inCommitOrder(
        outbox.db,
        outbox.schema,
        await inTransaction(outbox.pool, (client) => publish(client, { topic: 'hostile.above', tenant: 'mallory', payload: 1 }, { schema: outbox.schema })),
      );
      await expect(hub.checkStart(parseCursor(encodePosition(ahead!.position)))).resolves.toBeUndefined();
      expect(comparePositions(ahead!.position, reached)).toBeGreaterThan(0);

      // The hostile member joins the idle hub first: the tail starts no further than what was read.
      members.push(member(ahead!.position));
      expect(hub.join(members[0]!)).toBe(true);
      expect(comparePositions(hub.head!, reached)).toBeLessThanOrEqual(0);
      // So a reader at that point still joins the shared tail instead of being refused.
      members.push(member(reached));
      expect(hub.join(members[1]!)).toBe(true);
    } finally {
      for (const m of members) hub.leave(m);
      await hub.close(new Error('test over'));
    }
    expect(errors).toEqual([]);
  });
});

import { encodePosition, partitionOf } from '@tidings/outbox';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSse, pollFeed, type SseReader } from '@tidings/relays/testing';
import { startFeedServer, type FeedServer } from '../../../test/support/feed-server.ts';
import { waitUntil } from '../../../test/support/check.ts';

let feed: FeedServer;
const readers: SseReader[] = [];

beforeAll(async () => {
  feed = await startFeedServer('hub', { sse: { pollIntervalMs: 500 }, polling: { pollIntervalMs: 500 } });
});
afterAll(async () => {
  for (const reader of readers) reader.close();
  await feed.close();
});

describe('the wake-up hub shared by the feeds of a process', () => {
  it('opens one LISTEN for every SSE stream and long poll, and reads nothing per connection while they wait', async () => {
    const streams = await Promise.all(Array.from({ length: 30 }, (_, i) => openSse(`${feed.origin}/events`, { 'x-tenant': `t${i % 3}` })));
    readers.push(...streams);
    const polls = Array.from({ length: 10 }, () => pollFeed(feed.origin, { after: 'now', wait: 5 }));
    await waitUntil('every long poll waits', async () => feed.polling.waiting === 10);
    await sleep(200);
    const idleFrom = { ...feed.counts };
    await sleep(2_000);
    const idleReads = feed.counts.feedReads - idleFrom.feedReads;
    // The safety poll: about one shared read per 500 ms, whatever the number of connections.
    expect(idleReads).toBeLessThanOrEqual(6);
    expect(feed.counts.listens).toBe(1);

    const readsBefore = feed.counts.feedReads;
    const published = await feed.publish([0, 1, 2].map((i) => ({ topic: 'hub.wake', tenant: `t${i}`, payload: i })));
    await Promise.all(streams.map((reader) => reader.waitFor(1)));
    const answers = await Promise.all(polls);
    expect(answers.map((a) => a.body.events.length)).toEqual(Array(10).fill(3));
    expect(streams.map((reader) => reader.events.map((e) => e.eventId))).toEqual(
      streams.map((_, i) => [published[i % 3]!.eventId]),
    );
    // 40 connections woke and got their events from a few shared reads, not one read each.
    expect(feed.counts.feedReads - readsBefore).toBeLessThanOrEqual(4);
  });

  it('coalesces the reads of a burst of connections that resume from the same cursor', async () => {
    const [first] = await feed.publish([{ topic: 'hub.burst', payload: 1 }]);
    await feed.publish([{ topic: 'hub.burst', payload: 2 }]);
    const cursor = encodePosition(first!.position);
    const before = feed.counts.feedReads;
    const burst = await Promise.all(Array.from({ length: 100 }, () => openSse(`${feed.origin}/events?topics=hub.burst`, { 'last-event-id': cursor })));
    readers.push(...burst);
    await Promise.all(burst.map((reader) => reader.waitFor(1)));
    expect(burst.every((reader) => reader.events.length === 1 && reader.events[0]!.payload === 2)).toBe(true);
    const reads = feed.counts.feedReads - before;
    console.info(`a burst of 100 connections resuming from one cursor made ${reads} log reads`);
    expect(reads).toBeLessThan(30);
  });

  it('delivers at once while an older transaction stays open, which holds nothing back', async () => {
    const quiet = await startFeedServer('hub_open', { sse: { pollIntervalMs: 60_000 }, polling: { pollIntervalMs: 60_000 } });
    const reader = await openSse(`${quiet.origin}/events?topics=hub.open`);
    readers.push(reader);
    const older = await quiet.outbox.pool.connect();
    try {
      await older.query('BEGIN');
      await older.query('SELECT pg_current_xact_id()');
      const [event] = await quiet.publish([{ topic: 'hub.open', key: 'k', payload: 'open' }]);
      await reader.waitFor(1, 5_000);
      expect(reader.events[0]!.eventId).toBe(event!.eventId);
    } finally {
      await older.query('ROLLBACK');
      older.release();
      reader.close();
      await quiet.close();
    }
  });

  it('delivers an event held back by a partition that is committing once it is released, without a NOTIFY', async () => {
    // A safety poll too slow to matter: the hub must notice by itself that the event is held back.
    const quiet = await startFeedServer('hub_held', { sse: { pollIntervalMs: 60_000 }, polling: { pollIntervalMs: 60_000 } });
    const reader = await openSse(`${quiet.origin}/events?topics=hub.held`);
    readers.push(reader);
    const { rows } = await quiet.outbox.db.query<{ partitions: number }>(`SELECT partitions FROM "${quiet.outbox.schema}".settings`);
    const partitions = rows[0]!.partitions;
    const other = (partitionOf('k', '', partitions) + 1) % partitions;
    // What a transaction holds while it commits into partition `other`: that partition's commit lock.
    const committing = await quiet.outbox.pool.connect();
    try {
      await committing.query('BEGIN');
      await committing.query(`SELECT pg_advisory_xact_lock(hashtext('tidings.commits:' || $1), $2)`, [quiet.outbox.schema, other]);
      const [held] = await quiet.publish([{ topic: 'hub.held', key: 'k', payload: 'held' }]);
      await sleep(300);
      // Its number is beyond what the committing partition may still take: not final yet.
      expect(reader.events).toEqual([]);
      await committing.query('ROLLBACK');
      const started = Date.now();
      await reader.waitFor(1, 5_000);
      expect(reader.events[0]!.eventId).toBe(held!.eventId);
      expect(Date.now() - started).toBeLessThan(2_000);
    } finally {
      committing.release();
      reader.close();
      await quiet.close();
    }
  });
});

import type { OutboxStatus } from '@tidings/outbox';
import { describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { lagChart, LiveStatus, type Reading } from '../src/dashboard/live-status.ts';

const empty: OutboxStatus = { feeds: { events: 0, seconds: 0, stalled: false, holders: [] }, relays: [] };

describe('the live status of open dashboard pages', () => {
  it('reads status once per interval for all open pages together, and not at all once they are closed', async () => {
    let reads = 0;
    const live = new LiveStatus(async () => {
      reads++;
      return empty;
    }, 10);
    const first: Reading[] = [];
    const second: Reading[] = [];
    const stopFirst = live.subscribe((reading) => first.push(reading));
    const stopSecond = live.subscribe((reading) => second.push(reading));
    await waitUntil('both pages got five readings', () => first.length >= 5 && second.length >= 5);
    stopFirst();
    stopSecond();
    const readsWhenClosed = reads;
    expect(first.slice(0, 5)).toEqual(second.slice(0, 5)); // the very same readings
    expect(readsWhenClosed).toBeLessThanOrEqual(Math.max(first.length, second.length) + 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(reads).toBe(readsWhenClosed);
    expect(live.history().length).toBe(reads); // one lag sample per reading, kept for the chart
  });

  it('tells the pages when status could not be read, and keeps reading', async () => {
    let fail = true;
    const live = new LiveStatus(async () => {
      if (fail) throw new Error('connection refused to 10.0.0.5');
      return empty;
    }, 10);
    const readings: Reading[] = [];
    const stop = live.subscribe((reading) => {
      readings.push(reading);
      fail = false;
    });
    await waitUntil('a reading came after the failure', () => readings.length >= 2);
    stop();
    expect('failed' in readings[0]!).toBe(true);
    expect(JSON.stringify(readings[0])).not.toContain('10.0.0.5');
    expect('report' in readings[1]!).toBe(true);
  });

  it('draws the last hour of lag, scaled to its largest value, and forgets older readings', () => {
    const now = 10_000_000;
    expect(lagChart([{ at: now - 3_600_000, lag: 10 }, { at: now - 1_800_000, lag: 5 }, { at: now, lag: 0 }], now)).toEqual({
      points: '0.0,10.0 300.0,60.0 600.0,110.0',
      max: 10,
    });
    expect(lagChart([], now)).toEqual({ points: '', max: 1 });
    const live = new LiveStatus(async () => empty, 1000);
    live.record(empty, new Date(Date.now() - 3_700_000));
    live.record(empty);
    expect(live.history()).toHaveLength(1);
  });
});

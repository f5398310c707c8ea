import type { OutboxStatus } from '@tidings/outbox';
import { describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { chartData } from '../src/dashboard/charts.ts';
import { LiveStatus, type Reading } from '../src/dashboard/live-status.ts';
import { Sampler, type Measurement } from '../src/dashboard/sampler.ts';

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

  it('draws the last hour scaled to its largest value, and says the latest and highest values in words', () => {
    const now = 10_000_000;
    const samples = [
      { at: now - 3_600_000, lag: 10, published: null, delivered: null },
      { at: now - 1_800_000, lag: 5, published: 4, delivered: 2 },
      { at: now, lag: 0, published: 2, delivered: 3 },
    ];
    expect(chartData('lag', samples, now)).toEqual({
      lines: ['0.0,10.0 300.0,60.0 600.0,110.0'],
      max: '10 events',
      summary: 'Latest: 0 events behind. Highest in the hour: 10 events behind.',
    });
    expect(chartData('throughput', samples, now)).toEqual({
      lines: ['300.0,10.0 600.0,60.0', '300.0,60.0 600.0,35.0'],
      max: '4.0/s',
      summary: 'Latest: 2.0/s published, 3.0/s delivered. Highest in the hour: 4.0/s published, 3.0/s delivered.',
    });
    expect(chartData('throughput', [], now)).toEqual({ lines: ['', ''], max: '1.0/s', summary: 'Nothing measured yet.' });
  });
});

describe('the charts\' sampler', () => {
  it('turns counts into rates per second over the time between readings, and keeps one hour in a ring', () => {
    const sampler = new Sampler(async () => ({ lag: 0, published: null, delivered: null }), 600_000); // a ring of 7
    const start = 50_000_000;
    sampler.record({ lag: 3, published: null, delivered: null }, start);
    sampler.record({ lag: 1, published: 20, delivered: 10 }, start + 10_000);
    expect(sampler.samples(start + 10_000)).toEqual([
      { at: start, lag: 3, published: null, delivered: null },
      { at: start + 10_000, lag: 1, published: 2, delivered: 1 },
    ]);
    for (let i = 2; i <= 10; i++) sampler.record({ lag: i, published: 0, delivered: 0 }, start + i * 600_000);
    const kept = sampler.samples(start + 10 * 600_000);
    expect(kept.map((s) => s.lag)).toEqual([4, 5, 6, 7, 8, 9, 10]); // the ring's 7, all within the hour
    expect(sampler.samples(start + 10 * 600_000 + 3_000_000).map((s) => s.lag)).toEqual([9, 10]); // older than an hour: left out
  });

  it('samples from start() until stop(), whether or not anyone looks, and leaves a gap for a failed reading, which it reports', async () => {
    let calls = 0;
    const reported: string[] = [];
    const sampler = new Sampler(
      async (): Promise<Measurement> => {
        calls++;
        if (calls === 2) throw new Error('connection refused');
        return { lag: calls, published: calls === 1 ? null : 5, delivered: calls === 1 ? null : 5 };
      },
      100,
      (error) => {
        reported.push(error.message);
        throw new Error('an observer that throws stops nothing');
      },
    );
    sampler.start();
    await waitUntil('four readings were attempted', () => calls >= 4);
    sampler.stop();
    const stoppedAt = calls;
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(calls).toBeLessThanOrEqual(stoppedAt + 1); // at most the reading already under way
    expect(sampler.samples().map((s) => s.lag).slice(0, 3)).toEqual([1, 3, 4]);
    expect(reported).toEqual(['connection refused']);
  });
});

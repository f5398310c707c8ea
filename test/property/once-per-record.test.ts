import { describe, expect, it } from 'vitest';
import type { Effect } from './history.ts';
import { oncePerRecord } from './once-per-record.ts';

const effect = (eventId: string, record: string): Effect => ({ eventId, key: 'k', record });

describe('counting effects once per record', () => {
  it('counts an event written as two records and applied from each as applied once', () => {
    expect(oncePerRecord([effect('a', '0@1'), effect('b', '0@2'), effect('a', '0@3')])).toEqual([effect('a', '0@1'), effect('b', '0@2')]);
  });

  it('keeps a record applied twice as a duplicate effect', () => {
    expect(oncePerRecord([effect('a', '0@1'), effect('a', '0@3'), effect('a', '0@1')])).toEqual([effect('a', '0@1'), effect('a', '0@1')]);
  });

  it('leaves an event never applied without effect', () => {
    expect(oncePerRecord([effect('b', '1@0')]).map((e) => e.eventId)).toEqual(['b']);
  });
});

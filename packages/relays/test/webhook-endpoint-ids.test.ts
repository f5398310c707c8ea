import { describe, expect, it } from 'vitest';
import { newEndpointId } from '../src/webhook/endpoint.ts';

describe('webhook endpoint ids', () => {
  it('sort in creation order and never repeat, even when many are made within one millisecond', () => {
    const ids = Array.from({ length: 5_000 }, () => newEndpointId());
    expect(new Set(ids).size).toBe(ids.length);
    const sorted = [...ids].sort();
    const firstOutOfOrder = ids.findIndex((id, i) => id !== sorted[i]);
    expect(firstOutOfOrder).toBe(-1);
    expect(ids.every((id) => /^ep_[0-9A-HJKMNP-TV-Z]{26}$/.test(id))).toBe(true);
  });
});

import * as real from '../../src/relay/options.ts';

export * from '../../src/relay/options.ts';

/**
 * Mutant `no-parking`: a dead letter parks nothing (onFailure `park` acts as `skip-unordered`), so
 * its key's later events overtake it.
 */
export const resolveRelayOptions: typeof real.resolveRelayOptions = (options) => {
  const resolved = real.resolveRelayOptions(options);
  return resolved.onFailure === 'park' ? { ...resolved, onFailure: 'skip-unordered' } : resolved;
};

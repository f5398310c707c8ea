import * as real from '../../src/relay/options.ts';

export * from '../../src/relay/options.ts';

/** Mutant `notify-only`: the relay wakes only on NOTIFY and never polls. */
export const resolveRelayOptions: typeof real.resolveRelayOptions = (options) => ({
  ...real.resolveRelayOptions(options),
  pollIntervalMs: 2 ** 31 - 1,
});

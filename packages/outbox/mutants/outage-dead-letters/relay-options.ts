import * as real from '../../src/relay/options.ts';
import { retry, type SendOutcome, type Transport } from '../../src/transport.ts';

export * from '../../src/relay/options.ts';

/**
 * Mutant `outage-dead-letters`: the relay counts an unavailable destination against the event it
 * was sending (the transport's `unavailable` reaches it as `retry`), so a long outage makes dead
 * letters and lets later events overtake them.
 */
export const resolveRelayOptions: typeof real.resolveRelayOptions = (options) => {
  const resolved = real.resolveRelayOptions(options);
  return { ...resolved, transport: countingOutages(resolved.transport) };
};

function countingOutages(transport: Transport): Transport {
  const counted = (outcome: SendOutcome): SendOutcome => (outcome.status === 'unavailable' ? retry(outcome.error, outcome.retryAfterMs) : outcome);
  return {
    name: transport.name,
    capabilities: transport.capabilities,
    async send(batch, signal) {
      try {
        return (await transport.send(batch, signal)).map(counted);
      } catch (error) {
        if (signal.aborted) throw error;
        return batch.map(() => retry(error));
      }
    },
    close: () => transport.close(),
  };
}

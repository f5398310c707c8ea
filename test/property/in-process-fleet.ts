/**
 * Relay workers inside the test process, for destinations that only exist in it (the memory
 * broker). A crash is an abrupt stop: the batch in flight is aborted at once, nothing is flushed.
 * Pausing needs a process of its own, so it is not offered.
 */
import { createRelay, pgDatabase, type Relay, type Transport } from '@tidings/outbox';
import { services } from '../support/env.ts';
import type { RelayFleet } from '../support/property-fleet.ts';

export interface InProcessFleetOptions {
  readonly schema: string;
  readonly relay: string;
  readonly leaseMs: number;
  readonly transport: () => Transport;
}

export function inProcessFleet(options: InProcessFleetOptions): RelayFleet {
  const database = pgDatabase(services.postgres, { max: 6 });
  const relays: Relay[] = [];
  const errors: string[] = [];
  let started = 0;

  return {
    leaseMs: options.leaseMs,
    get live() {
      return relays.length;
    },
    paused: 0,
    async join() {
      const relay = createRelay({
        name: options.relay,
        database,
        schema: options.schema,
        transport: options.transport(),
        workerId: `in-process-${++started}`,
        batchSize: 20,
        leaseTtlMs: options.leaseMs,
        heartbeatIntervalMs: Math.floor(options.leaseMs / 5),
        pollIntervalMs: 100,
        // The default policy (10 retries), its delays scaled down: outages must make no dead letter.
        retry: { minDelayMs: 20, maxDelayMs: 300 },
        onEvent: (event) => {
          if (event.type === 'dead-letter') errors.push(`relay dead-lettered ${event.eventId}: ${event.error.message}`);
        },
      });
      await relay.start();
      relays.push(relay);
    },
    async crash(pick) {
      if (relays.length === 0) return;
      const [relay] = relays.splice(pick % relays.length, 1);
      await relay!.stop({ graceMs: 0 });
    },
    async pause() {
      throw new Error('an in-process relay cannot be paused; do not offer pause-relay for this destination');
    },
    async resume() {},
    problems: () => [...errors],
    async close() {
      await Promise.all(relays.splice(0).map((relay) => relay.stop({ graceMs: 0 })));
      await database.close();
    },
  };
}

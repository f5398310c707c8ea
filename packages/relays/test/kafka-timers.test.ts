import { kafkaTransport } from '@tidings/relays/kafka';
import { testEvents } from '@tidings/relays/testing';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { services } from '../../../test/support/env.ts';

// A file of its own: Node prints a given warning once per process, so an earlier test would hide it.
describe('the Kafka transport and its client timers', () => {
  it('sends without kafkajs scheduling a negative timer (TimeoutNegativeWarning) ', async () => {
    const warnings: string[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(`${warning.name}: ${warning.message}`);
    };
    process.on('warning', onWarning);
    const transport = kafkaTransport({ brokers: services.kafka, client: { logLevel: 'nothing' } });
    try {
      const topic = `timers-${Date.now()}`;
      for (let round = 0; round < 3; round++) {
        const outcomes = await transport.send(testEvents(20, { topic, key: (i) => `k-${i % 4}` }), AbortSignal.timeout(30_000));
        expect(outcomes.every((o) => o.status === 'delivered')).toBe(true);
      }
      await sleep(100); // warnings are emitted on a later tick
      expect(warnings.filter((w) => w.startsWith('TimeoutNegativeWarning'))).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      await transport.close();
    }
  });
});

import { ConfigError } from '@tidings/outbox';
import { consumeKafka } from '@tidings/relays/kafka';
import { pollingConsumer } from '@tidings/relays/polling';
import { consumeRabbitmq } from '@tidings/relays/rabbitmq';
import { sseConsumer } from '@tidings/relays/sse';
import { generateWebhookSecret, webhookReceiver } from '@tidings/relays/webhook';
import { describe, expect, it } from 'vitest';

/**
 * Every consumer helper checks the options of the one consumer contract the same way, before it
 * connects to anything: the hosts below do not exist, so a helper that connected first would fail
 * with a connection error instead.
 */
const database = async <R>(work: (trx: unknown) => Promise<R>): Promise<R> => work({});
const base = { consumer: 'contract', database, handler: () => {} };
const helpers = {
  consumeRabbitmq: (extra: object) => consumeRabbitmq({ url: 'amqp://nowhere.invalid', queue: 'q', ...base, ...extra }),
  consumeKafka: (extra: object) => consumeKafka({ brokers: 'nowhere.invalid:9092', topics: ['t'], ...base, ...extra }),
  webhookReceiver: (extra: object) => webhookReceiver({ secrets: generateWebhookSecret(), ...base, ...extra }),
  sseConsumer: (extra: object) => sseConsumer({ url: 'http://nowhere.invalid/events', ...base, ...extra }),
  pollingConsumer: (extra: object) => pollingConsumer({ url: 'http://nowhere.invalid/feed', ...base, ...extra }),
} as const;

async function refusal(make: (extra: object) => unknown, extra: object): Promise<unknown> {
  try {
    const made = make(extra);
    if (made instanceof Promise) await made;
  } catch (error) {
    return error;
  }
  return undefined;
}

describe.each(Object.keys(helpers) as (keyof typeof helpers)[])('%s', (name) => {
  const make = helpers[name];
  const cases: [string, object][] = [
    ['consumer', { consumer: '' }],
    ['database', { database: { not: 'a transaction source' } }],
    ['handler', { handler: 'apply' }],
    ['schema', { schema: '' }],
    ['onEvent', { onEvent: 'log' }],
  ];
  if (name !== 'webhookReceiver') {
    cases.push(['retry.attempts', { retry: { attempts: 0 } }], ['retry.minDelayMs', { retry: { minDelayMs: -1 } }], ['retry.maxDelayMs', { retry: { minDelayMs: 500, maxDelayMs: 100 } }]);
  }
  it.each(cases)('refuses a bad %s with a ConfigError naming it, before connecting', async (option, extra) => {
    const error = await refusal(make, extra);
    expect(error).toBeInstanceOf(ConfigError);
    expect(error).toMatchObject({ option });
    expect((error as Error).message).toContain(`"${option}"`);
  });
});

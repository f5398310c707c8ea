import type { Transport } from '@tidings/outbox';
import type { Logger } from 'pino';
import type { TransportConfig } from './config.ts';

/**
 * Builds the transport a config names. Each transport module is loaded only when a relay uses it,
 * and checks its own options (a bad one is a ConfigError naming the option).
 */
export async function createTransport(config: TransportConfig, relay: string, log?: Logger): Promise<Transport> {
  const { type, ...options } = config;
  switch (type) {
    case 'rabbitmq': {
      const { rabbitmqTransport } = await import('../rabbitmq/index.ts');
      return rabbitmqTransport({ connectionName: `tidings relay ${relay}`, ...options } as Parameters<typeof rabbitmqTransport>[0]);
    }
    case 'kafka': {
      const { kafkaTransport } = await import('../kafka/index.ts');
      const kafkaOptions = options as Parameters<typeof kafkaTransport>[0];
      // kafkajs's own log lines join the command's JSON log, rather than plain text on stderr.
      const client = kafkaOptions.client;
      if (log && (client === undefined || (typeof client === 'object' && client !== null && client.logger === undefined))) {
        const logger: NonNullable<NonNullable<typeof client>['logger']> = ({ level, namespace, message, extra }) =>
          log[level]({ ...extra, relay, kafkajs: namespace }, message);
        return kafkaTransport({ ...kafkaOptions, client: { ...client, logger } });
      }
      return kafkaTransport(kafkaOptions);
    }
  }
}

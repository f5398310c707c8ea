import type { Transport } from '@tidings/outbox';
import type { TransportConfig } from './config.ts';

/**
 * Builds the transport a config names. Each transport module is loaded only when a relay uses it,
 * and checks its own options (a bad one is a ConfigError naming the option).
 */
export async function createTransport(config: TransportConfig, relay: string): Promise<Transport> {
  const { type, ...options } = config;
  switch (type) {
    case 'rabbitmq': {
      const { rabbitmqTransport } = await import('../rabbitmq/index.ts');
      return rabbitmqTransport({ connectionName: `tidings relay ${relay}`, ...options } as Parameters<typeof rabbitmqTransport>[0]);
    }
    case 'kafka': {
      const { kafkaTransport } = await import('../kafka/index.ts');
      return kafkaTransport(options as Parameters<typeof kafkaTransport>[0]);
    }
  }
}

/**
 * Fault proxies in front of the real services, and the client addresses that go through them.
 * The services stay up; only the path to them misbehaves (cut, refused).
 */
import { createFaultProxy, type FaultProxy } from '@tidings/relays/testing';
import { services } from '../support/env.ts';

export interface ProxiedService {
  readonly proxy: FaultProxy;
  /** The service's URL with host and port replaced by the proxy's. */
  readonly url: string;
}

async function proxied(serviceUrl: string, defaultPort: number): Promise<ProxiedService> {
  const target = new URL(serviceUrl);
  const proxy = await createFaultProxy({ target: { host: target.hostname, port: Number(target.port || defaultPort) } });
  const url = new URL(serviceUrl);
  url.hostname = proxy.host;
  url.port = String(proxy.port);
  return { proxy, url: url.toString() };
}

export function postgresProxy(): Promise<ProxiedService> {
  return proxied(services.postgres, 5432);
}

export function rabbitmqProxy(): Promise<ProxiedService> {
  return proxied(services.rabbitmq, 5672);
}

/** In front of the first Kafka broker (the tests run a single one). */
export function kafkaProxy(): Promise<FaultProxy> {
  const [host, port] = services.kafka.split(',')[0]!.split(':');
  return createFaultProxy({ target: { host: host!, port: Number(port) } });
}

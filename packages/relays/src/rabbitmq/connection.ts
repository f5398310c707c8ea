import { ConfigError } from '@tidings/outbox';
import type { ChannelModel, Options } from 'amqplib';
import { maskPassword } from '../redact.ts';
import { requirePackage } from '../shared/optional-package.ts';

/** Where RabbitMQ is: an `amqp://` / `amqps://` URL, or amqplib's connection object. */
export type RabbitmqUrl = string | Options.Connect;

/** How tidings opens its AMQP connections (the transport's and the consumer helper's). */
export interface ConnectionSettings {
  readonly url: RabbitmqUrl;
  /** Passed to amqplib's `connect` (TLS certificates, `noDelay`, …). */
  readonly socketOptions?: Record<string, unknown>;
  /** Opening a connection (TCP and the AMQP handshake) gives up after this long. Default 10 000 ms. */
  readonly connectTimeoutMs?: number;
  /**
   * Heartbeat interval asked of the broker, in seconds, unless the URL says `heartbeat=`. A dead
   * peer is noticed after about twice this. Default 10.
   */
  readonly heartbeatSeconds?: number;
  /** Shown as the connection's name in the RabbitMQ management UI. */
  readonly connectionName?: string;
}

/**
 * amqplib, loaded at first use (it is an optional peer dependency); a MissingPackageError when it
 * is not installed. The transport and the consumer helper call it when they are made, so a missing
 * client is reported at once rather than as an unreachable broker.
 */
export function amqplib(): typeof import('amqplib') {
  return requirePackage('amqplib', 'RabbitMQ (rabbitmqTransport, consumeRabbitmq)');
}

/**
 * Opens an AMQP connection with a deadline on the whole handshake and a heartbeat, so that a
 * broker that accepts TCP but never answers, or a peer that silently vanished, is noticed.
 */
export async function openConnection(settings: ConnectionSettings, signal?: AbortSignal): Promise<ChannelModel> {
  signal?.throwIfAborted();
  const timeout = settings.connectTimeoutMs ?? 10_000;
  const clientProperties = settings.connectionName ? { connection_name: settings.connectionName } : undefined;
  const connecting = amqplib()
    .connect(withHeartbeat(settings.url, settings.heartbeatSeconds ?? 10), {
      ...settings.socketOptions,
      timeout,
      ...(clientProperties ? { clientProperties } : {}),
    })
    .then((connection) => {
      // An 'error' without a listener would crash the process; owners add their own listeners.
      connection.on('error', () => {});
      return connection;
    });
  if (!signal) return connecting;
  return new Promise<ChannelModel>((resolve, reject) => {
    const onAbort = (): void => {
      reject(signal.reason);
      // Nobody will use the connection if it opens after all: close it then.
      connecting.then((connection) => connection.close().catch(() => {}), () => {});
    };
    signal.addEventListener('abort', onAbort, { once: true });
    connecting.then(
      (connection) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) return;
        resolve(connection);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** The URL without its password, for messages. */
export function describeUrl(url: RabbitmqUrl): string {
  if (typeof url !== 'string') return `${url.protocol ?? 'amqp'}://${url.hostname ?? 'localhost'}:${url.port ?? 5672}${url.vhost ? `/${url.vhost}` : ''}`;
  return maskPassword(url);
}

export function validateUrl(url: unknown): RabbitmqUrl {
  if (typeof url === 'string') {
    if (!/^amqps?:\/\//i.test(url)) throw new ConfigError('url', `expected an amqp:// or amqps:// URL, got ${JSON.stringify(describeUrl(url))}`);
    return url;
  }
  if (typeof url === 'object' && url !== null) return url as Options.Connect;
  throw new ConfigError('url', 'pass the broker URL, e.g. "amqp://guest:guest@localhost:5672", or amqplib connection options');
}

function withHeartbeat(url: RabbitmqUrl, seconds: number): RabbitmqUrl {
  if (typeof url !== 'string') return url.heartbeat === undefined ? { ...url, heartbeat: seconds } : url;
  if (/[?&]heartbeat=/.test(url)) return url;
  return `${url}${url.includes('?') ? '&' : '?'}heartbeat=${seconds}`;
}

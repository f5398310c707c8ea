import type { Channel, ChannelModel, ConfirmChannel, Message } from 'amqplib';
import { openConnection, type ConnectionSettings } from './connection.ts';
import { RabbitmqConnectionError } from './errors.ts';
import type { EncodedMessage } from './message-codec.ts';

/** An exchange the transport declares (durable, idempotently) each time it connects. */
export interface ExchangeDeclaration {
  readonly name: string;
  /** Default `topic`. */
  readonly type?: 'topic' | 'direct' | 'fanout' | 'headers' | (string & {});
  /** Default true. */
  readonly durable?: boolean;
  /** Exchange arguments, e.g. `{ 'alternate-exchange': 'tidings.unrouted' }`. */
  readonly arguments?: Record<string, unknown>;
}

/** How RabbitMQ answered one publish. */
export type Confirmation =
  /** Confirmed and routed to at least one queue. */
  | { readonly kind: 'ack' }
  /** Confirmed, but returned first: no queue received it. */
  | { readonly kind: 'returned'; readonly reply: string }
  | { readonly kind: 'nack' }
  /** The channel or connection ended before a confirm came; the broker may or may not have it. */
  | { readonly kind: 'lost'; readonly error: Error };

interface InFlight {
  readonly messageId: string | undefined;
  readonly exchange: string;
  readonly routingKey: string;
  readonly content: Buffer;
  /** Set by `basic.return`; the confirm that follows it then means "not routed". */
  returned: string | undefined;
  readonly settle: (confirmation: Confirmation) => void;
}

/** Told when the broker blocks or unblocks publishing on the link's connection. */
export type BlockedListener = (reason: string | undefined) => void;

/** Counters a link adds to; owned by the transport so they survive reconnects. */
export interface LinkCounters {
  published: number;
  acked: number;
  returned: number;
  nacked: number;
  lost: number;
  drainWaits: number;
}

/**
 * One AMQP connection with one confirm channel, and what is published and unconfirmed on it. The
 * transport publishes on it; the consumer helper also consumes and acks on its channel.
 *
 * Returns are matched to confirms through the protocol's ordering: RabbitMQ sends `basic.return`
 * for an unroutable mandatory message before the `basic.ack` that confirms it, on the same
 * channel, and amqplib emits them in frame order. A return marks the oldest unconfirmed publish
 * with the same message id, exchange, routing key and body; its confirm then settles as
 * `returned`. (Returns carry no delivery tag, but they come in publish order, and each precedes
 * its own confirm.) Only publishes identical in all of these can be swapped, and then it does not
 * matter which copy is reported returned: the same message reached a queue as many times as
 * reported.
 */
export class ConfirmLink {
  readonly #connection: ChannelModel;
  readonly #channel: ConfirmChannel;
  readonly #counters: LinkCounters;
  readonly #onBlocked: BlockedListener;
  /** Unconfirmed publishes, oldest first. */
  readonly #inFlight = new Set<InFlight>();
  readonly #wakers = new Set<() => void>();
  /** Exchanges known to exist on this connection. */
  readonly #knownExchanges = new Set<string>(['']);
  #probe: Promise<Channel> | undefined;
  #broken: Error | undefined;
  #endedWith!: (reason: Error) => void;
  readonly #ended = new Promise<Error>((resolve) => {
    this.#endedWith = resolve;
  });
  #blocked: string | undefined;
  #draining = false;

  private constructor(connection: ChannelModel, channel: ConfirmChannel, counters: LinkCounters, onBlocked: BlockedListener) {
    this.#connection = connection;
    this.#channel = channel;
    this.#counters = counters;
    this.#onBlocked = onBlocked;
  }

  /** Connects, opens a confirm channel and declares `exchanges`; rejects if any step fails. */
  static async open(
    settings: ConnectionSettings,
    exchanges: readonly ExchangeDeclaration[],
    counters: LinkCounters,
    signal: AbortSignal,
    onBlocked: BlockedListener = () => {},
  ): Promise<ConfirmLink> {
    const connection = await openConnection(settings, signal);
    try {
      const channel = await connection.createConfirmChannel();
      const link = new ConfirmLink(connection, channel, counters, onBlocked);
      link.#watch();
      for (const exchange of exchanges) {
        await channel.assertExchange(exchange.name, exchange.type ?? 'topic', { durable: exchange.durable ?? true, arguments: exchange.arguments });
        link.#knownExchanges.add(exchange.name);
      }
      if (link.#broken) throw link.#broken;
      return link;
    } catch (error) {
      destroyConnection(connection);
      throw error;
    }
  }

  /** The confirm channel, for consuming and acking on it. */
  get channel(): ConfirmChannel {
    return this.#channel;
  }

  /** Resolves with the reason once the link is broken (lost, destroyed or closed). */
  get ended(): Promise<Error> {
    return this.#ended;
  }

  /** Why this link can no longer publish, or undefined while it can. */
  get broken(): Error | undefined {
    return this.#broken;
  }

  /** The broker's reason while it blocks publishing (a memory or disk alarm). */
  get blocked(): string | undefined {
    return this.#blocked;
  }

  get unconfirmed(): number {
    return this.#inFlight.size;
  }

  /** True after `publish` found the channel's write buffer full, until it drains. */
  get draining(): boolean {
    return this.#draining;
  }

  /**
   * Publishes one persistent, mandatory message; the promise settles with the broker's answer.
   * Never throws: a channel that fails to write is broken, and the publish settles `lost`.
   */
  publish(exchange: string, routingKey: string, message: EncodedMessage): Promise<Confirmation> {
    return new Promise<Confirmation>((resolve) => {
      const entry: InFlight = {
        messageId: message.properties.messageId,
        exchange,
        routingKey,
        content: message.content,
        returned: undefined,
        settle: (confirmation) => {
          if (!this.#inFlight.delete(entry)) return;
          this.#count(confirmation);
          resolve(confirmation);
          this.#wake();
        },
      };
      if (this.#broken) {
        this.#counters.lost++;
        resolve({ kind: 'lost', error: this.#broken });
        return;
      }
      this.#inFlight.add(entry);
      this.#counters.published++;
      try {
        const writable = this.#channel.publish(exchange, routingKey, message.content, { ...message.properties, mandatory: true }, (error) => {
          if (error === null || error === undefined) entry.settle(entry.returned === undefined ? { kind: 'ack' } : { kind: 'returned', reply: entry.returned });
          else if (String((error as Error).message) === 'message nacked') entry.settle({ kind: 'nack' });
          else entry.settle({ kind: 'lost', error: this.#lostError(error) });
        });
        if (!writable) this.#draining = true;
      } catch (error) {
        // amqplib registers the confirm callback before writing, so after a failed write its count of
        // delivery tags no longer matches the broker's: nothing on this channel can be trusted.
        this.destroy(new RabbitmqConnectionError('connection-lost', `publishing failed: ${(error as Error).message}`, { cause: error }));
      }
    });
  }

  /** Resolves once `ready()` holds (re-checked on every confirm, drain and state change), or the link breaks. */
  async waitUntil(ready: () => boolean, signal: AbortSignal): Promise<void> {
    while (!ready() && !this.#broken) {
      signal.throwIfAborted();
      await new Promise<void>((resolve, reject) => {
        const done = (): void => {
          this.#wakers.delete(done);
          signal.removeEventListener('abort', aborted);
          resolve();
        };
        const aborted = (): void => {
          this.#wakers.delete(done);
          reject(signal.reason);
        };
        this.#wakers.add(done);
        signal.addEventListener('abort', aborted, { once: true });
      });
    }
  }

  /** Whether `name` is known to exist on this connection (declared or checked), without asking. */
  knowsExchange(name: string): boolean {
    return this.#knownExchanges.has(name);
  }

  /**
   * Whether `name` exists. Publishing to a missing exchange would close the channel and lose every
   * other publish in flight on it, so each exchange is checked once per connection, on a channel
   * of its own that the broker may close.
   */
  async exchangeExists(name: string): Promise<boolean> {
    if (this.#knownExchanges.has(name)) return true;
    if (this.#broken) throw this.#broken;
    this.#probe ??= this.#connection.createChannel().then((channel) => {
      channel.on('error', () => {});
      channel.on('close', () => {
        if (this.#probe === probe) this.#probe = undefined;
      });
      return channel;
    });
    const probe = this.#probe;
    try {
      await (await probe).checkExchange(name);
      this.#knownExchanges.add(name);
      return true;
    } catch (error) {
      if (this.#probe === probe) this.#probe = undefined;
      if ((error as { code?: unknown }).code === 404) return false;
      throw this.#broken ?? error;
    }
  }

  /** Ends the link at once: everything unconfirmed settles `lost`. */
  destroy(reason: Error): void {
    this.#break(reason);
    destroyConnection(this.#connection);
  }

  /** Waits up to `timeoutMs` for outstanding confirms, then closes the channel and connection. */
  async close(timeoutMs: number): Promise<void> {
    const timeout = AbortSignal.timeout(timeoutMs);
    await this.waitUntil(() => this.#inFlight.size === 0, timeout).catch(() => {});
    if (this.#broken) return destroyConnection(this.#connection);
    this.#break(new RabbitmqConnectionError('connection-lost', 'the connection was closed on purpose'));
    const closing = this.#connection.close().catch(() => {});
    const gaveUp = await Promise.race([closing.then(() => false), new Promise<boolean>((r) => setTimeout(r, 2_000, true).unref())]);
    if (gaveUp) destroyConnection(this.#connection);
  }

  #watch(): void {
    const channel = this.#channel;
    const connection = this.#connection;
    channel.on('return', (message: Message) => {
      const { exchange, routingKey, replyCode, replyText } = message.fields as Message['fields'] & { replyCode?: number; replyText?: string };
      const messageId = message.properties.messageId as unknown;
      for (const entry of this.#inFlight) {
        if (
          entry.returned === undefined &&
          entry.messageId === messageId &&
          entry.exchange === exchange &&
          entry.routingKey === routingKey &&
          entry.content.equals(message.content)
        ) {
          entry.returned = `${replyCode ?? '?'} ${replyText ?? 'returned'}`;
          break;
        }
      }
    });
    channel.on('drain', () => {
      this.#draining = false;
      this.#wake();
    });
    channel.on('error', (error: Error) => this.#break(this.#lostError(error)));
    channel.on('close', () => this.#break(new RabbitmqConnectionError('connection-lost', 'the publishing channel closed before RabbitMQ confirmed')));
    connection.on('error', (error: Error) => this.#break(this.#lostError(error)));
    connection.on('close', () => this.#break(new RabbitmqConnectionError('connection-lost', 'the connection to RabbitMQ closed before it confirmed')));
    connection.on('blocked', (reason: string) => {
      this.#blocked = reason || 'blocked';
      this.#onBlocked(this.#blocked);
      this.#wake();
    });
    connection.on('unblocked', () => {
      this.#blocked = undefined;
      this.#onBlocked(undefined);
      this.#wake();
    });
  }

  #break(reason: Error): void {
    if (!this.#broken) {
      this.#broken = reason;
      this.#endedWith(reason);
    }
    // amqplib settles its confirm callbacks when the channel closes; this covers any it did not.
    for (const entry of [...this.#inFlight]) entry.settle({ kind: 'lost', error: this.#broken });
    this.#wake();
  }

  #lostError(error: unknown): Error {
    if (error instanceof RabbitmqConnectionError) return error;
    const detail = error instanceof Error ? error.message : String(error);
    return this.#broken ?? new RabbitmqConnectionError('connection-lost', `the connection to RabbitMQ failed before it confirmed: ${detail}`, { cause: error });
  }

  #count(confirmation: Confirmation): void {
    if (confirmation.kind === 'ack') this.#counters.acked++;
    else if (confirmation.kind === 'returned') this.#counters.returned++;
    else if (confirmation.kind === 'nack') this.#counters.nacked++;
    else this.#counters.lost++;
  }

  #wake(): void {
    for (const wake of [...this.#wakers]) wake();
  }
}

/** Drops the socket without the AMQP closing handshake, which a stalled network would never finish. */
function destroyConnection(connection: ChannelModel): void {
  const stream = (connection.connection as unknown as { stream?: { destroy(): void } }).stream;
  if (stream) stream.destroy();
  else void connection.close().catch(() => {});
}

import pg from 'pg';
import { dropConnection, endWithin } from './pg-connection-end.ts';
import { asError } from './waits.ts';

export interface PgListenerSettings {
  /** How to open the listening connection (the pool's own settings). */
  readonly client: pg.ClientConfig;
  /** Every this often the connection must answer a query within this time, or it is replaced. */
  readonly heartbeatMs: number;
  /** The longest a LISTEN or UNLISTEN may take before the connection counts as lost. 0: no limit. */
  readonly queryTimeoutMs: number;
  /** Told of a subscriber that threw and of a lost connection; never throws back. */
  readonly onError?: (error: Error) => void;
}

type Subscriber = (payload: string) => void;

const firstRetryMs = 100;
const maxRetryMs = 5_000;

/**
 * One LISTEN connection shared by every subscriber of a database: a channel is LISTENed when its
 * first subscriber comes and UNLISTENed when its last one leaves, and the connection is closed when
 * no channel is left. A lost connection (an error, an end, or a heartbeat that went unanswered — a
 * half-open TCP connection reports nothing) is re-opened with backoff, every channel is LISTENed
 * again, and every subscriber is woken with `'*'`: whatever was notified meanwhile is lost.
 */
export class PgListener {
  readonly #settings: PgListenerSettings;
  readonly #channels = new Map<string, Set<Subscriber>>();
  /** Channels LISTENed on the current connection. */
  #listening = new Set<string>();
  #client: pg.Client | undefined;
  /** LISTEN, UNLISTEN and reconnects run one at a time, in order. */
  #queue: Promise<unknown> = Promise.resolve();
  #retryTimer: NodeJS.Timeout | undefined;
  #heartbeatTimer: NodeJS.Timeout | undefined;
  #failures = 0;
  #closed = false;

  constructor(settings: PgListenerSettings) {
    this.#settings = settings;
  }

  /** Channels with at least one subscriber. */
  get channels(): readonly string[] {
    return [...this.#channels.keys()];
  }

  /**
   * Subscribes `onNotify` to `channel`; resolves once the channel is LISTENed, to a function that
   * unsubscribes. Rejects when the listening connection cannot be opened now.
   */
  async listen(channel: string, onNotify: Subscriber): Promise<() => Promise<void>> {
    if (this.#closed) throw new Error('the database is closed; create a new one to listen again');
    // Each subscription is its own entry, so one callback subscribed twice is called twice and
    // unsubscribed once per unsubscription.
    const subscriber: Subscriber = (payload) => onNotify(payload);
    let subscribers = this.#channels.get(channel);
    if (!subscribers) this.#channels.set(channel, (subscribers = new Set()));
    subscribers.add(subscriber);
    try {
      await this.#run(() => this.#sync());
    } catch (error) {
      this.#remove(channel, subscriber);
      throw error;
    }
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      this.#remove(channel, subscriber);
      // Losing the connection while unsubscribing is no failure: there is nothing left to undo.
      await this.#run(() => this.#sync()).catch(() => {});
    };
  }

  /** Unsubscribes everyone and closes the connection. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#channels.clear();
    clearTimeout(this.#retryTimer);
    await this.#run(async () => this.#disconnect()).catch(() => {});
  }

  #remove(channel: string, subscriber: Subscriber): void {
    const subscribers = this.#channels.get(channel);
    subscribers?.delete(subscriber);
    if (subscribers?.size === 0) this.#channels.delete(channel);
  }

  #run<T>(step: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(step);
    this.#queue = result.catch(() => {});
    return result;
  }

  /** Brings the connection in line with the subscribed channels. */
  async #sync(): Promise<void> {
    if (this.#channels.size === 0 || this.#closed) {
      await this.#disconnect();
      return;
    }
    const fresh = !this.#client;
    const client = this.#client ?? (await this.#connect());
    try {
      for (const channel of this.#channels.keys()) {
        if (this.#listening.has(channel)) continue;
        await this.#query(client, `LISTEN ${quoteChannel(channel)}`, this.#settings.queryTimeoutMs);
        this.#listening.add(channel);
      }
      for (const channel of [...this.#listening]) {
        if (this.#channels.has(channel)) continue;
        await this.#query(client, `UNLISTEN ${quoteChannel(channel)}`, this.#settings.queryTimeoutMs);
        this.#listening.delete(channel);
      }
    } catch (error) {
      this.#lost(client, error);
      throw error;
    }
    this.#failures = 0;
    if (fresh) this.#wakeAll();
  }

  async #connect(): Promise<pg.Client> {
    const client = new pg.Client(this.#settings.client);
    client.on('notification', (message) => this.#deliver(message.channel, message.payload ?? ''));
    client.on('error', (error) => this.#lost(client, error));
    client.on('end', () => this.#lost(client, new Error('the listening connection ended')));
    try {
      await client.connect();
    } catch (error) {
      dropConnection(client);
      throw error;
    }
    this.#client = client;
    this.#listening = new Set();
    this.#heartbeatTimer = setInterval(() => this.#heartbeat(client), this.#settings.heartbeatMs);
    this.#heartbeatTimer.unref();
    return client;
  }

  async #disconnect(): Promise<void> {
    clearInterval(this.#heartbeatTimer);
    const client = this.#client;
    this.#client = undefined;
    this.#listening = new Set();
    if (!client) return;
    await endWithin(client.end(), [client]);
  }

  /** A half-open connection delivers nothing and reports nothing: only an unanswered query shows it. */
  #heartbeat(client: pg.Client): void {
    if (client !== this.#client) return;
    this.#query(client, 'SELECT 1', this.#settings.heartbeatMs).catch((error: unknown) =>
      this.#lost(client, new Error(`the listening connection did not answer within ${this.#settings.heartbeatMs} ms`, { cause: error })),
    );
  }

  #lost(client: pg.Client, error: unknown): void {
    if (client !== this.#client) return;
    clearInterval(this.#heartbeatTimer);
    this.#client = undefined;
    this.#listening = new Set();
    dropConnection(client);
    if (this.#closed) return;
    this.#report(asError(error));
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#retryTimer || this.#channels.size === 0) return;
    const delay = Math.min(maxRetryMs, firstRetryMs * 2 ** Math.min(this.#failures, 16)) * (1 + Math.random() / 2);
    this.#failures++;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#run(() => this.#sync()).catch((error: unknown) => {
        // #sync already rescheduled when it lost a connection it had; a failed connect has not.
        this.#report(asError(error));
        this.#scheduleReconnect();
      });
    }, delay);
    this.#retryTimer.unref();
  }

  #deliver(channel: string, payload: string): void {
    const subscribers = this.#channels.get(channel);
    if (!subscribers) return;
    for (const subscriber of [...subscribers]) this.#call(subscriber, payload);
  }

  #wakeAll(): void {
    for (const subscribers of [...this.#channels.values()]) {
      for (const subscriber of [...subscribers]) this.#call(subscriber, '*');
    }
  }

  /** A subscriber that throws (or rejects) must not keep the others from hearing the notification. */
  #call(subscriber: Subscriber, payload: string): void {
    try {
      const result: unknown = subscriber(payload);
      if (result instanceof Promise) result.catch((error: unknown) => this.#report(asError(error)));
    } catch (error) {
      this.#report(asError(error));
    }
  }

  #report(error: Error): void {
    try {
      this.#settings.onError?.(error);
    } catch {
      // An error reporter that throws has nobody left to tell.
    }
  }

  async #query(client: pg.Client, text: string, timeoutMs: number): Promise<void> {
    // query_timeout is node-postgres' client-side limit, missing from its type definitions.
    await client.query((timeoutMs > 0 ? { text, query_timeout: timeoutMs } : { text }) as pg.QueryConfig);
  }
}

function quoteChannel(channel: string): string {
  return `"${channel.replaceAll('"', '""')}"`;
}


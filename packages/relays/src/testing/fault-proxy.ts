import net from 'node:net';

/** Where a {@link FaultProxy} forwards connections to. */
export interface FaultProxyTarget {
  readonly host: string;
  readonly port: number;
}

export interface FaultProxyOptions {
  readonly target: FaultProxyTarget;
  /** Address the proxy listens on. Default `127.0.0.1`. */
  readonly host?: string;
  /** Port the proxy listens on. Default 0: any free port. */
  readonly port?: number;
}

/**
 * A TCP proxy on loopback that breaks the network on purpose, between a client (a transport, a
 * consumer) and a real server (RabbitMQ, Kafka, an HTTP receiver). The server itself stays up:
 * only the path to it misbehaves.
 */
export interface FaultProxy {
  readonly host: string;
  readonly port: number;
  /** Connections open through the proxy right now. */
  readonly openConnections: number;
  /** Connections accepted since the proxy started, refused ones included. */
  readonly acceptedConnections: number;
  /** Resets every open connection on both sides, as a failed network or a killed peer would. */
  cutAll(): void;
  /** While true, new connections are reset as soon as they are accepted; open ones are untouched. */
  refuseNew(refuse?: boolean): void;
  /** Stops moving bytes in both directions, for open and new connections; TCP back-pressure builds up. */
  stall(): void;
  /** Moves bytes again after {@link FaultProxy.stall}. */
  resume(): void;
  /**
   * Turns every open connection into a black hole for good: bytes from either side are read and
   * dropped, nothing is forwarded, and neither side is closed or told — a half-open TCP connection,
   * as a vanished peer or a firewall that forgot the connection leaves it. New connections are not
   * affected (see {@link FaultProxy.blackHoleNew}).
   */
  blackHole(): void;
  /** While true, new connections are accepted and black-holed (see {@link FaultProxy.blackHole}); open ones are untouched. */
  blackHoleNew(on?: boolean): void;
  /** Delays every chunk by `ms` in each direction, keeping order. 0 turns the delay off. */
  setLatency(ms: number): void;
  /** Resets every connection and stops listening. */
  close(): Promise<void>;
}

/**
 * Starts a {@link FaultProxy} in front of `target`; point the client at `proxy.port`.
 *
 * @example
 * const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: 5672 } });
 * const transport = rabbitmqTransport({ url: `amqp://guest:guest@127.0.0.1:${proxy.port}` });
 * proxy.cutAll();          // the transport's connection drops mid-batch
 * proxy.refuseNew(true);   // ... and the broker looks unreachable until refuseNew(false)
 */
export async function createFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const pipes = new Set<Pipe>();
  const links = new Set<{ client: net.Socket; server: net.Socket }>();
  let refusing = false;
  let holingNew = false;
  /** Black-holed connections accepted while {@link FaultProxy.blackHoleNew} was on: no server behind them. */
  const holes = new Set<net.Socket>();
  let stalled = false;
  let latencyMs = 0;
  let accepted = 0;

  const server = net.createServer({ noDelay: true, pauseOnConnect: true }, (client) => {
    accepted++;
    client.on('error', () => {});
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    if (holingNew) {
      holes.add(client);
      client.allowHalfOpen = true;
      client.on('data', () => {});
      client.on('close', () => holes.delete(client));
      client.resume();
      return;
    }
    const upstream = net.connect({ host: options.target.host, port: options.target.port, noDelay: true });
    upstream.on('error', () => {});
    const link = { client, server: upstream };
    links.add(link);
    const toServer = new Pipe(client, upstream, stalled, latencyMs);
    const toClient = new Pipe(upstream, client, stalled, latencyMs);
    pipes.add(toServer);
    pipes.add(toClient);
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      links.delete(link);
      pipes.delete(toServer);
      pipes.delete(toClient);
      toServer.dispose();
      toClient.dispose();
      // One side went away: the other must see it go too, at once and without a graceful close.
      if (!client.destroyed) client.resetAndDestroy();
      if (!upstream.destroyed) upstream.resetAndDestroy();
    };
    client.on('close', end);
    upstream.on('close', end);
  });
  server.on('error', () => {});

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as net.AddressInfo;

  const cutAll = (): void => {
    for (const hole of [...holes]) if (!hole.destroyed) hole.resetAndDestroy();
    for (const { client, server: upstream } of [...links]) {
      if (!client.destroyed) client.resetAndDestroy();
      if (!upstream.destroyed) upstream.resetAndDestroy();
    }
  };

  return {
    host: address.address,
    port: address.port,
    get openConnections() {
      return links.size + holes.size;
    },
    get acceptedConnections() {
      return accepted;
    },
    cutAll,
    refuseNew(refuse = true) {
      refusing = refuse;
    },
    blackHole() {
      for (const pipe of pipes) pipe.blackHole();
    },
    blackHoleNew(on = true) {
      holingNew = on;
    },
    stall() {
      stalled = true;
      for (const pipe of pipes) pipe.stall();
    },
    resume() {
      stalled = false;
      for (const pipe of pipes) pipe.resume();
    },
    setLatency(ms) {
      if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`latency must be a number of milliseconds >= 0, got ${ms}`);
      latencyMs = ms;
      for (const pipe of pipes) pipe.latencyMs = ms;
    },
    async close() {
      cutAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * Moves bytes one way, from `source` to `target`, honouring the target's back-pressure, a stall
 * and a per-chunk delay. Chunks are queued whenever they cannot be written at once, so order holds.
 */
class Pipe {
  latencyMs: number;
  readonly #source: net.Socket;
  readonly #target: net.Socket;
  readonly #queue: { chunk: Buffer; due: number }[] = [];
  #stalled: boolean;
  #waitingForDrain = false;
  #timer: NodeJS.Timeout | undefined;
  #disposed = false;
  #holed = false;

  constructor(source: net.Socket, target: net.Socket, stalled: boolean, latencyMs: number) {
    this.#source = source;
    this.#target = target;
    this.#stalled = stalled;
    this.latencyMs = latencyMs;
    source.on('data', (chunk: Buffer) => {
      if (this.#holed) return;
      this.#queue.push({ chunk, due: Date.now() + this.latencyMs });
      this.#flush();
    });
    target.on('drain', () => {
      this.#waitingForDrain = false;
      this.#flush();
    });
    if (stalled) source.pause();
    else source.resume();
  }

  /** Drops whatever is queued and everything read from now on; keeps reading so the sender never blocks. */
  blackHole(): void {
    this.#holed = true;
    // A vanished peer answers no FIN either: the socket must not end its side when the other ends.
    this.#source.allowHalfOpen = true;
    this.#queue.length = 0;
    clearTimeout(this.#timer);
    this.#source.resume();
  }

  stall(): void {
    if (this.#holed) return;
    this.#stalled = true;
    this.#source.pause();
  }

  resume(): void {
    this.#stalled = false;
    this.#flush();
  }

  dispose(): void {
    this.#disposed = true;
    clearTimeout(this.#timer);
    this.#queue.length = 0;
  }

  #flush(): void {
    if (this.#disposed || this.#holed) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (!this.#stalled && !this.#waitingForDrain && this.#queue.length > 0) {
      const head = this.#queue[0]!;
      const wait = head.due - Date.now();
      if (wait > 0) {
        this.#timer = setTimeout(() => this.#flush(), wait);
        break;
      }
      this.#queue.shift();
      if (this.#target.destroyed) return;
      if (!this.#target.write(head.chunk)) this.#waitingForDrain = true;
    }
    // Read more only when everything read so far is on its way: back-pressure reaches the sender.
    const flowing = !this.#stalled && !this.#waitingForDrain && this.#queue.length === 0;
    if (flowing) this.#source.resume();
    else if (this.#stalled || this.#waitingForDrain) this.#source.pause();
  }
}

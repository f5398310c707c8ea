import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, openSync, closeSync } from 'node:fs';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureKafka, type KafkaHandle } from '../../kafka/broker.mjs';

/** A Kafka broker of the test's own, on free ports, that can be stopped and started again keeping its data. */
export interface RestartableKafka {
  /** `127.0.0.1:<port>`. */
  readonly brokers: string;
  readonly port: number;
  /** Stops the broker (SIGTERM, a clean shutdown); its data stays. */
  stop(): Promise<void>;
  /** Starts it again on the same data and ports; resolves once it serves requests. */
  start(): Promise<void>;
  /** stop() then start(). */
  restart(): Promise<void>;
  /** Stops it for good and deletes its data. */
  close(): Promise<void>;
}

/**
 * Starts a second single-node KRaft broker next to the shared one, for tests that restart Kafka.
 *
 * `kafka/broker.mjs` deletes the data directory when its `stop()` runs, so a restart through it
 * would come back empty. Instead the first start goes through `ensureKafka()` (classpath, format,
 * watchdog), and a restart re-runs the very command line of that JVM (read from /proc) on the
 * same directory. `close()` then lets `ensureKafka`'s own `stop()` delete the directory.
 */
export async function startRestartableKafka(): Promise<RestartableKafka> {
  const port = await freePortPair();
  const controllerPort = port + 1;
  const previous = process.env.KAFKA_CONTROLLER_PORT;
  process.env.KAFKA_CONTROLLER_PORT = String(controllerPort);
  let handle: KafkaHandle;
  try {
    handle = await ensureKafka({ brokers: `127.0.0.1:${port}`, log: () => {} });
  } finally {
    if (previous === undefined) delete process.env.KAFKA_CONTROLLER_PORT;
    else process.env.KAFKA_CONTROLLER_PORT = previous;
  }
  if (!handle.started || handle.pid === undefined || handle.logFile === undefined) {
    throw new Error(`expected a new Kafka broker on port ${port}, but one was already running there`);
  }
  const command = readFileSync(`/proc/${handle.pid}/cmdline`, 'utf8').split('\0').filter((part) => part !== '');
  const logFile = handle.logFile;
  /** The running JVM: the one ensureKafka started, then ours. */
  let running: { pid: number; exited: Promise<unknown> } | undefined = { pid: handle.pid, exited: handle.exited! };

  const killOnExit = (): void => {
    if (running) signal(running.pid, 'SIGKILL');
  };
  process.on('exit', killOnExit);

  const stop = async (): Promise<void> => {
    if (!running) return;
    const { pid, exited } = running;
    signal(pid, 'SIGTERM');
    const timer = setTimeout(() => signal(pid, 'SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
    running = undefined;
  };

  const start = async (): Promise<void> => {
    if (running) return;
    const out = openSync(logFile, 'a');
    const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', out, out] });
    closeSync(out);
    // Like broker.mjs's watchdog: the broker dies with this process, even on SIGKILL.
    spawn('sh', ['-c', `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill -9 ${child.pid} 2>/dev/null`], { stdio: 'ignore', detached: true }).unref();
    running = { pid: child.pid!, exited: new Promise((resolve) => child.once('exit', resolve)) };
    await waitUntilServing(port, logFile, child);
  };

  return {
    brokers: `127.0.0.1:${port}`,
    port,
    stop,
    start,
    async restart() {
      await stop();
      await start();
    },
    async close() {
      process.off('exit', killOnExit);
      if (running) {
        signal(running.pid, 'SIGKILL');
        await running.exited;
        running = undefined;
      }
      await handle.stop(); // its JVM has exited: this only deletes the data directory
    },
  };
}

/** Until the broker lists itself in a Metadata response, as broker.mjs decides readiness: a KRaft broker does once it is unfenced. */
async function waitUntilServing(port: number, logFile: string, child: ChildProcess, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`the restarted Kafka broker exited (${child.exitCode}); see ${logFile}`);
    if (await listsBrokers(port)) return;
    await sleep(200);
  }
  throw new Error(`the restarted Kafka broker did not serve on port ${port} within ${timeoutMs} ms; see ${logFile}`);
}

function listsBrokers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    // Metadata v4, no topics, allow_auto_topic_creation false; the response body starts with
    // throttle time then the broker count.
    const body = Buffer.from([0, 3, 0, 4, 0, 0, 0x7d, 0x1e, 0, 1, 0x74, 0, 0, 0, 0, 0]);
    const request = Buffer.concat([Buffer.from([0, 0, 0, body.length]), body]);
    let received = Buffer.alloc(0);
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(request));
    const done = (ok: boolean): void => {
      socket.destroy();
      clearTimeout(timer);
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), 1_000);
    socket.on('error', () => done(false));
    socket.on('close', () => done(false));
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      if (received.length >= 16) done(received.readInt32BE(4) === 0x7d1e && received.readInt32BE(12) > 0);
    });
  });
}

/** Signals a process that may have exited already. */
function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // gone already
  }
}

/** A port p such that p and p + 1 (the controller) are both free. */
async function freePortPair(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await listenAndRelease(0);
    if (port < 65_000 && (await listenAndRelease(port + 1).then(() => true, () => false))) return port;
  }
  throw new Error('found no two free neighbouring ports for a second Kafka broker');
}

function listenAndRelease(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      const { port: bound } = server.address() as net.AddressInfo;
      server.close(() => resolve(bound));
    });
  });
}

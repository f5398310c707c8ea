// Starts a real single-node KRaft Kafka broker from the Maven Central jars (no Docker here).
//   import { ensureKafka } from './kafka/broker.mjs'   // reuse a running broker or start one
//   node kafka/broker.mjs start                         // foreground, Ctrl-C stops it
// Only node builtins: it must work before `npm install` and from plain .mjs test setups.
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const POM = process.env.KAFKA_POM ?? join(HERE, 'pom.xml'); // override only to try another Kafka
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const HAND_START =
  'To run Kafka by hand: `node kafka/broker.mjs start` (needs Java 17+ and Maven), or start any ' +
  'Kafka 3.x/4.x broker yourself and point KAFKA_BROKERS at it.';

/**
 * Ready means a Metadata request lists at least one broker. A KRaft broker serves requests only
 * after catching up with the controller, and its metadata cache hides fenced brokers, so this
 * holds once it takes produce/fetch/group traffic. Unlike grepping the log it also works for a
 * broker started elsewhere. Metadata v4 is served by Kafka 1.0 through 4.x.
 */
function probeKafka(host, port, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const int = (bytes, v) => { const b = Buffer.alloc(bytes); b.writeIntBE(v, 0, bytes); return b; };
    const clientId = Buffer.from('tidings-probe');
    // Header: api key 3 (Metadata), version 4, correlation id, client id. Body: no topics (only
    // the broker list matters), allow_auto_topic_creation = false.
    const body = Buffer.concat([int(2, 3), int(2, 4), int(4, 0x7d1d), int(2, clientId.length),
      clientId, int(4, 0), int(1, 0)]);
    const req = Buffer.concat([int(4, body.length), body]);
    let buf = Buffer.alloc(0);
    const done = (result) => { socket.destroy(); clearTimeout(timer); resolve(result); };
    const socket = connect({ host, port }, () => socket.write(req));
    // A bound listener that does not answer yet is how a starting broker looks.
    const timer = setTimeout(() => done({ listening: true, ready: false }), timeoutMs);
    socket.on('error', () => done({ listening: false, ready: false }));
    socket.on('close', () => done({ listening: true, ready: false }));
    socket.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 16) return; // size, correlation id, throttle time, broker count
      const kafka = buf.readInt32BE(4) === 0x7d1d;
      done({ listening: true, ready: kafka && buf.readInt32BE(12) > 0, foreign: !kafka });
    });
  });
}

/** Runs a command to completion without blocking the event loop (Maven can take 20 s). */
function run(cmd, args) {
  return new Promise((resolve) => {
    let out = '';
    const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [p.stdout, p.stderr]) stream.on('data', (d) => { out += d; });
    p.on('error', (err) => resolve({ status: -1, out: String(err) }));
    p.on('close', (status) => resolve({ status, out }));
  });
}

const missing = (what, install) => new Error(`Kafka launcher: ${what}. Install it, e.g. ` +
  `\`${install}\`, or put it on PATH (Java: or set JAVA_HOME). ${HAND_START}`);

/** Classpath for the pom's Kafka, cached per pom content so a warm start skips Maven. */
async function kafkaClasspath(log) {
  const pom = fs.readFileSync(POM, 'utf8');
  const version = /<kafka\.version>([^<]+)</.exec(pom)?.[1] ?? 'unknown';
  const hash = createHash('sha256').update(pom).digest('hex').slice(0, 10);
  const file = join(HERE, '.cache', `classpath-${version}-${hash}.txt`);
  if (fs.existsSync(file)) {
    const cp = fs.readFileSync(file, 'utf8').trim();
    // ~/.m2 may have been wiped since the cache was written; then resolve again.
    if (cp && cp.split(':').every((jar) => fs.existsSync(jar))) return { version, cp };
  }
  if ((await run('mvn', ['-v'])).status !== 0) {
    throw missing('Maven (mvn) is needed once to fetch the Kafka jars but was not found',
      'apt-get install -y maven');
  }
  log(`kafka: resolving Kafka ${version} jars with Maven (first run only)...`);
  fs.mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`; // renamed below: parallel starters never read half a file
  const r = await run('mvn', ['-q', '-B', '-f', POM, 'dependency:build-classpath',
    `-Dmdep.outputFile=${tmp}`]);
  if (r.status !== 0) {
    throw new Error(`Kafka launcher: Maven could not resolve Kafka ${version} (exit ${r.status}):\n` +
      `${r.out.slice(-3000)}\n${HAND_START}`);
  }
  fs.renameSync(tmp, file);
  return { version, cp: fs.readFileSync(file, 'utf8').trim() };
}

const serverProperties = ({ host, port, controllerPort, dataDir }) => `# written by kafka/broker.mjs
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${controllerPort}
listeners=PLAINTEXT://${host}:${port},CONTROLLER://127.0.0.1:${controllerPort}
advertised.listeners=PLAINTEXT://${host}:${port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=${dataDir}
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
# The default 50 partitions each of these internal topics are created and loaded on the first
# group join / first transaction: work on 2 cores that a test broker never needs.
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
# Small memory: the log cleaner's default 128 MiB dedupe buffer alone is a quarter of the heap.
log.cleaner.dedupe.buffer.size=8388608
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
`;

// For the log4j2 binding in pom.xml; the JVM's stdout is the broker.log file.
const LOG4J2 = `status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
`;

const tail = (file, n = 40) => {
  try { return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n).join('\n') || '(empty)'; }
  catch { return '(no log written)'; }
};

export async function ensureKafka({
  brokers = process.env.KAFKA_BROKERS ?? '127.0.0.1:9092',
  log = console.error,
  timeoutMs = 120_000,
} = {}) {
  const first = brokers.split(',')[0].trim();
  const host = first.slice(0, first.lastIndexOf(':'));
  const port = Number(first.slice(first.lastIndexOf(':') + 1));
  const deadline = Date.now() + timeoutMs;
  const controllerPort = Number(process.env.KAFKA_CONTROLLER_PORT ?? port + 1);

  // Something listens already: use it once it answers as Kafka (it may still be starting) and
  // never start a second broker next to it. After a lost start race (our broker could not bind)
  // the winner may not even listen yet, hence `racing`.
  const reuse = async (racing = false) => {
    let p = await probeKafka(host, port);
    while (!p.ready && !p.foreign && (p.listening || racing) && Date.now() < deadline) {
      await sleep(500);
      p = await probeKafka(host, port);
    }
    if (p.ready) return { started: false, brokers, stop: async () => {} };
    throw new Error(`Kafka launcher: ${host}:${port} (or controller port ${controllerPort}) is in ` +
      `use but no ready Kafka broker answers there. Free the ports or point KAFKA_BROKERS at a ` +
      `Kafka broker (KAFKA_CONTROLLER_PORT moves the controller). ${HAND_START}`);
  };
  if ((await probeKafka(host, port)).listening) return reuse();

  const java = process.env.JAVA_HOME ? join(process.env.JAVA_HOME, 'bin', 'java') : 'java';
  const jv = await run(java, ['-version']);
  const major = Number(/version "(\d+)/.exec(jv.out)?.[1]);
  if (jv.status !== 0 || !(major >= 17)) {
    throw missing(jv.status === 0 ? `Java ${major} is too old, Kafka needs Java 17+`
      : `Java 17+ (\`${java}\`) was not found`, 'apt-get install -y openjdk-17-jre-headless');
  }
  const { version, cp } = await kafkaClasspath(log);

  const dir = fs.mkdtempSync(join(tmpdir(), 'tidings-kafka-'));
  const props = join(dir, 'server.properties');
  const logFile = join(dir, 'broker.log');
  fs.writeFileSync(props, serverProperties({ host, port, controllerPort, dataDir: join(dir, 'data') }));
  fs.writeFileSync(join(dir, 'log4j2.properties'), LOG4J2);
  const jvm = ['-Xms256m', '-Xmx512m', '-XX:+UseSerialGC', '-Djava.awt.headless=true',
    `-Dlog4j2.configurationFile=${join(dir, 'log4j2.properties')}`, '-cp', cp];

  // The data dir is new on every start, so a fresh random cluster id is always right. C1 only:
  // the format run is over before C2-compiled code would pay off.
  // One in 64 base64url ids starts with '-', which the format tool reads as an option; Kafka's own
  // id generator draws again in that case, and so does this.
  let clusterId;
  do clusterId = randomBytes(16).toString('base64url'); while (clusterId.startsWith('-'));
  const fmt = await run(java, [...jvm, '-XX:TieredStopAtLevel=1', 'kafka.tools.StorageTool',
    'format', '-t', clusterId, '-c', props]);
  if (fmt.status !== 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`Kafka launcher: formatting KRaft storage failed (Kafka ${version}):\n` +
      `${fmt.out.slice(-3000)}\n${HAND_START}`);
  }

  log(`kafka: starting Kafka ${version} on ${host}:${port} (controller ${controllerPort}), log ${logFile}`);
  const out = fs.openSync(logFile, 'a');
  const child = spawn(java, [...jvm, 'kafka.Kafka', props], { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  let exitCode;
  const exited = new Promise((r) => child.once('exit', (code, sig) => r((exitCode = sig ?? code))));

  // 'exit' covers normal ends and process.exit(); the watchdog also covers a parent killed by a
  // signal, which runs no 'exit' handlers and would leave an orphan broker holding the port.
  const j = child.pid;
  const watchdog = spawn('sh', ['-c', `while kill -0 ${process.pid}; do sleep 1; done; kill ${j}; ` +
    `i=0; while kill -0 ${j} && [ $i -lt 20 ]; do sleep 1; i=$((i+1)); done; kill -9 ${j}; rm -rf '${dir}'`],
  { stdio: 'ignore', detached: true });
  watchdog.unref();
  const onExit = () => {
    try { child.kill('SIGKILL'); watchdog.kill('SIGKILL'); } catch {}
    try { fs.rmSync(dir, { recursive: true, force: true }); } catch {}
  };
  process.on('exit', onExit);

  let stopping;
  const stop = () => (stopping ??= (async () => {
    process.off('exit', onExit);
    try { watchdog.kill('SIGKILL'); } catch {}
    if (exitCode === undefined) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  })());

  const fail = async (why) => {
    const msg = `Kafka launcher: Kafka ${version} ${why}. Last lines of ${logFile}:\n` +
      `${tail(logFile)}\n${HAND_START}`;
    await stop();
    throw new Error(msg);
  };
  while (!(await probeKafka(host, port, 1000)).ready) {
    if (exitCode !== undefined) {
      // Lost a start race with a parallel ensureKafka? Then the winner is the broker to use.
      if (/Address already in use/.test(tail(logFile, 400))) { await stop(); return reuse(true); }
      await fail(`exited (${exitCode}) before it was ready`);
    }
    if (Date.now() > deadline) await fail(`was not ready on ${host}:${port} within ${timeoutMs / 1000} s`);
    await sleep(250);
  }
  return { started: true, brokers, logFile, pid: child.pid, exited, stop };
}

// CLI: `node kafka/broker.mjs start` keeps a broker in the foreground until SIGINT/SIGTERM.
if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv[2] !== 'start') {
    console.error('usage: node kafka/broker.mjs start  (env: KAFKA_BROKERS, KAFKA_CONTROLLER_PORT)');
    process.exit(2);
  }
  const t0 = Date.now();
  const kafka = await ensureKafka().catch((err) => { console.error(err.message); process.exit(1); });
  if (!kafka.started) { console.log(`Kafka is already running at ${kafka.brokers}`); process.exit(0); }
  console.log(`Kafka ready at ${kafka.brokers} after ${((Date.now() - t0) / 1000).toFixed(1)} s ` +
    `(log: ${kafka.logFile}); Ctrl-C stops it`);
  let stopping = false;
  const shutdown = async () => { stopping = true; await kafka.stop(); process.exit(0); };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);
  const code = await kafka.exited;
  if (!stopping) { // the broker died on its own
    console.error(`Kafka exited unexpectedly (${code}). Last lines of its log:\n${tail(kafka.logFile)}`);
    await kafka.stop();
    process.exit(1);
  }
}

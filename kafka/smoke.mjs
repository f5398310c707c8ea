// Proof that kafkajs 2.2.4 can produce to and consume from the broker that broker.mjs runs.
// Not a test-suite test; kafkajs is deliberately not a dependency of this folder, so run it with
// kafkajs installed elsewhere:
//   mkdir -p /tmp/kjs && (cd /tmp/kjs && npm init -y && npm i kafkajs@2.2.4)
//   NODE_PATH=/tmp/kjs/node_modules node kafka/smoke.mjs
// It reuses a running broker (KAFKA_BROKERS) or starts one and stops it at the end.
import { createRequire } from 'node:module';
import { ensureKafka } from './broker.mjs';

// ESM imports ignore NODE_PATH; require() honours it.
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const { Kafka, logLevel } = createRequire(import.meta.url)('kafkajs');

const t0 = Date.now();
const secs = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
const broker = await ensureKafka();
console.log(`broker ${broker.brokers} (started by us: ${broker.started}) ready after ${secs()}`);

const kafka = new Kafka({ clientId: 'tidings-smoke', brokers: broker.brokers.split(','),
  logLevel: logLevel.WARN });
const topic = `smoke-${Date.now()}`;
const n = 100;
const admin = kafka.admin();
const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
const consumer = kafka.consumer({ groupId: `${topic}-group` });
let failed = false;
try {
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
  await producer.connect();
  await producer.send({
    topic,
    messages: Array.from({ length: n }, (_, i) => ({ key: `k${i % 7}`, value: `v${i}` })),
  });
  console.log(`produced ${n} messages after ${secs()}`);

  // Also exercises a transactional producer: the outbox relay may rely on it.
  const tx = kafka.producer({ transactionalId: `${topic}-tx`, maxInFlightRequests: 1, idempotent: true });
  await tx.connect();
  const t = await tx.transaction();
  await t.send({ topic, messages: [{ key: 'tx', value: 'committed' }] });
  await t.commit();
  await tx.disconnect();

  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = new Set();
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${seen.size}/${n + 1} consumed`)), 60_000);
    consumer.run({
      eachMessage: async ({ message }) => {
        seen.add(message.value.toString());
        if (seen.size === n + 1) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  const offsets = await admin.fetchOffsets({ groupId: `${topic}-group`, topics: [topic] });
  console.log(`consumed ${seen.size} messages (incl. 1 transactional) after ${secs()}; ` +
    `committed offsets: ${JSON.stringify(offsets[0].partitions.map((p) => p.offset))}`);
} catch (err) {
  failed = true;
  console.error(`SMOKE FAILED after ${secs()}: ${err.name}: ${err.message}`);
} finally {
  await consumer.disconnect().catch(() => {});
  await producer.disconnect().catch(() => {});
  await admin.disconnect().catch(() => {});
  const t = Date.now();
  await broker.stop();
  if (broker.started) console.log(`broker stopped in ${((Date.now() - t) / 1000).toFixed(1)} s`);
}
console.log(failed ? 'smoke: FAIL' : `smoke: OK (${secs()})`);
process.exit(failed ? 1 : 0);

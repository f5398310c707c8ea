/**
 * `npm run bench [-- --quick] [--only a,b] [--out FILE]`: measures tidings on this machine against
 * the real services, prints a table on stdout (progress on stderr) and writes every figure to
 * bench/results.json (bench/results-quick.json with --quick). The README's Performance section says
 * what each figure means.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import checkBrokers from '../test/support/services-brokers.ts';
import checkPostgres from '../test/support/services-postgres.ts';
import { services } from '../test/support/env.ts';
import { memoryTransport, MemoryBroker } from '@tidings/relays/testing';
import type { Destination } from './destinations/destination.ts';
import { kafkaDestination, platformaticKafkaDestination } from './destinations/kafka.ts';
import { rabbitmqDestination } from './destinations/rabbitmq.ts';
import { webhookDestination } from './destinations/webhook.ts';
import { describeMachine } from './machine.ts';
import { fullPlan, quickPlan, type Plan } from './plans.ts';
import { report, type Results } from './report.ts';
import { drainBroker } from './scenarios/drain-brokers.ts';
import { drainMemory } from './scenarios/drain-memory.ts';
import { consumeKafkaDrain } from './scenarios/consume-kafka.ts';
import { inboxOverhead } from './scenarios/inbox.ts';
import { directLatency, relayLatency, sseLatency, websocketLatency } from './scenarios/latency.ts';
import { backlogScaling, workerScaling } from './scenarios/scaling.ts';
import { cleanupScaling } from './scenarios/cleanup.ts';
import { statusScaling } from './scenarios/status.ts';
import { endpointScaling } from './scenarios/endpoints.ts';
import { connectionScaling } from './scenarios/connections.ts';
import { feedMemory } from './scenarios/feed-memory.ts';
import { tracedDrain, tracedWrite } from './scenarios/telemetry.ts';
import { writeOverhead } from './scenarios/write.ts';
import { progress } from './support.ts';

const scenarios = ['write', 'inbox', 'consume', 'drain', 'latency', 'scaling', 'cleanup', 'status', 'endpoints', 'connections', 'feeds', 'telemetry'] as const;
type Scenario = (typeof scenarios)[number];

const usage = `usage: npm run bench [-- --quick] [--only ${scenarios.join(',')}] [--endpoints N,N] [--out FILE]

  --quick   a small run of every scenario (under two minutes once the services run)
  --only    run only these scenarios (comma-separated)
  --endpoints  the endpoint counts of the endpoints scenario (default 100,1000; --quick: 100)
  --out     where the JSON goes (default bench/results.json, bench/results-quick.json with --quick)`;

function options(): { quick: boolean; only: Set<Scenario>; out: string; endpoints: number[] | undefined } {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        quick: { type: 'boolean', default: false },
        only: { type: 'string' },
        out: { type: 'string' },
        endpoints: { type: 'string' },
        help: { type: 'boolean' },
      },
    }));
  } catch (error) {
    fail(`${(error as Error).message}\n${usage}`);
  }
  if (values.help) {
    console.log(usage);
    process.exit(0);
  }
  const only = new Set((values.only ?? scenarios.join(',')).split(',').map((s) => s.trim()) as Scenario[]);
  for (const name of only) if (!scenarios.includes(name)) fail(`unknown scenario "${name}": choose from ${scenarios.join(', ')}`);
  const out = values.out ?? new URL(values.quick ? './results-quick.json' : './results.json', import.meta.url).pathname;
  const endpoints = values.endpoints?.split(',').map((n) => Number(n.trim()));
  if (endpoints?.some((n) => !Number.isInteger(n) || n < 1)) fail(`--endpoints takes whole numbers separated by commas, got "${values.endpoints}"`);
  return { quick: values.quick, only, out, endpoints };
}

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(2);
}

async function main(): Promise<void> {
  const { quick, only, out, endpoints } = options();
  const base: Plan = quick ? quickPlan : fullPlan;
  const plan: Plan = endpoints ? { ...base, endpoints: { ...base.endpoints, counts: endpoints } } : base;
  const started = Date.now();
  await checkPostgres();
  const needsBrokers = only.has('drain') || only.has('latency');
  const stopBrokers = needsBrokers ? await checkBrokers() : undefined;
  const results: Results = {
    date: new Date().toISOString(),
    quick,
    machine: await describeMachine(services),
    plan,
  };
  const destinations: Destination[] = [];
  try {
    if (only.has('write')) {
      progress('write: one business row per transaction, with and without an event');
      results.write = await writeOverhead(plan.write);
    }
    if (only.has('inbox')) {
      progress('inbox: a handler transaction with and without the inbox');
      results.inbox = await inboxOverhead(plan.inbox);
    }
    if (only.has('consume')) {
      progress('consume: consumeKafka draining a topic through the inbox, with kafkajs and with @platformatic/kafka');
      results.consume = { kafka: await consumeKafkaDrain(services.kafka, plan.consumeKafka) };
    }
    if (needsBrokers) {
      destinations.push(
        await rabbitmqDestination(services.rabbitmq),
        await kafkaDestination(services.kafka, plan.drainKafka.batchSize),
        await webhookDestination(),
        await platformaticKafkaDestination(services.kafka, plan.drainKafka.batchSize),
      );
    }
    const [rabbitmq, kafkaDest, webhook, platformatic] = destinations;
    if (only.has('drain')) {
      progress('drain: a backlog drained by one relay worker, against the limit of each destination');
      results.drain = {
        memory: await drainMemory(plan.drainMemory),
        rabbitmq: await drainBroker(rabbitmq!, plan.drainRabbitmq),
        kafka: await drainBroker(kafkaDest!, plan.drainKafka),
        kafka_platformatic: await drainBroker(platformatic!, plan.drainKafka),
        webhook: await drainBroker(webhook!, plan.drainWebhook),
      };
    }
    if (only.has('latency')) {
      progress(`latency: commit to acknowledgement at ${plan.latency.rate} events/s`);
      // The relay, then the destination's own client on the same target at the same rate: the floor.
      const on = async (destination: Destination, label: string) => {
        const target = await destination.target();
        try {
          const relay = await relayLatency(label, () => target.transport(), plan.latency);
          return { ...relay, ...(await directLatency(label, (event) => target.publishOne(event), plan.latency)) };
        } finally {
          await target.dispose();
        }
      };
      results.latency = {
        memory: await relayLatency('memory', () => memoryTransport({ broker: new MemoryBroker({ retain: 1 }) }), plan.latency),
        rabbitmq: await on(rabbitmq!, 'rabbitmq'),
        kafka: await on(kafkaDest!, 'kafka'),
        kafka_platformatic: await on(platformatic!, 'kafka_platformatic'),
        webhook: await on(webhook!, 'webhook'),
        sse: await sseLatency(plan.latency),
        websocket: await websocketLatency(plan.latency),
      };
    }
    if (only.has('scaling')) {
      progress('scaling: a large backlog against a small one, and more worker processes');
      const backlog = await backlogScaling(plan.backlog);
      results.scaling = { backlog_ratio: backlog.backlog_ratio, backlog, workers: await workerScaling(plan.workers) };
    }
    if (only.has('cleanup')) {
      progress(`cleanup: retention on ${plan.cleanup.events} events with 1 and ${plan.cleanup.relays} relays`);
      results.cleanup = await cleanupScaling(plan.cleanup);
    }
    if (only.has('status')) {
      progress(`status: status() on ${plan.status.events} events with 1 and ${plan.status.relays} relays`);
      results.status = await statusScaling(plan.status);
    }
    if (only.has('endpoints')) {
      progress(`endpoints: one webhook dispatcher with ${plan.endpoints.counts.join(' and ')} endpoints`);
      results.endpoints = await endpointScaling(plan.endpoints);
    }
    if (only.has('connections')) {
      results.connections = await connectionScaling(plan.connections);
    }
    if (only.has('feeds')) {
      progress(`feeds: server heap per connection with ${plan.feeds.connections} SSE, then WebSocket, connections`);
      results.feeds = await feedMemory(plan.feeds);
    }
    if (only.has('telemetry')) {
      progress('telemetry: the memory drain and the write with an OpenTelemetry SDK registered, against without');
      results.telemetry = { drain_memory: await tracedDrain(plan.drainMemory), write: await tracedWrite(plan.write) };
    }
  } finally {
    await Promise.all(destinations.map((destination) => destination.close()));
    await stopBrokers?.();
  }
  results.seconds = Math.round((Date.now() - started) / 1000);
  fs.writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`);
  console.log(report(results));
  console.log(`\n${results.seconds} s; figures in ${out}`);
}

try {
  await main();
} catch (error) {
  console.error(`bench: ${(error as Error).stack ?? String(error)}`);
  process.exitCode = 1;
}

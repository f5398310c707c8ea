import type { CleanupPlan } from './scenarios/cleanup.ts';
import type { ConnectionsPlan } from './scenarios/connections.ts';
import type { FeedMemoryPlan } from './scenarios/feed-memory.ts';
import type { DrainBrokerPlan } from './scenarios/drain-brokers.ts';
import type { DrainMemoryPlan } from './scenarios/drain-memory.ts';
import type { ConsumeKafkaPlan } from './scenarios/consume-kafka.ts';
import type { InboxPlan } from './scenarios/inbox.ts';
import type { LatencyPlan } from './scenarios/latency.ts';
import type { BacklogPlan, WorkersPlan } from './scenarios/scaling.ts';
import type { EndpointsPlan } from './scenarios/endpoints.ts';
import type { StatusPlan } from './scenarios/status.ts';
import type { WritePlan } from './scenarios/write.ts';

/** How big each scenario runs. Every figure is a median over `rounds` side-by-side rounds. */
export interface Plan {
  readonly write: WritePlan;
  readonly inbox: InboxPlan;
  readonly consumeKafka: ConsumeKafkaPlan;
  readonly drainMemory: DrainMemoryPlan;
  readonly drainRabbitmq: DrainBrokerPlan;
  readonly drainKafka: DrainBrokerPlan;
  readonly drainWebhook: DrainBrokerPlan;
  readonly latency: LatencyPlan;
  readonly backlog: BacklogPlan;
  readonly workers: WorkersPlan;
  readonly cleanup: CleanupPlan;
  readonly status: StatusPlan;
  readonly endpoints: EndpointsPlan;
  readonly connections: ConnectionsPlan;
  readonly feeds: FeedMemoryPlan;
}

/** The relay's default batch size: the bench measures the relay as users run it. */
const batchSize = 500;

export const fullPlan: Plan = {
  write: { transactions: 4_000, concurrency: 8, rounds: 5 },
  inbox: { transactions: 4_000, concurrency: 8, rounds: 5 },
  consumeKafka: { events: 20_000, partitions: 4, batchSize: 100, rounds: 5 },
  drainMemory: { events: 100_000, batchSize, rounds: 5 },
  drainRabbitmq: { events: 20_000, batchSize, rounds: 5 },
  drainKafka: { events: 50_000, batchSize, rounds: 5 },
  drainWebhook: { events: 20_000, batchSize, rounds: 5 },
  latency: { rate: 1_000, seconds: 12, warmupSeconds: 2, concurrency: 8 },
  backlog: { small: 10_000, large: 1_000_000, smallRepeats: 3, batchSize, rounds: 3 },
  workers: { events: 200_000, counts: [1, 2, 4], batchSize, rounds: 3 },
  cleanup: { events: 1_000_000, relays: 1_000, rounds: 5 },
  status: { events: 1_000_000, relays: 1_000, behind: 1_000, rounds: 3 },
  endpoints: { counts: [100, 1_000], deliveries: 20_000, idleSeconds: 5, runningTimeoutMs: 600_000, deliveryTimeoutMs: 600_000 },
  connections: { relays: 1_000, poolSize: 10 },
  feeds: { connections: 1_000 },
};

/** `--quick`: the same scenarios, small, in under two minutes once the services run. */
export const quickPlan: Plan = {
  write: { transactions: 1_000, concurrency: 8, rounds: 3 },
  inbox: { transactions: 1_000, concurrency: 8, rounds: 3 },
  consumeKafka: { events: 5_000, partitions: 4, batchSize: 100, rounds: 3 },
  drainMemory: { events: 20_000, batchSize, rounds: 3 },
  drainRabbitmq: { events: 8_000, batchSize, rounds: 2 },
  drainKafka: { events: 10_000, batchSize, rounds: 2 },
  drainWebhook: { events: 8_000, batchSize, rounds: 2 },
  latency: { rate: 1_000, seconds: 3, warmupSeconds: 1, concurrency: 8 },
  backlog: { small: 5_000, large: 100_000, smallRepeats: 3, batchSize, rounds: 2 },
  workers: { events: 30_000, counts: [1, 2, 4], batchSize, rounds: 1 },
  cleanup: { events: 100_000, relays: 1_000, rounds: 3 },
  status: { events: 100_000, relays: 1_000, behind: 200, rounds: 3 },
  endpoints: { counts: [100], deliveries: 2_000, idleSeconds: 3, runningTimeoutMs: 600_000, deliveryTimeoutMs: 600_000 },
  connections: { relays: 300, poolSize: 10 },
  feeds: { connections: 200 },
};

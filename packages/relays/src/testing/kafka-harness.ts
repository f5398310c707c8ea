import type { Admin, Consumer, ISocketFactory, ITopicConfig, Kafka } from 'kafkajs';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { brokerList, createKafkaClient, type KafkaClientOptions, type KafkaLogLevel } from '../kafka/kafka-client.ts';
import { kafkaTransport, type KafkaTransport } from '../kafka/kafka-transport.ts';
import { decodeRecord } from '../kafka/record-codec.ts';
import { platformaticKafkaProducer, type KafkaBrokerAddress } from '../kafka/platformatic-producer.ts';
import type { KafkaLibrary, KafkaTransportOptions } from '../kafka/transport-options.ts';
import { collectingSubscription } from './conformance-subscription.ts';
import { createFaultProxy, type FaultProxy } from './fault-proxy.ts';
import type { ReceivedMessage, Subscription, TransportHarness } from './harness.ts';

/**
 * Creates a topic (if absent) and resolves once its partitions have leaders. kafkajs's own
 * `waitForLeaders` retries LEADER_NOT_AVAILABLE only, while a KRaft broker may first answer that it
 * does not host the new partition yet; both mean "not yet", so both are asked again.
 */
export async function createTopicWhenReady(admin: Admin, topic: ITopicConfig): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await admin.createTopics({ topics: [topic], waitForLeaders: true });
      await admin.fetchTopicMetadata({ topics: [topic.topic] });
      return;
    } catch (error) {
      if ((error as { type?: unknown }).type !== 'UNKNOWN_TOPIC_OR_PARTITION' || attempt >= 50) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

export interface KafkaHarnessOptions {
  /** The broker. Default `KAFKA_BROKERS`, else `127.0.0.1:9092`. */
  readonly brokers?: string;
  /** Partitions of the topics the harness creates for subscriptions. Default 3. */
  readonly partitions?: number;
  /** Options of every transport the harness creates (they connect through the fault proxy). */
  readonly transport?: Omit<KafkaTransportOptions, 'brokers' | 'producer' | 'client'>;
  /**
   * A broker of the test's own that the harness may stop and start (keeping its data): then
   * `takeDown()` and `recover()` really stop and restart it. Default: the fault proxy plays the
   * outage (open connections reset, new ones refused) while the broker keeps running.
   */
  readonly broker?: { stop(): Promise<void>; start(): Promise<void> };
  /** What kafkajs logs, for debugging a failing check. Default `nothing`. */
  readonly logLevel?: KafkaLogLevel;
  /** The client library of the transports' producers. Default `kafkajs`. Subscriptions always read with kafkajs. */
  readonly library?: KafkaLibrary;
}

/** The Kafka conformance harness, with its fault proxy and clients for extra tests. */
export interface KafkaHarness extends TransportHarness {
  /** Sits between the harness's transports and the (first) broker; subscriptions bypass it. */
  readonly proxy: FaultProxy;
  readonly brokers: string;
  /** Client settings that reach the broker through the fault proxy, quietly. */
  readonly proxiedClient: Omit<KafkaClientOptions, 'brokers'>;
  /** A kafkajs client straight to the broker. */
  readonly kafka: Kafka;
  createTransport(options?: Omit<KafkaTransportOptions, 'brokers' | 'producer' | 'client'>): Promise<KafkaTransport>;
  /** Creates `topic` with `partitions` (default: the harness's) unless it exists; deleted when the harness closes. */
  createTopic(topic: string, partitions?: number): Promise<void>;
}

/**
 * A {@link TransportHarness} over a real Kafka broker. Transports reach it through a
 * {@link FaultProxy}: a socket factory sends every connection to the broker's advertised address
 * through the proxy, so `cutConnections()` resets them and `takeDown()` makes the broker
 * unreachable (unless `broker` is given: then it is really stopped and started again).
 * Subscriptions are consumer groups of their own reading the topic from its beginning, straight
 * from the broker.
 *
 * @example
 * describeTransport('kafka', kafkaCapabilities, () => kafkaHarness({ brokers: process.env.KAFKA_BROKERS }));
 */
export async function kafkaHarness(options: KafkaHarnessOptions = {}): Promise<KafkaHarness> {
  const brokers = options.brokers ?? process.env.KAFKA_BROKERS ?? '127.0.0.1:9092';
  const partitions = options.partitions ?? 3;
  const proxies = new Map<string, FaultProxy>();
  for (const address of brokerList(brokers)) {
    const at = address.lastIndexOf(':');
    proxies.set(address, await createFaultProxy({ target: { host: address.slice(0, at), port: Number(address.slice(at + 1)) } }));
  }
  const proxy = proxies.values().next().value!;
  const proxiedClient: Omit<KafkaClientOptions, 'brokers'> = {
    logLevel: options.logLevel ?? 'nothing',
    connectTimeoutMs: 1_000,
    requestTimeoutMs: 10_000,
    socketFactory: throughProxies(proxies),
  };
  const kafka = createKafkaClient({ brokers, logLevel: 'nothing', connectTimeoutMs: 1_000 });
  const admin = kafka.admin();
  await admin.connect();
  const transports = new Set<KafkaTransport>();
  const subscriptions = new Set<Subscription>();
  /** Each open subscription's way to start reading again with a new consumer. */
  const readers = new Set<() => Promise<void>>();
  const topics = new Set<string>();

  const createTopic = async (topic: string, count = partitions): Promise<void> => {
    topics.add(topic);
    await createTopicWhenReady(admin, { topic, numPartitions: count });
  };

  return {
    proxy,
    brokers,
    proxiedClient,
    kafka,
    createTopic,
    async createTransport(overrides = {}) {
      const client =
        options.library === 'platformatic'
          ? { producer: platformaticKafkaProducer({ brokers, connectTimeoutMs: 1_000, requestTimeoutMs: 10_000, connectTo: (broker) => proxiedAddress(proxies, broker) }) }
          : { brokers, client: proxiedClient };
      const transport = kafkaTransport({ sendTimeoutMs: 15_000, ...options.transport, ...overrides, ...client });
      transports.add(transport);
      return transport;
    },
    async subscribe(topic) {
      await createTopic(topic);
      let consumer: Consumer | undefined;
      let closed = false;
      let replacing: Promise<void> | undefined;
      // A record read again (by a consumer that replaced another, or after a rebalance) is not a
      // second arrival: only a record at a new offset is.
      const seen = new Set<string>();
      const subscription = collectingSubscription(topic, async () => {
        closed = true;
        subscriptions.delete(subscription);
        readers.delete(replace);
        await replacing;
        await consumer?.disconnect().catch(() => {});
      });
      const read = async (): Promise<void> => {
        // Short session and retries: after a broker restart the group waits for the old member's
        // session to expire before the restarted consumer gets its partitions back.
        const reader = kafka.consumer({
          groupId: `tidings-harness-${randomBytes(6).toString('hex')}`,
          maxWaitTimeInMs: 100,
          sessionTimeout: 6_000,
          heartbeatInterval: 500,
          retry: { initialRetryTime: 100, maxRetryTime: 1_000, retries: 8 },
        });
        consumer = reader;
        // kafkajs restarts a consumer itself only after a failure it deems retriable.
        reader.on(reader.events.CRASH, ({ payload }) => {
          if (!payload.restart && consumer === reader) void replace();
        });
        await startReading(reader, topic, (message, partition, offset) => {
          const at = `${partition}@${offset}`;
          if (seen.has(at)) return;
          seen.add(at);
          subscription.push(message);
        });
      };
      /**
       * The subscription is the suite's witness of what reached the broker, so it must read on
       * after any outage, whatever state kafkajs left its consumer in: a new consumer, in a group
       * of its own, reads the topic from its beginning again (records already seen are skipped).
       */
      function replace(): Promise<void> {
        replacing ??= (async () => {
          const old = consumer;
          consumer = undefined;
          await old?.disconnect().catch(() => {});
          while (!closed) {
            try {
              return await read();
            } catch {
              await new Promise((resolve) => setTimeout(resolve, 500));
            }
          }
        })().finally(() => {
          replacing = undefined;
        });
        return replacing;
      }
      await read();
      subscriptions.add(subscription);
      readers.add(replace);
      return subscription;
    },
    faults: {
      async takeDown() {
        if (options.broker) return options.broker.stop();
        for (const each of proxies.values()) {
          each.refuseNew(true);
          each.cutAll();
        }
      },
      async recover() {
        if (options.broker) {
          await options.broker.start();
          // The subscriptions read anew rather than trust the consumers that lived through the
          // restart to fetch again: in one CI run such a consumer received nothing for 30 s after
          // the broker was back, while the transport had the records acknowledged.
          await Promise.all([...readers].map((replace) => replace()));
          return;
        }
        for (const each of proxies.values()) each.refuseNew(false);
      },
      async cutConnections() {
        for (const each of proxies.values()) each.cutAll();
      },
    },
    async close() {
      for (const each of proxies.values()) each.refuseNew(false);
      await Promise.allSettled([...transports].map((transport) => transport.close()));
      await Promise.allSettled([...subscriptions].map((subscription) => subscription.close()));
      await admin.deleteTopics({ topics: [...topics] }).catch(() => {});
      await admin.disconnect().catch(() => {});
      await Promise.allSettled([...proxies.values()].map((each) => each.close()));
    },
  };
}

/** The proxy's address for a proxied broker address (matched by port when the host is named otherwise), else the address itself. */
function proxiedAddress(proxies: ReadonlyMap<string, FaultProxy>, { host, port }: KafkaBrokerAddress): KafkaBrokerAddress {
  const proxy = proxies.get(`${host}:${port}`) ?? [...proxies].find(([address]) => address.endsWith(`:${port}`))?.[1];
  return proxy ? { host: proxy.host, port: proxy.port } : { host, port };
}

/** Opens each connection to a proxied broker address through its proxy instead. */
function throughProxies(proxies: ReadonlyMap<string, FaultProxy>): ISocketFactory {
  return ({ host, port, onConnect }) => {
    const socket = net.connect(proxiedAddress(proxies, { host, port }), onConnect);
    socket.setKeepAlive(true, 60_000);
    return socket;
  };
}

async function startReading(consumer: Consumer, topic: string, push: (message: ReceivedMessage, partition: number, offset: string) => void): Promise<void> {
  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ topic: from, partition, message }) => {
        try {
          const event = decodeRecord(from, partition, message);
          push({ eventId: event.eventId, topic: event.topic, key: event.key, headers: event.headers, payload: event.payload }, partition, message.offset);
        } catch (error) {
          // Shows up as an unexpected id, with the reason, in the suite's report.
          push({ eventId: `undecodable: ${(error as Error).message}`, topic: from, key: null, headers: {}, payload: null }, partition, message.offset);
        }
      },
    });
  } catch (error) {
    await consumer.disconnect().catch(() => {});
    throw error;
  }
}


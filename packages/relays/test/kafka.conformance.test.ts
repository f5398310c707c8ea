import { describeTransport, kafkaHarness } from '@tidings/relays/testing';
import { kafkaCapabilities } from '@tidings/relays/kafka';
import { services } from '../../../test/support/env.ts';

// Transports reach the broker through a TCP fault proxy: cuts and outages are real network faults
// against the real Kafka. kafka-restart.test.ts runs the outage checks against a broker that is
// really stopped and started again.
describeTransport('kafka', kafkaCapabilities, () => kafkaHarness({ brokers: services.kafka }));

import { describeTransport, rabbitmqHarness } from '@tidings/relays/testing';
import { rabbitmqCapabilities } from '@tidings/relays/rabbitmq';
import { services } from '../../../test/support/env.ts';
import { shareBrokerPerTest } from '../../../test/support/rabbitmq-broker-lock.ts';

// Transports reach the broker through a TCP fault proxy: cuts and outages are real network faults,
// against the real RabbitMQ.
shareBrokerPerTest();
describeTransport('rabbitmq', rabbitmqCapabilities, () => rabbitmqHarness({ url: services.rabbitmq }));

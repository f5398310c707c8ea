import { describeTransport, kafkaHarness } from '@tidings/relays/testing';
import { kafkaCapabilities } from '@tidings/relays/kafka';
import { services } from '../../../test/support/env.ts';

// The same checks as kafka.conformance.test.ts, with the @platformatic/kafka producer: its
// connections go through the TCP fault proxy by its `connectTo` option.
describeTransport('kafka (@platformatic/kafka)', kafkaCapabilities, () => kafkaHarness({ brokers: services.kafka, library: 'platformatic' }));

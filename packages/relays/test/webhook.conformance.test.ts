import { describeTransport, webhookHarness } from '@tidings/relays/testing';
import { webhookCapabilities } from '@tidings/relays/webhook';

// A receiver on loopback answers in well under a millisecond; the defaults are for real brokers.
const local = { settleMs: 100, downSendTimeoutMs: 2_000, recoveryTimeoutMs: 30_000 };

describeTransport('webhook, receiver refusing connections while down', webhookCapabilities, () => webhookHarness({ downMode: 'refuse' }), local);
describeTransport('webhook, receiver slower than the timeout while down', webhookCapabilities, () => webhookHarness({ downMode: 'slow', sendTimeoutMs: 800 }), local);
describeTransport('webhook, receiver answering 500 while down', webhookCapabilities, () => webhookHarness({ downMode: 'error' }), local);

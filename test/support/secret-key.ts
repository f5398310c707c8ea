import { secretKeyring } from '@tidings/relays/webhook';

/** A fixed key for tests, so their webhook secrets are encrypted as in production. */
export const testSecretKey = 'dGlkaW5ncyB0ZXN0IGtleSwgMzIgYnl0ZXMgbG9uZyE=';

/** The keyring every test registry and dispatcher uses. */
export const testKeyring = secretKeyring({ current: testSecretKey });

/**
 * `@tidings/relays`: the transports live behind subpath exports (`./rabbitmq`, `./kafka`,
 * `./webhook`, `./sse`, `./polling`) and the test kit behind `./testing`; the root holds what the
 * `tidings` command line reads.
 */
export { defineConfig, type RelayConfig, type TidingsConfig, type TransportConfig } from './cli/config.ts';
export { main as runCli } from './cli/main.ts';

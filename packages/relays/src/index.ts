/**
 * `@tidings/relays`: the transports live behind subpath exports (`./rabbitmq`, `./kafka`,
 * `./webhook`, `./sse`, `./polling`) and the test kit behind `./testing`; the root holds what the
 * `tidings` command line reads, and the error a feature raises when its optional peer dependency
 * (a broker client, PGlite, pino) is not installed.
 */
export { defineConfig, type RelayConfig, type TidingsConfig, type TransportConfig } from './cli/config.ts';
export { main as runCli } from './cli/main.ts';
export { MissingPackageError } from './shared/optional-package.ts';

import { createRequire } from 'node:module';
import { TidingsError } from '@tidings/outbox';

/**
 * A feature was used whose library is not installed. The broker clients (amqplib, kafkajs), the
 * embedded database (PGlite) and the `tidings relay` command's logger and metrics exporter are
 * optional peer dependencies of `@tidings/relays`: an application installs the ones it uses, and
 * tidings loads each only when its feature is first used.
 *
 * @example
 * try {
 *   rabbitmqTransport({ url });
 * } catch (error) {
 *   if (error instanceof MissingPackageError) console.error(`run: npm install ${error.packages.join(' ')}`);
 * }
 */
export class MissingPackageError extends TidingsError {
  override readonly name = 'MissingPackageError';
  /** What was used, e.g. `RabbitMQ (rabbitmqTransport, consumeRabbitmq)`. */
  readonly feature: string;
  /** The packages to install. */
  readonly packages: readonly string[];
  constructor(feature: string, packages: readonly string[], cause?: unknown) {
    const list = packages.join(' and ');
    super(`${feature} needs the package${packages.length > 1 ? 's' : ''} ${list}: npm install ${packages.join(' ')}`, { cause });
    this.feature = feature;
    this.packages = packages;
  }
}

const require = createRequire(import.meta.url);

/**
 * Loads a CommonJS package synchronously (so a factory such as `rabbitmqTransport()` can refuse at
 * once, before any relay runs); a MissingPackageError when it is not installed.
 */
export function requirePackage<T>(name: string, feature: string): T {
  try {
    return require(name) as T;
  } catch (error) {
    throw isMissing(error, name) ? new MissingPackageError(feature, [name], error) : error;
  }
}

/**
 * Loads a package by `import()` (for ES modules, and where the caller is async anyway); a
 * MissingPackageError naming the packages of `together` when `name` is not installed.
 */
export async function importPackage<T>(name: string, feature: string, together: readonly string[] = [name]): Promise<T> {
  try {
    return (await import(name)) as T;
  } catch (error) {
    throw isMissing(error, name) ? new MissingPackageError(feature, together, error) : error;
  }
}

/** Whether `name` can be found from @tidings/relays, without loading it. */
export function isInstalled(name: string): boolean {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
}

/**
 * The package itself is absent, not one of its own dependencies: a broken installation of an
 * installed package keeps its own error.
 */
function isMissing(error: unknown, name: string): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (code !== 'MODULE_NOT_FOUND' && code !== 'ERR_MODULE_NOT_FOUND') return false;
  const message = String((error as Error).message);
  return message.includes(`'${name}'`) || message.includes(`'${name}/`) || message.includes(`"${name}"`);
}

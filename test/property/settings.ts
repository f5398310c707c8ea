/**
 * How much the property suite runs, from the environment:
 *
 * - default (CI): TIDINGS_PROPERTY_RUNS cases per transport (default: the destination's `ciRuns`) of up to
 *   TIDINGS_PROPERTY_COMMANDS commands (default 14);
 * - TIDINGS_SOAK=1: 10 cases per transport (TIDINGS_PROPERTY_RUNS), or cases until TIDINGS_SOAK_MINUTES
 *   per transport are up; each case interleaves up to 40 commands (faults among them) with bursts of
 *   transactions, so that its history holds at least TIDINGS_SOAK_TRANSACTIONS (default 500)
 *   transactions with faults throughout;
 * - TIDINGS_PROPERTY_SEED and TIDINGS_PROPERTY_PATH replay a failure reported by fast-check;
 * - TIDINGS_PROPERTY_VERBOSE=1 prints a summary line per case.
 */
export interface PropertySettings {
  readonly soak: boolean;
  readonly runs: number;
  readonly maxCommands: number;
  /** Fewest business transactions per case (soak; 0 in CI, where cases are commands only). */
  readonly minTransactions: number;
  readonly seed: number;
  readonly path: string | undefined;
  readonly timeLimitMs: number | undefined;
  readonly verbose: boolean;
  /** Lease time of relay workers: pauses last 1.5 times this. */
  readonly leaseMs: number;
  /** What one transport's test may take, for vitest's timeout. */
  readonly testTimeoutMs: number;
}

function integer(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 0) throw new Error(`${name} must be a whole number, got ${JSON.stringify(text)}`);
  return value;
}

export function settings(ciRuns = 4): PropertySettings {
  const env = process.env;
  const soak = env.TIDINGS_SOAK === '1' || env.TIDINGS_SOAK === 'true';
  const minutes = integer('TIDINGS_SOAK_MINUTES', 0);
  const timeLimitMs = soak && minutes > 0 ? minutes * 60_000 : undefined;
  const runs = integer('TIDINGS_PROPERTY_RUNS', soak ? (timeLimitMs ? 100_000 : 10) : ciRuns);
  const maxCommands = integer('TIDINGS_PROPERTY_COMMANDS', soak ? 40 : 14);
  const minTransactions = soak ? integer('TIDINGS_SOAK_TRANSACTIONS', 500) : 0;
  // A case is a few seconds plus about half a second per command and a fifth of a second per
  // transaction of its bursts; a worst-case drain adds two minutes.
  const perRunMs = 15_000 + maxCommands * 1_000 + minTransactions * 200;
  return {
    soak,
    runs,
    maxCommands,
    minTransactions,
    seed: env.TIDINGS_PROPERTY_SEED ? Number(env.TIDINGS_PROPERTY_SEED) : Math.floor(Math.random() * 2 ** 31),
    path: env.TIDINGS_PROPERTY_PATH || undefined,
    timeLimitMs,
    verbose: env.TIDINGS_PROPERTY_VERBOSE === '1' || soak,
    leaseMs: 1_000,
    testTimeoutMs: (timeLimitMs ?? runs * perRunMs) + 180_000,
  };
}

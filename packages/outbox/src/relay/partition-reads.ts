import type { Executor } from '../executor.ts';
import { readPartition, type ReadOptions, type ReadResult } from '../read.ts';

/**
 * @internal Where a relay's partition runners get their pages of the log. Each relay reads on its
 * own ({@link directReads}); relays of one process that follow the same log, such as a webhook
 * dispatcher's endpoints, can share one {@link SharedPartitionReads} instead.
 */
export interface PartitionReads {
  /** A page of the log as `readPartition` reads it: every event after `after`, filtered, in commit order. */
  read(options: ReadOptions): Promise<ReadResult>;
  /** A NOTIFY said that `partition` (undefined: any partition) may have new events. */
  wake(partition?: number): void;
  /**
   * A runner of `partition` follows the log and polls every `pollIntervalMs`; `wake` tells it that
   * new events were found. Returns what ends the following.
   */
  follow(partition: number, wake: () => void, pollIntervalMs: number): () => void;
}

/** Every read is a statement of its own: what a relay on its own does. */
export function directReads(executor: Executor, schema: string): PartitionReads {
  return {
    read: (options) => readPartition(executor, schema, options),
    wake: () => {},
    follow: () => () => {},
  };
}

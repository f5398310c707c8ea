import type { Executor } from '@tidings/outbox';
import { lastCommitDrawn } from '@tidings/outbox/internal';
import type { HeadReading } from './cursor.ts';

/** Reads where the log's head stands now (see `LogHead`): the last commit number drawn. */
export async function readHead(executor: Executor, schema: string): Promise<HeadReading> {
  return { lastSeq: await lastCommitDrawn(executor, schema) };
}

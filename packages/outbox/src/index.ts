export { payloadJson, type EventInput, type Json, type OutboxEvent, type Position } from './event.ts';
export {
  BeyondHorizonError,
  ClusterChangedError,
  ConfigError,
  CursorAheadError,
  CursorExpiredError,
  InvalidCursorError,
  InvalidEventError,
  LeaseLostError,
  NotInTransactionError,
  SchemaMissingError,
  TidingsError,
  TransactionAbortedError,
  TransportClosedError,
  type ClusterIdentity,
  type InvalidCursorReason,
  type InvalidEventReason,
} from './errors.ts';
export { type Database, type Executor, type QueryResult, type TransactionHandle } from './executor.ts';
export { type MigrationResult } from './migrate.ts';
export { pgDatabase, type PgDatabaseOptions } from './pg-database.ts';
export { comparePositions, decodePosition, encodePosition, start as logStart } from './position.ts';
export { publish, type PublishOptions } from './publish.ts';
export { readPartition, type ReadOptions, type ReadResult } from './read.ts';
export { delivered, failed, retry, unavailable, type SendOutcome, type Transport, type TransportCapabilities } from './transport.ts';
export { cleanup, dropRelay, migrate, replay, type CleanupOptions, type CleanupResult, type MigrateOptions, type ReplayOptions } from './admin.ts';
export { scheduleRetention, type RetentionSchedule, type RetentionScheduleOptions } from './retention.ts';
export { createRelay, type DestinationStatus, type Relay, type RelayStatus } from './relay/relay.ts';
export type { FailureMode, RelayEvent, RelayOptions, RetryPolicy } from './relay/options.ts';
export {
  discardDeadLetters,
  listDeadLetters,
  listParkedKeys,
  retryDeadLetters,
  type DeadLetter,
  type DeadLetterQuery,
  type ParkedKeyInfo,
  type RetryDeadLettersOptions,
} from './relay/dead-letters.ts';
export { defaultRedeliveryHorizonMs, type HorizonOptions } from './horizon.ts';
export type { AttemptError } from './relay/store.ts';
export { pgliteDatabase, type PGliteLike } from './pglite-database.ts';
export { readFeed, type FeedPage, type FeedReadOptions } from './feed.ts';
export { partitionOf } from './partition.ts';
export { status, type CommitLockHolder, type FeedHoldReport, type OutboxStatus, type PartitionStatus, type RelayStatusReport, type StatusOptions } from './status.ts';
export { adoptCluster, inspectCluster, moveCursors, type ClusterReport, type MoveCursorsOptions } from './cluster.ts';
export { observeStatus, type StatusMetrics, type StatusMetricsOptions } from './status-metrics.ts';

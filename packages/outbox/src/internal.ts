/**
 * `@tidings/outbox/internal`: what tidings' own packages (the inbox, the relays and the command
 * line) share with the outbox and users do not call: statement helpers, transaction checks,
 * migrations of a component's own tables. It follows the packages' versions, not semver: import
 * it only from a tidings package.
 */
export { toExecutor } from './executor.ts';
export { applyMigrations, type MigrationSet } from './migrate.ts';
export { maxPosition } from './position.ts';
export { lastCommitDrawn, lastDrawnSql, quoteIdent, validateSchemaName } from './sql.ts';
export { relayRegistrationSql } from './relay/store.ts';
export { resolveSchema, notifyChannel, wholeOption } from './options.ts';
export { requireHealthyTransaction } from '#commit-check';
export { requireTransaction, transactionVerdict, type TransactionVerdict } from './transaction-check.ts';
export { keyHash } from './partition.ts';
export { abortable, asError, pause } from './waits.ts';
export { translateDriverError, translatingErrors } from './driver-errors.ts';
export { commandTag, inPgTransaction, type PgTransactionClient, type PgTransactionPool } from './pg-transaction.ts';
export { observer } from './observer.ts';
export { failureModes } from './relay/options.ts';
export { cleanupSettings } from './admin.ts';
export { ownStatements } from './own-statements.ts';
export { createSharedRelay, type RelayShares } from './relay/relay.ts';
export { sharedClusterCheck } from './cluster.ts';
export { SharedHeartbeats } from './relay/shared-heartbeats.ts';
export { directReads, type PartitionReads } from './relay/partition-reads.ts';
export { SharedPartitionReads, type SharedPartitionReadsSettings } from './relay/shared-partition-reads.ts';
export { activeTraceHeaders, attributes, instruments, producerContext, producerSpanContext, tidingsTracer, type TidingsInstruments } from './telemetry.ts';
export { eventsPassed, publishedSince, type CursorMove, type LogHeads } from './throughput.ts';

/**
 * The named errors of tidings. Each carries the data needed to act on it, and its message says
 * what went wrong and what to do.
 */
export class TidingsError extends Error {
  override readonly name: string = 'TidingsError';
}

export type InvalidEventReason =
  | 'invalid-topic'
  | 'invalid-key'
  | 'invalid-tenant'
  | 'invalid-headers'
  | 'payload-not-json'
  | 'payload-too-large'
  | 'invalid-event';

/** An event given to `publish()` cannot be stored; nothing of that call was written. */
export class InvalidEventError extends TidingsError {
  override readonly name = 'InvalidEventError';
  readonly reason: InvalidEventReason;
  /** Position of the offending event in the `publish()` call. */
  readonly index: number;
  readonly topic: string | undefined;
  constructor(reason: InvalidEventReason, index: number, topic: string | undefined, detail: string) {
    super(`event #${index}${topic ? ` (topic "${topic}")` : ''} was not published: ${detail}`);
    this.reason = reason;
    this.index = index;
    this.topic = topic;
  }
}

/** A configuration value is missing or out of range. */
export class ConfigError extends TidingsError {
  override readonly name = 'ConfigError';
  readonly option: string;
  constructor(option: string, detail: string) {
    super(`invalid option "${option}": ${detail}`);
    this.option = option;
  }
}

/** The call needs the caller's open transaction and was given a connection outside one. */
export class NotInTransactionError extends TidingsError {
  override readonly name = 'NotInTransactionError';
  constructor(what: string) {
    super(
      `${what} must run inside the caller's transaction so that it commits or rolls back with the ` +
        'business data; pass a kysely Transaction, or a pg client after BEGIN.',
    );
  }
}

/** The schema has not been migrated, or is older than this version of tidings needs. */
export class SchemaMissingError extends TidingsError {
  override readonly name = 'SchemaMissingError';
  readonly schema: string;
  constructor(schema: string, options?: { cause?: unknown; tables?: string; fix?: string }) {
    super(
      `the ${options?.tables ?? 'tidings'} tables in schema "${schema}" are missing or incomplete; ` +
        `run ${options?.fix ?? 'migrate() (or `tidings migrate`)'} first.`,
      options,
    );
    this.schema = schema;
  }
}

/** A feed reader asked for a position that retention has already deleted. */
export class CursorExpiredError extends TidingsError {
  override readonly name = 'CursorExpiredError';
  readonly cursor: string;
  constructor(cursor: string) {
    super(
      `cursor ${cursor} points before events that retention has deleted; events were missed. ` +
        'Resynchronise from your own state and restart the feed from the beginning or from now.',
    );
    this.cursor = cursor;
  }
}

/**
 * A cursor string is not one that tidings produced (`reason: 'unknown'`), or one of the form
 * tidings wrote before log positions became commit sequence numbers (`reason: 'legacy'`).
 */
export class InvalidCursorError extends TidingsError {
  override readonly name = 'InvalidCursorError';
  readonly cursor: string;
  readonly reason: 'unknown' | 'legacy';
  constructor(cursor: string, reason: 'unknown' | 'legacy' = 'unknown') {
    super(
      reason === 'legacy'
        ? `"${cursor}" is a cursor of the old (transaction id) form, which cannot be placed in commit order; ` +
            'resume from your own state and restart the feed from "start" or "now".'
        : `"${cursor}" is not a tidings cursor; pass back a cursor exactly as tidings returned it.`,
    );
    this.cursor = cursor;
    this.reason = reason;
  }
}

/** This worker no longer holds the partition: another worker took it over, or the lease ran out. */
export class LeaseLostError extends TidingsError {
  override readonly name = 'LeaseLostError';
  readonly relay: string;
  readonly partition: number;
  constructor(relay: string, partition: number) {
    super(`relay "${relay}" lost its lease on partition ${partition}; another worker owns it now.`);
    this.relay = relay;
    this.partition = partition;
  }
}

/** A transport was used after `close()`: nothing of that send went out. */
export class TransportClosedError extends TidingsError {
  override readonly name = 'TransportClosedError';
  readonly transport: string;
  constructor(transport: string, detail = 'nothing was sent. Create a new transport to send again.') {
    super(`transport "${transport}" is closed; ${detail}`);
    this.transport = transport;
  }
}

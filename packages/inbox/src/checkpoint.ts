import { requireTransaction, toExecutor } from '@tidings/outbox/internal';
import { CheckpointConflictError, InvalidInputError } from './errors.ts';
import { quoteIdent, translateError } from './schema.ts';
import { limits, validText } from './validate.ts';

/** What `saveCheckpoint()` stores. */
export interface CheckpointInput {
  /**
   * The ordered source, named by the caller: e.g. `orders/3` for partition 3 of Kafka topic
   * `orders`, or the URL of an SSE or polling feed.
   */
  readonly source: string;
  /** The position up to which the source has been applied, in the caller's own format. */
  readonly position: string;
  /**
   * Fencing: when given, the save only succeeds if the stored position is still this one (`null`:
   * no checkpoint yet), otherwise it throws `CheckpointConflictError`. Pass the position you
   * loaded and resumed from, so that a worker that lost its partition cannot apply it twice.
   */
  readonly expected?: string | null;
}

interface Statements {
  readonly upsert: string;
  readonly create: string;
  readonly advance: string;
  readonly load: string;
}

const cache = new Map<string, Statements>();

function statements(schema: string): Statements {
  let found = cache.get(schema);
  if (found) return found;
  const t = `${quoteIdent(schema)}.checkpoints`;
  found = {
    upsert: `INSERT INTO ${t} (consumer, source, position) VALUES ($1, $2, $3)
      ON CONFLICT (consumer, source) DO UPDATE SET position = EXCLUDED.position, updated_at = now()`,
    // A concurrent save of the same row makes these wait for it, then re-check: under READ
    // COMMITTED the UPDATE's WHERE is evaluated again against the newly committed position.
    create: `INSERT INTO ${t} (consumer, source, position) VALUES ($1, $2, $3)
      ON CONFLICT (consumer, source) DO NOTHING RETURNING true AS saved`,
    advance: `UPDATE ${t} SET position = $3, updated_at = now()
      WHERE consumer = $1 AND source = $2 AND position = $4 RETURNING true AS saved`,
    load: `SELECT position FROM ${t} WHERE consumer = $1 AND source = $2`,
  };
  cache.set(schema, found);
  return found;
}

export async function saveCheckpoint(trx: unknown, schema: string, consumer: string, input: CheckpointInput): Promise<void> {
  if (typeof input !== 'object' || input === null) {
    throw new InvalidInputError('checkpoint', 'must be an object { source, position, expected? }');
  }
  const source = validText('source', input.source, limits.source);
  const position = validText('position', input.position, limits.position);
  const expected = input.expected;
  if (expected !== undefined && expected !== null) validText('expected', expected, limits.position);
  const executor = toExecutor(trx, 'trx');
  await requireTransaction(trx, executor, 'saveCheckpoint()', `${quoteIdent(schema)}.checkpoints`, (error) => translateError(error, schema));
  const s = statements(schema);
  try {
    if (expected === undefined) {
      await executor.query(s.upsert, [consumer, source, position]);
      return;
    }
    const { rows } =
      expected === null
        ? await executor.query(s.create, [consumer, source, position])
        : await executor.query(s.advance, [consumer, source, position, expected]);
    if (rows.length === 0) throw new CheckpointConflictError(consumer, source, expected);
  } catch (error) {
    throw translateError(error, schema);
  }
}

export async function loadCheckpoint(db: unknown, schema: string, consumer: string, source: string): Promise<string | null> {
  validText('source', source, limits.source);
  const executor = toExecutor(db);
  try {
    const { rows } = await executor.query<{ position: string }>(statements(schema).load, [consumer, source]);
    return rows[0]?.position ?? null;
  } catch (error) {
    throw translateError(error, schema);
  }
}

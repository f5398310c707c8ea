import { webhookReceiver, type WebhookMessage } from '@tidings/relays/webhook';
import type pg from 'pg';
import { startWebhookServer, type TestWebhookServer } from '@tidings/relays/testing';
import type { TestOutbox } from './db.ts';

/** What a receiver does with one request, decided per request. */
export type Misbehaviour = 'fail-before' | 'refuse' | 'fail-after-commit' | undefined;

export interface InboxReceiver {
  readonly name: string;
  readonly server: TestWebhookServer;
  /** Secrets the receiver verifies with; tests may swap them (a receiver-side rotation). */
  secrets: string[];
  /** First time each event was applied (ms since epoch), by event id. */
  readonly appliedAt: Map<string, number>;
  /** Requests answered 500 on purpose, and deliveries the inbox skipped as duplicates. */
  readonly stats: { failedBefore: number; failedAfterCommit: number; duplicates: number; rejected: number };
  /** Every event applied, from the database: one row per application. */
  applied(): Promise<Array<{ event_id: string; key: string | null }>>;
  close(): Promise<void>;
}

/**
 * A consumer service: a real HTTP server whose webhook receiver applies each event through the
 * inbox into the `applied` table, in one transaction, and answers after commit. `misbehave` can
 * make it answer 500 before applying, 422 (refusing the event) before applying, or 500 after
 * committing (as if the answer were lost).
 */
export async function startInboxReceiver(
  outbox: TestOutbox,
  name: string,
  secrets: string[],
  misbehave: () => Misbehaviour = () => undefined,
): Promise<InboxReceiver> {
  const table = `"${outbox.schema}".applied`;
  await outbox.db.query(`CREATE TABLE IF NOT EXISTS ${table} (seq bigserial, receiver text NOT NULL, event_id text NOT NULL, key text)`);
  const appliedAt = new Map<string, number>();
  const stats = { failedBefore: 0, failedAfterCommit: 0, duplicates: 0, rejected: 0 };
  const state = { secrets };
  const receiverFor = (keys: string[]) =>
    webhookReceiver({
      secrets: keys,
      consumer: `receiver.${name}`,
      schema: outbox.schema,
      database: outbox.pool,
      handler: async (trx, message: WebhookMessage) => {
        await trx.query(`INSERT INTO ${table} (receiver, event_id, key) VALUES ($1, $2, $3)`, [name, message.eventId, message.key]);
      },
    });
  const server = await startWebhookServer(async (req, res, body) => {
    const behaviour = misbehave();
    if (behaviour === 'fail-before') {
      stats.failedBefore++;
      res.writeHead(500).end('unlucky');
      return;
    }
    if (behaviour === 'refuse') {
      stats.failedBefore++;
      res.writeHead(422).end('unprocessable');
      return;
    }
    const reply = await receiverFor(state.secrets).handle({ method: req.method, headers: req.headers, body });
    if (reply.status === 200) {
      const outcome = JSON.parse(reply.body) as { id: string; status: string };
      if (outcome.status === 'duplicate') stats.duplicates++;
      else if (!appliedAt.has(outcome.id)) appliedAt.set(outcome.id, Date.now());
    } else if (reply.status === 401) {
      stats.rejected++;
    }
    if (reply.status === 200 && behaviour === 'fail-after-commit') {
      stats.failedAfterCommit++;
      res.writeHead(500).end('crashed after commit');
      return;
    }
    res.writeHead(reply.status, reply.headers).end(reply.body);
  });
  return {
    name,
    server,
    get secrets() {
      return state.secrets;
    },
    set secrets(value: string[]) {
      state.secrets = value;
    },
    appliedAt,
    stats,
    async applied() {
      const { rows } = await outbox.db.query<{ event_id: string; key: string | null }>(
        `SELECT event_id, key FROM ${table} WHERE receiver = $1 ORDER BY seq`,
        [name],
      );
      return rows;
    },
    close: () => server.close(),
  };
}

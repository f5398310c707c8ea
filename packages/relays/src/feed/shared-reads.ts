import { readFeed, type Database, type FeedPage } from '@tidings/outbox';
import { cursorText, type FeedStart } from './cursor.ts';
import type { ResolvedScope } from './scope.ts';

/** How long a finished read from a cursor is handed to identical requests that need not be fresh. */
const reuseMs = 50;

/**
 * Catch-up reads of the log, shared so that a burst of connections costs a few queries instead of
 * one each.
 */
export class SharedReads {
  readonly #database: Database;
  readonly #schema: string;
  /** Reads asked for and not yet started. */
  readonly #pending = new Map<string, Promise<FeedPage>>();
  /** Reads running or finished less than `reuseMs` ago. */
  readonly #recent = new Map<string, Promise<FeedPage>>();

  constructor(database: Database, schema: string) {
    this.#database = database;
    this.#schema = schema;
  }

  /**
   * A page of the log for one scope. Reads are shared, so that a burst of connections costs a few
   * queries. Requests for the same page (same scope, start and limit) that arrive before its query
   * starts share it: the query still starts after each of them arrived, so it sees every commit
   * that came before any of them (`fresh`). A request that is not `fresh` also takes a read that is
   * running or finished less than `reuseMs` ago: a page a little old is still a correct page for
   * an SSE stream, which then either joins the shared tail or reads on from the page's end.
   */
  read(scope: ResolvedScope, after: FeedStart, limit: number, fresh = true): Promise<FeedPage> {
    const key = after === 'now' ? 'now' : `${scope.key}|${typeof after === 'string' ? after : cursorText(after)}|${limit}`;
    const pending = this.#pending.get(key);
    if (pending !== undefined) return pending;
    if (!fresh && after !== 'now') {
      const recent = this.#recent.get(key);
      if (recent !== undefined) return recent;
    }
    const page = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.#pending.delete(key);
      return readFeed(this.#database, this.#schema, { after, limit, tenant: scope.tenant, topics: scope.topics });
    });
    this.#pending.set(key, page);
    if (after !== 'now') {
      this.#recent.set(key, page);
      const forget = (): void => {
        if (this.#recent.get(key) === page) this.#recent.delete(key);
      };
      page.then(() => setTimeout(forget, reuseMs).unref(), forget);
    }
    return page;
  }
}

import type { IncomingMessage } from 'node:http';
import { readFeed, type OutboxEvent } from '@tidings/outbox';
import { AccessDeniedError } from '@tidings/relays/sse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { publish } from '@tidings/outbox';
import { requestedTopics, resolveScope, scope } from '../src/feed/scope.js';

const request = {} as IncomingMessage;

describe('feed scopes', () => {
  it('narrow the topics a client asks for to those the hook allows', async () => {
    const allowed = (topics: string[] | undefined) => () => ({ topics });
    const narrowed = async (asked: string[] | undefined, granted: string[] | undefined) =>
      (await resolveScope(allowed(granted), request, asked)).topics;
    expect(await narrowed(['orders.*'], undefined)).toEqual(['orders.*']);
    expect(await narrowed(undefined, ['orders.*'])).toEqual(['orders.*']);
    expect(await narrowed(['orders.*'], ['orders.created', 'billing.*'])).toEqual(['orders.created']);
    expect(await narrowed(['orders.created', 'billing.paid'], ['orders.*'])).toEqual(['orders.created']);
    expect(await narrowed(['*'], ['a.*', 'b'])).toEqual(['a.*', 'b']);
    expect(await narrowed(['orders.eu.*'], ['orders.*'])).toEqual(['orders.eu.*']);
    await expect(narrowed(['billing.*'], ['orders.*'])).rejects.toBeInstanceOf(AccessDeniedError);
  });

  it('refuse malformed topic lists and hooks that return something other than a scope or false', async () => {
    expect(() => requestedTopics(new URLSearchParams('topics=a b'))).toThrow(/not a topic name/);
    expect(() => requestedTopics(new URLSearchParams('topics=,'))).toThrow(/is empty/);
    expect(requestedTopics(new URLSearchParams('topics=a,b.*&topics=c'))).toEqual(['a', 'b.*', 'c']);
    await expect(resolveScope(() => false, request, undefined)).rejects.toMatchObject({ status: 403 });
    await expect(resolveScope((() => undefined) as never, request, undefined)).rejects.toThrow(/scope object or false/);
    expect(() => scope('', undefined)).toThrow(/non-empty/);
  });

  it('give scopes that select the same events the same key', () => {
    expect(scope('t', ['b', 'a', 'a']).key).toBe(scope('t', ['a', 'b']).key);
    expect(scope('t', undefined).key).not.toBe(scope(undefined, undefined).key);
  });
});

describe('the in-memory scope match used for waiting connections', () => {
  let outbox: TestOutbox;
  let all: OutboxEvent[];

  beforeAll(async () => {
    outbox = await freshOutbox('feed_scope');
    const topics = ['orders.created', 'orders.eu.paid', 'orders', 'orders_x', 'ordersx', 'billing.paid', 'a_b', 'axb'];
    const tenants = [null, 'acme', 'globex'];
    await inTransaction(outbox.pool, (client) =>
      publish(client, topics.flatMap((topic) => tenants.map((tenant) => ({ topic, tenant, payload: null }))), { schema: outbox.schema }),
    );
    all = (await readFeed(outbox.db, outbox.schema, { after: 'start', limit: 1_000 })).events;
  });
  afterAll(async () => {
    await outbox.close();
  });

  it('selects exactly what the SQL read selects, for every tenant and topic pattern', async () => {
    const patterns = [undefined, ['orders.*'], ['orders'], ['orders*'], ['a_b'], ['a_*'], ['a*'], ['orders_*'], ['*'], ['billing.paid', 'orders.eu.*']];
    for (const tenant of [undefined, 'acme', 'globex', 'nobody']) {
      for (const topics of patterns) {
        const chosen = scope(tenant, topics);
        const bySql = (await readFeed(outbox.db, outbox.schema, { after: 'start', limit: 1_000, tenant, topics })).events.map((e) => e.eventId);
        const inMemory = all.filter((event) => chosen.matches(event)).map((e) => e.eventId);
        expect(inMemory, `tenant ${tenant}, topics ${JSON.stringify(topics)}`).toEqual(bySql);
      }
    }
  });
});

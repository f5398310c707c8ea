import { migrateWebhooks, webhookEndpoints } from '@tidings/relays/webhook';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';

describe('webhook endpoint ids', () => {
  let outbox: TestOutbox;
  beforeAll(async () => {
    outbox = await freshOutbox('webhook_ids');
    await migrateWebhooks(outbox.db, { schema: outbox.schema });
  });
  afterAll(() => outbox.close());

  it('list in creation order even when many endpoints are created within one millisecond', async () => {
    const endpoints = webhookEndpoints({ schema: outbox.schema, addressPolicy: { allow: ['127.0.0.1'] } }).forTenant('burst');
    // Each create() makes its id synchronously, in call order, so these ids share a few milliseconds.
    const created = await Promise.all(Array.from({ length: 200 }, () => endpoints.create(outbox.db, { url: 'http://127.0.0.1:9/hooks' })));
    const listed = [];
    for (let page = await endpoints.list(outbox.db, { limit: 30 }); page.length > 0; page = await endpoints.list(outbox.db, { limit: 30, after: page.at(-1)!.id })) {
      listed.push(...page);
    }
    expect(listed.map((e) => e.id)).toEqual(created.map((e) => e.id));
  });
});

import { SchemaMissingError } from '@tidings/outbox';
import {
  EndpointNotFoundError,
  InvalidEndpointError,
  migrateWebhooks,
  startWebhookDispatcher,
  webhookEndpoints,
  webhookRelayName,
  type WebhookEndpoints,
} from '@tidings/relays/webhook';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitUntil } from '../../../test/support/check.ts';
import { freshOutbox, inTransaction, type TestOutbox } from '../../../test/support/db.ts';
import { testKeyring } from '../../../test/support/secret-key.ts';

describe('the webhook endpoint registry', () => {
  let outbox: TestOutbox;
  let endpoints: WebhookEndpoints;
  const url = 'http://127.0.0.1:9/hooks';

  beforeAll(async () => {
    outbox = await freshOutbox('webhook_endpoints');
    expect((await migrateWebhooks(outbox.db, { schema: outbox.schema })).applied).toEqual(['0001_webhook_endpoints.sql', '0002_encrypted_secrets.sql']);
    endpoints = webhookEndpoints({ schema: outbox.schema, addressPolicy: { allow: ['127.0.0.1'] }, keyring: testKeyring });
  });
  afterAll(() => outbox.close());

  it('says to run migrateWebhooks() when the registry tables are missing', async () => {
    const bare = await freshOutbox('webhook_unmigrated');
    try {
      const error = await webhookEndpoints({ schema: bare.schema }).list(bare.db).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SchemaMissingError);
      expect((error as Error).message).toContain('migrateWebhooks()');
      await expect(startWebhookDispatcher({ database: bare.db, schema: bare.schema, keyring: testKeyring })).rejects.toThrow(/run migrate\(\) and migrateWebhooks\(\) first/);
    } finally {
      await bare.close();
    }
  });

  it('migrates once: running the migration again changes nothing', async () => {
    expect((await migrateWebhooks(outbox.db, { schema: outbox.schema })).applied).toEqual([]);
  });

  it('creates an endpoint with a fresh whsec_ secret, enabled, healthy, and with its relay cursors in place', async () => {
    const created = await endpoints.create(outbox.db, { url, topics: ['orders.*', 'invoices.paid'], description: 'CRM', metadata: { owner: 'team-a' } });
    expect(created).toMatchObject({
      url,
      topics: ['orders.*', 'invoices.paid'],
      tenant: null,
      description: 'CRM',
      metadata: { owner: 'team-a' },
      enabled: true,
      disabled: null,
      failingSince: null,
      lastError: null,
      version: 1,
    });
    expect(created.id).toMatch(/^ep_[0-9A-HJKMNP-TV-Z]{26}$/);
    expect(created.secret).toMatch(/^whsec_/);
    expect(await endpoints.secrets(outbox.db, created.id)).toEqual([{ secret: created.secret, expiresAt: null }]);
    const { rows } = await outbox.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM "${outbox.schema}".relay_partitions WHERE relay = $1`, [webhookRelayName(created.id)]);
    expect(rows[0]!.n).toBe(16);
    const { secret: _secret, ...stored } = created;
    expect(await endpoints.get(outbox.db, created.id)).toEqual(stored);
  });

  it("creates nothing when the caller's transaction rolls back", async () => {
    let id = '';
    await expect(
      inTransaction(outbox.pool, async (client) => {
        id = (await endpoints.create(client, { url })).id;
        throw new Error('business failure');
      }),
    ).rejects.toThrow('business failure');
    expect(await endpoints.get(outbox.db, id)).toBeUndefined();
  });

  it('refuses bad input with the field at fault, before writing anything', async () => {
    const before = (await endpoints.list(outbox.db, { limit: 1000 })).length;
    const bad: Array<[Parameters<WebhookEndpoints['create']>[1], string]> = [
      [{ url: 'not a url' }, 'url'],
      [{ url: `${url}#fragment` }, 'url'],
      [{ url, topics: [] }, 'topics'],
      [{ url, topics: ['orders created'] }, 'topics'],
      [{ url, topics: ['orders.*.x*'] }, 'topics'],
      [{ url, tenant: '' }, 'tenant'],
      [{ url, description: 'x'.repeat(1001) }, 'description'],
      [{ url, metadata: [] as never }, 'metadata'],
      [{ url, secret: 'whsec_short' }, 'secret'],
    ];
    for (const [input, field] of bad) {
      const error = await endpoints.create(outbox.db, input).catch((e: unknown) => e);
      expect(error, JSON.stringify(input).slice(0, 80)).toBeInstanceOf(InvalidEndpointError);
      expect((error as InvalidEndpointError).field).toBe(field);
    }
    expect((await endpoints.list(outbox.db, { limit: 1000 })).length).toBe(before);
  });

  it('updates URL, topics, description and metadata, bumping the version and clearing the failing run on a new URL', async () => {
    const { id } = await endpoints.create(outbox.db, { url });
    await outbox.db.query(`UPDATE "${outbox.schema}".webhook_endpoints SET failing_since = now() WHERE id = $1`, [id]);
    const topicsOnly = await endpoints.update(outbox.db, id, { topics: ['a.*'] });
    expect(topicsOnly).toMatchObject({ topics: ['a.*'], version: 2 });
    expect(topicsOnly.failingSince).not.toBeNull();
    const moved = await endpoints.update(outbox.db, id, { url: 'http://127.0.0.1:10/v2', topics: null, description: 'v2', metadata: { n: 1 } });
    expect(moved).toMatchObject({ url: 'http://127.0.0.1:10/v2', topics: null, description: 'v2', metadata: { n: 1 }, version: 3, failingSince: null });
    expect(await endpoints.update(outbox.db, id, {})).toMatchObject({ version: 3 });
    await expect(endpoints.update(outbox.db, 'ep_missing', { description: 'x' })).rejects.toThrow(EndpointNotFoundError);
  });

  it('disables and re-enables an endpoint, recording who disabled it and why', async () => {
    const { id } = await endpoints.create(outbox.db, { url });
    const disabled = await endpoints.disable(outbox.db, id, 'customer asked');
    expect(disabled.enabled).toBe(false);
    expect(disabled.disabled).toMatchObject({ reason: 'manual', detail: 'customer asked' });
    expect(disabled.disabled!.at).toBeInstanceOf(Date);
    expect(await endpoints.enable(outbox.db, id)).toMatchObject({ enabled: true, disabled: null });
  });

  it('rotates the secret: the old one keeps signing until its grace period ends, a grace of 0 revokes it', async () => {
    const { id, secret: first } = await endpoints.create(outbox.db, { url });
    const before = Date.now();
    const { secret: second, previousValidUntil } = await endpoints.rotateSecret(outbox.db, id, { gracePeriodMs: 3_600_000 });
    expect(second).not.toBe(first);
    expect(previousValidUntil!.getTime()).toBeGreaterThanOrEqual(before + 3_599_000);
    expect(await endpoints.secrets(outbox.db, id)).toEqual([
      { secret: second, expiresAt: null },
      { secret: first, expiresAt: previousValidUntil },
    ]);
    const { secret: third } = await endpoints.rotateSecret(outbox.db, id, { gracePeriodMs: 0 });
    expect((await endpoints.secrets(outbox.db, id)).map((s) => s.secret)).toEqual([third]);
    await expect(endpoints.rotateSecret(outbox.db, id, { secret: third })).rejects.toThrow(/already one of the endpoint's secrets/);
    await expect(endpoints.rotateSecret(outbox.db, 'ep_missing')).rejects.toThrow(EndpointNotFoundError);
  });

  it("limits a tenant's registry to that tenant's endpoints, and reports other tenants' as not found", async () => {
    const acme = endpoints.forTenant('acme');
    const globex = endpoints.forTenant('globex');
    const mine = await acme.create(outbox.db, { url });
    expect(mine.tenant).toBe('acme');
    await expect(acme.create(outbox.db, { url, tenant: 'globex' })).rejects.toThrow(/differs from the registry's tenant "acme"/);
    expect(await globex.get(outbox.db, mine.id)).toBeUndefined();
    await expect(globex.update(outbox.db, mine.id, { description: 'hijack' })).rejects.toThrow(EndpointNotFoundError);
    await expect(globex.rotateSecret(outbox.db, mine.id)).rejects.toThrow(EndpointNotFoundError);
    await expect(globex.secrets(outbox.db, mine.id)).rejects.toThrow(EndpointNotFoundError);
    expect(await globex.remove(outbox.db, mine.id)).toBe(false);
    expect((await acme.list(outbox.db)).map((e) => e.id)).toEqual([mine.id]);
    expect((await endpoints.get(outbox.db, mine.id))!.description).toBe('');
  });

  it('lists endpoints in creation order, a page at a time', async () => {
    const scoped = endpoints.forTenant('paging');
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await scoped.create(outbox.db, { url })).id);
    const first = await scoped.list(outbox.db, { limit: 2 });
    const rest = await scoped.list(outbox.db, { after: first.at(-1)!.id });
    expect([...first, ...rest].map((e) => e.id)).toEqual(ids);
  });

  it('removes an endpoint with its secrets, and tells running dispatchers about every change', async () => {
    const heard: string[] = [];
    const unlisten = await outbox.db.listen(`${outbox.schema}_webhooks`, (payload) => heard.push(payload));
    try {
      const { id } = await endpoints.create(outbox.db, { url });
      await endpoints.update(outbox.db, id, { description: 'x' });
      await endpoints.rotateSecret(outbox.db, id);
      await endpoints.disable(outbox.db, id);
      expect(await endpoints.remove(outbox.db, id)).toBe(true);
      expect(await endpoints.remove(outbox.db, id)).toBe(false);
      const { rows } = await outbox.db.query(`SELECT 1 FROM "${outbox.schema}".webhook_secrets WHERE endpoint_id = $1`, [id]);
      expect(rows).toEqual([]);
      await waitUntil('five notifications arrived', async () => heard.filter((p) => p === id).length === 5 || undefined, 5_000);
    } finally {
      await unlisten();
    }
  });
});

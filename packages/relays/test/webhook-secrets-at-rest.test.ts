import { type Database, type Executor } from '@tidings/outbox';
import { applyMigrations } from '@tidings/outbox/internal';
import {
  generateSecretKey,
  migrateWebhooks,
  MissingSecretKeyError,
  rotateWebhookSecretKey,
  SecretDecryptionError,
  secretKeyring,
  startWebhookDispatcher,
  webhookEndpoints,
} from '@tidings/relays/webhook';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { secretDigest } from '../src/webhook/secret-keyring.js';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';
import { testKeyring } from '../../../test/support/secret-key.ts';

const allow = { allow: ['127.0.0.1'] };
const url = 'http://127.0.0.1:9/hooks';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function outbox(label: string, webhooks = true): Promise<TestOutbox> {
  const created = await freshOutbox(label);
  cleanups.push(() => created.close());
  if (webhooks) await migrateWebhooks(created.db, { schema: created.schema });
  return created;
}

/** A database handle that records every parameter sent to PostgreSQL, in transactions too. */
function recording(db: Database): Database & { readonly params: unknown[] } {
  const params: unknown[] = [];
  const record = (executor: Executor): Executor => ({
    query(text, values = []) {
      params.push(...values);
      return executor.query(text, values);
    },
  });
  return {
    params,
    ...record(db),
    transaction: (fn) => db.transaction((trx) => fn(record(trx))),
    listen: (channel, onNotify) => db.listen(channel, onNotify),
  };
}

/** Every way a secret could be written down: as given, and its base64 body alone. */
function forms(secret: string): string[] {
  return [secret, secret.slice('whsec_'.length)];
}

async function storedText(o: TestOutbox): Promise<string> {
  const { rows } = await o.db.query<{ row: string }>(`SELECT row_to_json(w)::text AS row FROM "${o.schema}".webhook_secrets w`);
  return rows.map((r) => r.row).join('\n');
}

describe('webhook signing secrets at rest', () => {
  it('are sent to and stored in PostgreSQL only as ciphertext under the key id, and read back decrypted', async () => {
    const o = await outbox('secrets_rest');
    const endpoints = webhookEndpoints({ schema: o.schema, addressPolicy: allow, keyring: testKeyring });
    const db = recording(o.db);
    const created = await endpoints.create(db, { url });
    const rotated = await endpoints.rotateSecret(db, created.id, { gracePeriodMs: 3_600_000 });
    const chosen = 'whsec_' + Buffer.alloc(32, 7).toString('base64');
    const second = await endpoints.create(db, { url, secret: chosen });

    for (const secret of [created.secret, rotated.secret, chosen]) {
      for (const form of forms(secret)) {
        expect(db.params.filter((p) => typeof p === 'string' && p.includes(form)), `a parameter carried ${form}`).toEqual([]);
        expect(await storedText(o)).not.toContain(form);
      }
    }
    const { rows } = await o.db.query<{ endpoint_id: string; secret: string | null; key_id: string; nonce: string; ciphertext: string; digest: string }>(
      `SELECT endpoint_id, secret, key_id, nonce, ciphertext, digest FROM "${o.schema}".webhook_secrets ORDER BY endpoint_id, created_at`,
    );
    expect(rows).toHaveLength(3);
    for (const row of rows) {
      expect(row.secret).toBeNull();
      expect(row.key_id).toBe(testKeyring.currentKeyId);
      expect(Buffer.from(row.nonce, 'base64')).toHaveLength(12);
      expect(Buffer.from(row.ciphertext, 'base64').length).toBe('whsec_'.length + 44 + 16); // the secret's text plus the GCM tag
    }
    expect(rows.find((r) => r.endpoint_id === second.id)!.digest).toBe(secretDigest(second.id, chosen));

    expect((await endpoints.secrets(o.db, created.id)).map((s) => s.secret)).toEqual([rotated.secret, created.secret]);
    expect(await endpoints.secrets(o.db, second.id)).toEqual([{ secret: chosen, expiresAt: null }]);
    await expect(endpoints.rotateSecret(o.db, second.id, { secret: chosen })).rejects.toThrow(/already one of the endpoint's secrets/);
  });

  it('fail clearly with a wrong key, a tampered ciphertext, or a ciphertext copied to another endpoint', async () => {
    const o = await outbox('secrets_wrong');
    const endpoints = webhookEndpoints({ schema: o.schema, addressPolicy: allow, keyring: testKeyring });
    const a = await endpoints.create(o.db, { url });
    const b = await endpoints.create(o.db, { url });

    const stranger = webhookEndpoints({ schema: o.schema, keyring: secretKeyring({ current: generateSecretKey() }) });
    const unknown = await stranger.secrets(o.db, a.id).catch((e: unknown) => e);
    expect(unknown).toBeInstanceOf(SecretDecryptionError);
    expect(unknown).toMatchObject({ reason: 'unknown-key', endpointId: a.id, keyId: testKeyring.currentKeyId });
    expect((unknown as Error).message).toMatch(/not in the keyring .*TIDINGS_SECRET_KEY_OLD/);

    // b's row now holds a's ciphertext: the associated data (the endpoint id) no longer matches.
    await o.db.query(
      `UPDATE "${o.schema}".webhook_secrets SET nonce = a.nonce, ciphertext = a.ciphertext
       FROM (SELECT nonce, ciphertext FROM "${o.schema}".webhook_secrets WHERE endpoint_id = $1) a WHERE endpoint_id = $2`,
      [a.id, b.id],
    );
    const copied = await endpoints.secrets(o.db, b.id).catch((e: unknown) => e);
    expect(copied).toMatchObject({ name: 'SecretDecryptionError', reason: 'authentication', endpointId: b.id });
    expect((copied as Error).message).toMatch(/does not decrypt/);

    await o.db.query(`UPDATE "${o.schema}".webhook_secrets SET ciphertext = translate(ciphertext, 'ABCabc', 'BCAbca') WHERE endpoint_id = $1`, [a.id]);
    await expect(endpoints.secrets(o.db, a.id)).rejects.toMatchObject({ reason: 'authentication' });
  });

  it('need a key: without one, creating an endpoint or starting a dispatcher says how to set it and writes nothing', async () => {
    expect(process.env.TIDINGS_SECRET_KEY).toBeUndefined();
    const o = await outbox('secrets_nokey');
    const endpoints = webhookEndpoints({ schema: o.schema, addressPolicy: allow });
    const error = await endpoints.create(o.db, { url }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MissingSecretKeyError);
    expect((error as Error).message).toMatch(/cannot create a webhook endpoint: .*Set TIDINGS_SECRET_KEY to 32 random bytes in base64 .*openssl rand -base64 32/);
    expect(await endpoints.list(o.db)).toEqual([]);
    await expect(startWebhookDispatcher({ database: o.db, schema: o.schema })).rejects.toThrow(/cannot deliver webhooks: .*TIDINGS_SECRET_KEY/);
    expect(() => secretKeyring({ current: 'c2hvcnQ=' })).toThrow(/TIDINGS_SECRET_KEY must encode 32 bytes; this one encodes 5/);
  });

  it('are re-encrypted under a new key by a key rotation, which refuses to start while a key in use is missing', async () => {
    const o = await outbox('secrets_rotate');
    const before = webhookEndpoints({ schema: o.schema, addressPolicy: allow, keyring: testKeyring });
    const secrets = new Map<string, string[]>();
    for (let i = 0; i < 3; i++) {
      const { id, secret } = await before.create(o.db, { url });
      secrets.set(id, [secret]);
    }
    const [first] = secrets.keys();
    secrets.get(first!)!.unshift((await before.rotateSecret(o.db, first!)).secret);

    const newKey = generateSecretKey();
    const lacking = secretKeyring({ current: newKey });
    await expect(rotateWebhookSecretKey(o.db, { schema: o.schema, keyring: lacking })).rejects.toThrow(
      new RegExp(`key id ${testKeyring.currentKeyId} \\(4 secrets\\), which is not in the keyring`),
    );
    expect(await storedText(o)).not.toContain(lacking.currentKeyId);

    const rotating = secretKeyring({ current: newKey, old: [Buffer.from('dGlkaW5ncyB0ZXN0IGtleSwgMzIgYnl0ZXMgbG9uZyE=', 'base64')] });
    const db = recording(o.db);
    expect(await rotateWebhookSecretKey(db, { schema: o.schema, keyring: rotating })).toEqual({ keyId: lacking.currentKeyId, encrypted: 0, reencrypted: 4 });
    for (const form of [...secrets.values()].flat().flatMap(forms)) {
      expect(db.params.filter((p) => typeof p === 'string' && p.includes(form))).toEqual([]);
    }
    const { rows } = await o.db.query<{ key_id: string }>(`SELECT DISTINCT key_id FROM "${o.schema}".webhook_secrets`);
    expect(rows).toEqual([{ key_id: lacking.currentKeyId }]);

    const after = webhookEndpoints({ schema: o.schema, keyring: lacking });
    for (const [id, expected] of secrets) expect((await after.secrets(o.db, id)).map((s) => s.secret)).toEqual(expected);
    await expect(before.secrets(o.db, first!)).rejects.toMatchObject({ reason: 'unknown-key' });
    expect(await rotateWebhookSecretKey(o.db, { schema: o.schema, keyring: lacking })).toEqual({ keyId: lacking.currentKeyId, encrypted: 0, reencrypted: 0 });
  });

  it('left in plaintext by an older version are encrypted by migrateWebhooks once a key is set', async () => {
    const o = await outbox('secrets_upgrade', false);
    // The registry as the version before encryption created it: migration 0001 only.
    const dir = await mkdtemp(join(tmpdir(), 'tidings-webhook-0001-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    await copyFile(new URL('../migrations/webhook/0001_webhook_endpoints.sql', import.meta.url), join(dir, '0001_webhook_endpoints.sql'));
    await applyMigrations(o.db, o.schema, { component: 'webhook', folder: pathToFileURL(`${dir}/`) });
    const old = [
      ['ep_OLD1', 'whsec_' + Buffer.alloc(32, 1).toString('base64')],
      ['ep_OLD2', 'whsec_' + Buffer.alloc(24, 2).toString('base64')],
    ] as const;
    for (const [id, secret] of old) {
      await o.db.query(`INSERT INTO "${o.schema}".webhook_endpoints (id, url) VALUES ($1, $2)`, [id, url]);
      await o.db.query(`INSERT INTO "${o.schema}".webhook_secrets (endpoint_id, secret) VALUES ($1, $2)`, [id, secret]);
    }

    const refused = await migrateWebhooks(o.db, { schema: o.schema }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(MissingSecretKeyError);
    expect((refused as Error).message).toMatch(/cannot encrypt the 2 webhook signing secrets stored in plaintext by an older version: .*TIDINGS_SECRET_KEY/);

    const db = recording(o.db);
    expect(await migrateWebhooks(db, { schema: o.schema, keyring: testKeyring })).toMatchObject({ applied: [], encryptedSecrets: 2 });
    for (const [, secret] of old) {
      for (const form of forms(secret)) {
        expect(db.params.filter((p) => typeof p === 'string' && p.includes(form))).toEqual([]);
        expect(await storedText(o)).not.toContain(form);
      }
    }
    const { rows } = await o.db.query<{ endpoint_id: string; digest: string }>(`SELECT endpoint_id, digest FROM "${o.schema}".webhook_secrets ORDER BY endpoint_id`);
    expect(rows).toEqual(old.map(([id, secret]) => ({ endpoint_id: id, digest: secretDigest(id, secret) })));
    const endpoints = webhookEndpoints({ schema: o.schema, keyring: testKeyring });
    for (const [id, secret] of old) expect(await endpoints.secrets(o.db, id)).toEqual([{ secret, expiresAt: null }]);
    expect(await migrateWebhooks(o.db, { schema: o.schema })).toMatchObject({ applied: [], encryptedSecrets: 0 });
  });
});

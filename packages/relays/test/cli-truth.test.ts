import { randomBytes } from 'node:crypto';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { publish } from '@tidings/outbox';
import { generateSecretKey, secretKeyring } from '@tidings/relays/webhook';
import { inTransaction } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { runTidings, type CliOptions, type CliRun } from '../../../test/support/cli.ts';

/** Runs the `tidings` command as a user would, without TIDINGS_SECRET_KEY unless `env` sets it. */
const tidings = (args: string[], options: CliOptions = {}): Promise<CliRun> => runTidings(args, { ...options, unset: ['TIDINGS_SECRET_KEY', 'TIDINGS_SECRET_KEY_OLD'] });

const temps: string[] = [];
async function tempDir(label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `tidings-${label}-`));
  temps.push(dir);
  return dir;
}
async function configFile(config: unknown): Promise<string> {
  const file = join(await tempDir('config'), 'tidings.config.json');
  await writeFile(file, JSON.stringify(config));
  return file;
}

const schemas: string[] = [];
function freshSchema(): string[] {
  const schema = `t_cli_truth_${randomBytes(3).toString('hex')}`;
  schemas.push(schema);
  return ['--database', services.postgres, '--schema', schema];
}
afterAll(async () => {
  const client = new pg.Client(services.postgres);
  await client.connect();
  for (const schema of schemas) await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await client.end();
  for (const dir of temps) await rm(dir, { recursive: true, force: true });
});

const rabbit = { type: 'rabbitmq', url: 'amqp://guest:guest@127.0.0.1:5672' };

describe('the tidings command tells the truth', () => {
  it('refuses an unknown config key at every level with a "did you mean" hint and exit 2, before starting anything', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ relay: [] }, /the top level has an unknown key "relay" \(did you mean "relays"\?\)/],
      [{ relays: [{ name: 'r', topic: ['orders.*'], transport: rabbit }] }, /relays\[0\] has an unknown key "topic" \(did you mean "topics"\?\); known keys: name, transport, topics/],
      [{ relays: [{ name: 'r', tenent: 'acme', transport: rabbit }] }, /relays\[0\] has an unknown key "tenent" \(did you mean "tenant"\?\)/],
      [{ relays: [{ name: 'r', transport: { type: 'rabbitmq', ulr: 'amqp://127.0.0.1' } }] }, /relays\[0\]\.transport has an unknown key "ulr" \(did you mean "url"\?\)/],
      [{ relays: [{ name: 'r', transport: { type: 'kafka', brokers: ['127.0.0.1:9092'], client: { clientID: 'x' } } }] }, /relays\[0\]\.transport\.client has an unknown key "clientID" \(did you mean "clientId"\?\)/],
      [{ relays: [{ name: 'r', retry: { retrys: 3 }, transport: rabbit }] }, /relays\[0\]\.retry has an unknown key "retrys" \(did you mean "retries"\?\)/],
      [{ webhooks: { sendTimeoutMS: 5_000 } }, /webhooks has an unknown key "sendTimeoutMS" \(did you mean "sendTimeoutMs"\?\)/],
      [{ webhooks: { relay: { pollInterval: 100 } } }, /webhooks\.relay has an unknown key "pollInterval" \(did you mean "pollIntervalMs"\?\)/],
      [{ relays: [{ name: 'r', transport: { ...rabbit, cloudEvents: { sorce: '/orders' } } }] }, /relays\[0\]\.transport\.cloudEvents has an unknown key "sorce" \(did you mean "source"\?\)/],
      [{ webhooks: { cloudEvents: { source: '' } } }, /webhooks\.cloudEvents\.source must be a URI reference naming the producer, e\.g\. "\/orders" \(a non-empty string\), got ""/],
      [{ relays: [{ name: 'r', batchSize: '500', transport: rabbit }] }, /relays\[0\]\.batchSize must be a whole number of at least 1, got "500"/],
      [{ relays: [{ name: 'r', topics: 'orders.*', transport: rabbit }] }, /relays\[0\]\.topics must be a list of strings .*got "orders\.\*"/],
    ];
    for (const [config, message] of cases) {
      const run = await tidings(['relay', '--config', await configFile(config)]);
      expect(run.code, JSON.stringify(config)).toBe(2);
      expect(run.stderr, JSON.stringify(config)).toMatch(message);
      expect(run.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it('exits 2 when a transport or relay factory refuses a value of the config file, naming the relay', async () => {
    const pgFlags = freshSchema();
    expect((await tidings(['migrate', ...pgFlags])).code).toBe(0);
    const cases: Array<[unknown, RegExp]> = [
      [{ relays: [{ name: 'r', transport: { type: 'rabbitmq', url: 'http://127.0.0.1:5672' } }] }, /relays\[0\] \(r\): invalid option "url": expected an amqp:\/\/ or amqps:\/\/ URL/],
      [{ relays: [{ name: 'bad name!', transport: rabbit }] }, /relays\[0\] \(bad name!\): invalid option "name"/],
    ];
    for (const [config, message] of cases) {
      const run = await tidings(['relay', ...pgFlags, '--config', await configFile(config)]);
      expect(run.code, run.stdout + run.stderr).toBe(2);
      expect(run.stderr).toMatch(message);
    }
  });

  it('says replay of a relay that never ran moved nothing because there is no such relay, with exit 2', async () => {
    const pgFlags = freshSchema();
    expect((await tidings(['migrate', ...pgFlags])).code).toBe(0);
    const none = await tidings(['replay', ...pgFlags, '--relay', 'no-such-relay', '--from', '2026-01-01T00:00:00Z']);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no relay named "no-such-relay" has run on this database; no relay has run yet/);
    const added = await tidings(['endpoints', 'add', ...pgFlags, '--url', 'http://127.0.0.1:9/hooks', '--allow', '127.0.0.1/32'], { env: { TIDINGS_SECRET_KEY: generateSecretKey() } });
    const id = /endpoint (ep_\w+)/.exec(added.stdout)![1]!;
    const typo = await tidings(['replay', ...pgFlags, '--relay', `webhook:${id}x`, '--from', '2026-01-01T00:00:00Z']);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain(`(did you mean "webhook:${id}"?); relays: webhook:${id}`);
    expect(typo.stdout).not.toMatch(/moved/);
  });

  it("counts as a webhook endpoint's lag in `tidings status` only the events of its topics and tenant", async () => {
    const pgFlags = freshSchema();
    expect((await tidings(['migrate', ...pgFlags])).code).toBe(0);
    const key = { TIDINGS_SECRET_KEY: generateSecretKey() };
    const added = await tidings(['endpoints', 'add', ...pgFlags, '--url', 'http://127.0.0.1:9/hooks', '--allow', '127.0.0.1/32', '--topic', 'orders.*', '--tenant', 'acme'], { env: key });
    expect(added.code, added.stderr).toBe(0);
    const id = /endpoint (ep_\w+)/.exec(added.stdout)![1]!;
    const pool = new pg.Pool({ connectionString: services.postgres, max: 1 });
    try {
      await inTransaction(pool, (client) =>
        publish(
          client,
          [
            ...Array.from({ length: 9 }, (_, i) => ({ topic: 'orders.created', key: `o${i}`, payload: { i }, tenant: 'acme' })),
            ...Array.from({ length: 10 }, (_, i) => ({ topic: 'orders.created', key: `g${i}`, payload: { i }, tenant: 'globex' })),
            ...Array.from({ length: 20 }, (_, i) => ({ topic: 'invoices.paid', key: `i${i}`, payload: { i }, tenant: 'acme' })),
          ],
          { schema: pgFlags[3] },
        ),
      );
    } finally {
      await pool.end();
    }
    const run = await tidings(['status', ...pgFlags, '--json']);
    expect(run.stderr).toBe('');
    const report = JSON.parse(run.stdout) as { relays: Array<{ relay: string; lagEvents: number }> };
    expect(report.relays.map((r) => [r.relay, r.lagEvents])).toEqual([[`webhook:${id}`, 9]]);
  });

  it('takes --database and --schema on `tidings relay`, and says to run `tidings migrate` on a database never migrated', async () => {
    const pgFlags = freshSchema();
    const run = await tidings(['relay', ...pgFlags, '--config', await configFile({ webhooks: true })]);
    expect(run.code).toBe(1);
    expect(run.stdout + run.stderr).toMatch(new RegExp(`the tidings tables in schema "${pgFlags[3]}" of postgres://\\S+ are missing: run \`tidings migrate\``));
    expect(run.stdout + run.stderr).not.toMatch(/relation .* does not exist/);
  });

  it('masks a password containing "@" whole when it names the database', async () => {
    const url = new URL(services.postgres);
    const user = url.username || 'postgres';
    // Written as people write it, the "@"s unescaped: the authority ends at its last "@".
    const raw = `${url.protocol}//${user}:pa@ss@word@${url.host}${url.pathname}`;
    const run = await tidings(['migrate', '--database', raw, '--schema', freshSchema()[3]!]);
    const output = run.stdout + run.stderr;
    expect(output).toContain(`database: ${url.protocol}//${user}:***@${url.host}${url.pathname}`);
    expect(output).not.toMatch(/ss@|word@|pa%40/);
  });

  it('manages endpoints with secrets encrypted under TIDINGS_SECRET_KEY: none without a key, credentials masked, revocation now, key rotation', async () => {
    const pgFlags = freshSchema();
    expect((await tidings(['migrate', ...pgFlags])).code).toBe(0);
    const url = 'http://hook-user:s3cr%40t@127.0.0.1:9/hooks';
    const add = ['endpoints', 'add', ...pgFlags, '--url', url, '--allow', '127.0.0.1/32'];
    const refused = await tidings(add);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/cannot create a webhook endpoint: .*Set TIDINGS_SECRET_KEY to 32 random bytes in base64 \(generate one with `openssl rand -base64 32`/);

    const oldKey = generateSecretKey();
    const added = await tidings(add, { env: { TIDINGS_SECRET_KEY: oldKey } });
    expect(added.code, added.stderr).toBe(0);
    const id = /endpoint (ep_\w+)/.exec(added.stdout)![1]!;
    for (const args of [['list'], ['list', '--json']]) {
      const listed = await tidings(['endpoints', ...args, ...pgFlags]);
      expect(listed.code).toBe(0);
      expect(listed.stdout).toContain('http://***:***@127.0.0.1:9/hooks');
      expect(listed.stdout).not.toMatch(/hook-user|s3cr/);
    }
    expect(added.stdout).not.toMatch(/hook-user|s3cr/);

    const revoked = await tidings(['endpoints', 'rotate-secret', id, ...pgFlags, '--grace-hours', '0'], { env: { TIDINGS_SECRET_KEY: oldKey } });
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toMatch(/new signing secret .*whsec_.*\nthe previous ones are revoked/);
    expect((await tidings(['endpoints', 'rotate-secret', id, ...pgFlags, '--grace-hours=-1'])).stderr).toMatch(/--grace-hours takes a number of at least 0, got "-1"/);

    const newKey = generateSecretKey();
    const lacking = await tidings(['endpoints', 'rotate-key', ...pgFlags], { env: { TIDINGS_SECRET_KEY: newKey } });
    expect(lacking.code).toBe(1);
    expect(lacking.stderr).toMatch(/which is not in the keyring/);
    const rotated = await tidings(['endpoints', 'rotate-key', ...pgFlags], { env: { TIDINGS_SECRET_KEY: newKey, TIDINGS_SECRET_KEY_OLD: oldKey } });
    expect(rotated.code, rotated.stderr).toBe(0);
    const newId = secretKeyring({ current: newKey }).currentKeyId;
    expect(rotated.stdout).toContain(`re-encrypted 2 signing secrets under key id ${newId}`);
    const client = new pg.Client(services.postgres);
    await client.connect();
    try {
      const { rows } = await client.query(`SELECT DISTINCT key_id, secret FROM "${pgFlags[3]}".webhook_secrets`);
      expect(rows).toEqual([{ key_id: newId, secret: null }]);
    } finally {
      await client.end();
    }
  });

  it('keeps the embedded database private: .tidings 0700, its key file 0600, no file readable by others, a loose folder tightened with a warning', async () => {
    const cwd = await tempDir('embedded');
    expect((await tidings(['migrate'], { cwd })).code).toBe(0);
    const added = await tidings(['endpoints', 'add', '--url', 'http://127.0.0.1:9/hooks', '--allow', '127.0.0.1/32'], { cwd });
    expect(added.code, added.stderr).toBe(0);
    expect(added.stderr).toBe('');
    const folder = join(cwd, '.tidings');
    expect((await stat(folder)).mode & 0o777).toBe(0o700);
    expect((await stat(join(folder, 'secret-key'))).mode & 0o777).toBe(0o600);
    expect(await looseEntries(folder)).toEqual([]);
    const firstKey = await readFile(join(folder, 'secret-key'), 'utf8');

    const rotated = await tidings(['endpoints', 'rotate-key'], { cwd });
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(/re-encrypted 1 signing secrets under key id \w+; the new key is in/);
    const secondKey = await readFile(join(folder, 'secret-key'), 'utf8');
    expect(secondKey).not.toBe(firstKey);
    expect(secondKey.split('\n').filter((line) => line !== '' && !line.startsWith('#'))).toHaveLength(1);
    expect((await stat(join(folder, 'secret-key'))).mode & 0o777).toBe(0o600);

    await chmod(folder, 0o777);
    await chmod(join(folder, 'secret-key'), 0o644);
    const listed = await tidings(['endpoints', 'list'], { cwd });
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toMatch(/ep_\w+ {2}http:\/\/127\.0\.0\.1:9\/hooks/);
    expect(listed.stderr).toMatch(/warning: \.tidings was readable or writable by other users \(mode 0777\); tightened it to 0700 and \d+ files and folders in it to owner-only/);
    expect((await stat(folder)).mode & 0o777).toBe(0o700);
    expect(await looseEntries(folder)).toEqual([]);
  }, 240_000);

  it('runs `npx tidings` in a checkout that was never built, and says what to do when it cannot', async () => {
    const bin = fileURLToPath(new URL('../bin/tidings.js', import.meta.url));
    const built = await tempDir('unbuilt');
    await mkdir(join(built, 'bin'));
    await copyFile(bin, join(built, 'bin', 'tidings.js'));
    await symlink(fileURLToPath(new URL('../src', import.meta.url)), join(built, 'src'), 'dir');
    const fromSources = await runTidings(['migrate', '--help'], { script: join(built, 'bin', 'tidings.js'), timeoutMs: 60_000 });
    expect(fromSources.stderr).toBe('');
    expect(fromSources.code).toBe(0);
    expect(fromSources.stdout).toContain('tidings migrate');

    const bare = await tempDir('bare');
    await mkdir(join(bare, 'bin'));
    await copyFile(bin, join(bare, 'bin', 'tidings.js'));
    const missing = await runTidings(['status'], { script: join(bare, 'bin', 'tidings.js'), timeoutMs: 60_000 });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^tidings: the compiled command is missing .*run `npm run build` first/);
    expect(missing.stderr).not.toMatch(/\n\s+at |ERR_MODULE_NOT_FOUND/);
  });
});

/** Files and folders under `dir` that anyone but their owner may read, write or enter. */
async function looseEntries(dir: string): Promise<string[]> {
  const loose: string[] = [];
  for (const entry of await readdir(dir, { recursive: true })) {
    const mode = (await stat(join(dir, entry))).mode & 0o777;
    if (mode & 0o077) loose.push(`${entry} ${mode.toString(8)}`);
  }
  return loose;
}

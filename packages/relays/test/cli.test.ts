import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { generateSecretKey } from '@tidings/relays/webhook';
import { services } from '../../../test/support/env.ts';
import { runTidings } from '../../../test/support/cli.ts';

const schema = `t_cli_${randomBytes(3).toString('hex')}`;
const pg = ['--database', services.postgres, '--schema', schema];
afterAll(async () => {
  const pgModule = await import('pg');
  const client = new pgModule.default.Client(services.postgres);
  await client.connect();
  await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await client.end();
});

describe('the tidings command', () => {
  it('prints help for every command and exits 0', async () => {
    for (const command of ['migrate', 'relay', 'status', 'dead-letters', 'replay', 'endpoints', 'demo']) {
      const run = await runTidings([command, '--help']);
      expect(run.code, command).toBe(0);
      expect(run.stdout, command).toContain(`tidings ${command}`);
    }
  });

  it('answers bad flags and bad config with one clear line and exit 2, never a stack trace', async () => {
    const cases: [string[], RegExp][] = [
      [['nonsense'], /unknown command "nonsense"/],
      [['status', '--bogus'], /Unknown option '--bogus'[\s\S]*tidings status --help/],
      [['replay', '--relay', 'r', '--from', 'yesterday'], /neither an ISO time nor a cursor/],
      [['dead-letters', 'explode'], /needs list, retry or discard, not "explode"/],
      [['relay', '--config', '/nonexistent/tidings.config.json'], /cannot read config .*no such file/],
    ];
    for (const [args, message] of cases) {
      const run = await runTidings(args);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr, args.join(' ')).toMatch(message);
      expect(run.stderr, args.join(' ')).not.toMatch(/\n\s+at /);
    }
    const dir = await mkdtemp(join(tmpdir(), 'tidings-cli-'));
    const config = join(dir, 'tidings.config.json');
    await writeFile(config, JSON.stringify({ relays: [{ name: 'x', transport: { type: 'carrier-pigeon' } }] }));
    const bad = await runTidings(['relay', '--config', config]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/relays\[0\]\.transport\.type must be "rabbitmq" or "kafka", got "carrier-pigeon"/);
  });

  it('migrates, then reports status, dead letters and endpoints against PostgreSQL', async () => {
    const migrated = await runTidings(['migrate', ...pg, '--partitions', '4']);
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(migrated.stdout).toMatch(/outbox: applied 0001_outbox.sql/);
    expect((await runTidings(['migrate', ...pg])).stdout).toMatch(/outbox: up to date/);
    const status = await runTidings(['status', ...pg, '--json']);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ relays: [] });
    expect((await runTidings(['dead-letters', 'list', ...pg])).stdout).toMatch(/no dead letters/);
    const added = await runTidings(['endpoints', 'add', ...pg, '--url', 'http://127.0.0.1:9/hooks', '--allow', '127.0.0.1/32', '--topic', 'orders.*'], {
      env: { TIDINGS_SECRET_KEY: generateSecretKey() },
    });
    expect(added.code, added.stderr).toBe(0);
    expect(added.stdout).toMatch(/signing secret .*whsec_/);
    const refused = await runTidings(['endpoints', 'add', ...pg, '--url', 'http://169.254.169.254/latest'], { env: { TIDINGS_SECRET_KEY: generateSecretKey() } });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/169\.254\.169\.254/);
    expect((await runTidings(['endpoints', 'list', ...pg])).stdout).toMatch(/http:\/\/127\.0\.0\.1:9\/hooks {2}topics=orders\.\*/);
  });

  it('says which schema to migrate when it is missing', async () => {
    const run = await runTidings(['status', '--database', services.postgres, '--schema', 'no_such_schema_here']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/schema "no_such_schema_here" are missing or incomplete; run migrate\(\)/);
  });

  it('runs the demo on the embedded database and reports that the promise held', async () => {
    const run = await runTidings(['demo', '--events', '40', '--duration', '3'], { timeoutMs: 180_000 });
    expect(run.stderr).toBe('');
    expect(run.code, run.stdout).toBe(0);
    expect(run.stdout).toMatch(/duplicates received [1-9]\d*, duplicates applied 0/);
    expect(run.stdout).toMatch(/✓ the promise held/);
  }, 200_000);
});

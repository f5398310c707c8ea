import { migrateInbox } from '@tidings/inbox';
import { runCli } from '@tidings/relays';
import { migrateWebhooks } from '@tidings/relays/webhook';
import fc from 'fast-check';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { freshOutbox, type TestOutbox } from '../../../test/support/db.ts';
import { services } from '../../../test/support/env.ts';
import { testSecretKey } from '../../../test/support/secret-key.ts';

/** Generated cases per property (`FUZZ_RUNS` for more). */
const numRuns = Number(process.env.FUZZ_RUNS ?? 60);

let outbox: TestOutbox;
let folder: string;
const savedKey = process.env.TIDINGS_SECRET_KEY;

beforeAll(async () => {
  outbox = await freshOutbox('cli_fuzz', { partitions: 2 });
  await migrateInbox(outbox.db, { schema: outbox.schema });
  await migrateWebhooks(outbox.db, { schema: outbox.schema });
  folder = await mkdtemp(join(tmpdir(), 'tidings-cli-fuzz-'));
  process.env.TIDINGS_SECRET_KEY = testSecretKey;
});
afterAll(async () => {
  if (savedKey === undefined) delete process.env.TIDINGS_SECRET_KEY;
  else process.env.TIDINGS_SECRET_KEY = savedKey;
  await outbox?.close();
});

/** Runs the CLI in this process, as `npx tidings …` would, and keeps what it printed. */
async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void out.push(args.join(' ')));
  const error = vi.spyOn(console, 'error').mockImplementation((...args: unknown[]) => void err.push(args.join(' ')));
  const write = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => (err.push(String(chunk)), true));
  try {
    const code = await runCli(argv);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    log.mockRestore();
    error.mockRestore();
    write.mockRestore();
  }
}

const stackTrace = /\n\s+at |Error: .*\n.*node:internal/;

const validRelay = { name: 'orders', topics: ['orders.*'], transport: { type: 'rabbitmq', url: services.rabbitmq } };
/** Places in a valid config where a key or a value can go wrong, and the keys known there. */
const places = [
  { path: [], known: ['database', 'schema', 'webhooks', 'relays', 'retention'] },
  { path: ['relays', 0], known: ['name', 'transport', 'topics', 'tenant', 'batchSize', 'pollIntervalMs', 'leaseTtlMs', 'retry', 'onFailure', 'startFrom'] },
  { path: ['relays', 0, 'retry'], known: ['retries', 'minDelayMs', 'maxDelayMs', 'factor'] },
  { path: ['relays', 0, 'transport'], known: [] as string[] },
  { path: ['webhooks'], known: [] as string[] },
  { path: ['retention'], known: ['retentionMs', 'deadLetterRetentionMs', 'batchSize', 'intervalMs'] },
] as const;
const wrongValues = [
  [['relays'], 'orders'],
  [['relays', 0, 'name'], 5],
  [['relays', 0, 'topics'], 'orders.*'],
  [['relays', 0, 'batchSize'], '500'],
  [['relays', 0, 'batchSize'], -1],
  [['relays', 0, 'retry'], []],
  [['relays', 0, 'onFailure'], 'dead-letter'],
  [['relays', 0, 'transport', 'type'], 'carrier-pigeon'],
  [['relays', 0, 'tenant'], ''],
  [['webhooks'], 'yes'],
  [['schema'], 42],
  [['retention'], true],
  [['retention', 'intervalMs'], 10],
  [['retention', 'batchSize'], 1_000_000],
  [['retention', 'deadLetterRetentionMs'], -1],
] as const;

function configWith(change: { unknownKeyAt?: readonly (string | number)[]; key?: string; setAt?: readonly (string | number)[]; value?: unknown }): Record<string, unknown> {
  const config: Record<string, unknown> = { relays: [structuredClone({ ...validRelay, retry: { retries: 3 } })], webhooks: { sendTimeoutMs: 1000 }, retention: { intervalMs: 60_000 } };
  if (change.unknownKeyAt) {
    let at: Record<string | number, unknown> = config;
    for (const step of change.unknownKeyAt) at = at[step] as Record<string | number, unknown>;
    at[change.key!] = 1;
  }
  if (change.setAt) {
    let at: Record<string | number, unknown> = config;
    for (const step of change.setAt.slice(0, -1)) at = at[step] as Record<string | number, unknown>;
    at[change.setAt.at(-1)!] = change.value;
  }
  return config;
}

const identifier = fc.stringMatching(/^[a-zA-Z][a-zA-Z0-9_]{0,12}$/);

describe('fuzzing the tidings command', () => {
  it('refuses every config file with an unknown key or a wrong value: exit 2, one line naming the file, no relay started', { timeout: 300_000 }, async () => {
    let n = 0;
    const broken = fc.oneof(
      fc.record({ place: fc.constantFrom(...places), key: identifier }).filter(({ place, key }) => !(place.known as readonly string[]).includes(key) && key !== 'type' && key !== 'url' && key !== 'sendTimeoutMs')
        .map(({ place, key }) => configWith({ unknownKeyAt: place.path, key })),
      fc.constantFrom(...wrongValues).map(([setAt, value]) => configWith({ setAt, value })),
    );
    await fc.assert(
      fc.asyncProperty(broken, async (config) => {
        const file = join(folder, `config-${++n}.json`);
        await writeFile(file, JSON.stringify(config));
        const run = await cli(['relay', '--config', file, '--database', services.postgres, '--schema', outbox.schema]);
        const said = `${JSON.stringify(config)} -> exit ${run.code}: ${run.err}`;
        expect(run.code, said).toBe(2);
        expect(run.err.trim().split('\n'), said).toHaveLength(1);
        expect(run.err, said).toContain(file);
        expect(run.err, said).not.toMatch(stackTrace);
        expect(run.out, said).not.toMatch(/relay started/);
      }),
      { numRuns },
    );
  });

  it('answers any generated command line with exit 0, 1 or 2 and, when it fails, one clear message without a stack trace', { timeout: 300_000 }, async () => {
    const flagPool = [
      '--relay', 'orders', '--id', '1', 'x', '--from', '2026-01-01T00:00:00Z', '1-1', 'c1-1', 'yesterday', '--json', '--help', '-h', '--grace-hours', '0', '-1',
      '--url', 'http://127.0.0.1:9/hooks', 'ftp://x', '--topics', 'orders.*', '--tenant', 'acme', '--beyond-horizon', '--partitions', '4', '0', '--bogus', '--', '',
      'list', 'retry', 'discard', 'add', 'update', 'disable', 'enable', 'remove', 'rotate-secret', 'ep_0000', '\u0000', 'é',
    ];
    const argv = fc.tuple(fc.constantFrom('status', 'dead-letters', 'replay', 'endpoints', 'migrate', 'nonsense'), fc.array(fc.oneof(fc.constantFrom(...flagPool), fc.string({ maxLength: 12 })), { maxLength: 6 }));
    const codes = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(argv, async ([command, rest]) => {
        const args = [command, ...rest, '--database', services.postgres, '--schema', outbox.schema];
        const run = await cli(args);
        codes.set(run.code, (codes.get(run.code) ?? 0) + 1);
        const said = `${JSON.stringify(args)} -> exit ${run.code}: ${run.err.slice(0, 400)}`;
        expect([0, 1, 2], said).toContain(run.code);
        expect(run.err, said).not.toMatch(stackTrace);
        if (run.code !== 0) expect(run.err.trim().length, said).toBeGreaterThan(10);
      }),
      { numRuns },
    );
    console.log(`cli fuzz: ${numRuns} command lines; exit codes ${JSON.stringify(Object.fromEntries(codes))}`);
    expect(codes.get(2) ?? 0).toBeGreaterThan(0);
  });
});

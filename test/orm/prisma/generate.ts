import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));

/**
 * Generates the Prisma client of schema.prisma into ./generated before the orm project runs.
 * Prisma 7's `prisma-client` generator needs no query engine; the CLI still looks for its schema
 * engine binary (and would download it), so PRISMA_SCHEMA_ENGINE_BINARY points at a stand-in
 * that fails loudly should anything run it.
 */
export default async function setup(): Promise<void> {
  const cli = join(here, '../../../node_modules/prisma/build/index.js');
  try {
    await promisify(execFile)(process.execPath, [cli, 'generate', '--schema', join(here, 'schema.prisma')], {
      env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: join(here, 'no-schema-engine.sh'), PRISMA_HIDE_UPDATE_MESSAGE: '1' },
      timeout: 120_000,
    });
  } catch (error) {
    const { stderr, stdout } = error as { stderr?: string; stdout?: string };
    throw new Error(`prisma generate failed for the orm tests: ${(stderr || stdout || String(error)).trim()}`);
  }
}

/**
 * Deliberately broken variants of tidings that the property suite must catch ("test the tests").
 * `TIDINGS_MUTANT=<name>[,<name>]` selects them for one test run:
 *
 * - `id-cursor`: the relay reads `id > cursor` with no visibility watermark (the sequence-gap bug);
 * - `ack-before-send`: the relay moves its cursor before the transport acknowledged the batch;
 * - `no-dedup`: the inbox checks for a duplicate with a look-up instead of the unique key;
 * - `notify-only`: the relay wakes only on NOTIFY and never polls;
 * - `commit-tag-ignored`: a COMMIT that PostgreSQL answered with ROLLBACK (a handler swallowed a
 *   SQL error) counts as committed, and an aborted transaction is not noticed after a handler;
 * - `outage-dead-letters`: the relay counts an unavailable destination against the event it was
 *   sending, so a long outage makes dead letters and lets later events overtake them;
 * - `no-parking`: a dead letter parks nothing, so its key's later events overtake it;
 * - `xid-order`: relays and feeds read the log in (tx_id, id) order under the visibility watermark,
 *   the order in which transactions got their id (first write), not the order they committed;
 * - `tail-only`: the shared reads of a webhook dispatcher answer a runner behind what the shared
 *   tail holds from the tail anyway, so it skips the events before the tail's start.
 *
 * The shipped code has no mutant in it: each behaviour a mutant replaces is a module that its
 * package imports through its `imports` map (`#read-statement`, `#relay-options`, ...), and a
 * mutant is a module under `packages/<package>/mutants/<name>/` listed there behind the export
 * condition `tidings-mutant-<name>`, inside `tidings-source`. vitest.config.ts resolves with
 * `sourceConditions`, and every process the tests spawn from the sources must be started with
 * `sourceNodeArgs`. How it all fits: test/property/README.md, "Mutants".
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const packagesDir = fileURLToPath(new URL('../../packages', import.meta.url));

/** One module a mutant replaces: its package, the `imports` key, and both files (absolute paths). */
export interface MutantModule {
  readonly mutant: string;
  readonly packageName: string;
  readonly packageDir: string;
  readonly specifier: string;
  readonly real: string;
  readonly replacement: string;
}

type ImportTarget = string | { readonly [condition: string]: ImportTarget };

/** Every module that a mutant replaces, read from the workspace packages' `imports` maps. */
export function mutantModules(): MutantModule[] {
  const found: MutantModule[] = [];
  for (const dir of readdirSync(packagesDir)) {
    const packageDir = join(packagesDir, dir);
    const manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8')) as { name: string; imports?: Record<string, ImportTarget> };
    for (const [specifier, target] of Object.entries(manifest.imports ?? {})) {
      const source = typeof target === 'object' ? target['tidings-source'] : undefined;
      if (typeof source !== 'object') continue;
      for (const [condition, file] of Object.entries(source)) {
        const mutant = /^tidings-mutant-(.+)$/.exec(condition)?.[1];
        if (mutant === undefined || typeof file !== 'string' || typeof source['default'] !== 'string') continue;
        found.push({
          mutant,
          packageName: manifest.name,
          packageDir,
          specifier,
          real: join(packageDir, source['default']),
          replacement: join(packageDir, file),
        });
      }
    }
  }
  return found;
}

/**
 * The mutants `TIDINGS_MUTANT` names (none when it is unset). Throws for a name no package knows,
 * and for two mutants that replace the same module (only one of them would be loaded).
 */
export function selectedMutants(selection = process.env.TIDINGS_MUTANT ?? ''): string[] {
  const names = [...new Set(selection.split(',').map((name) => name.trim()).filter(Boolean))];
  if (names.length === 0) return [];
  const modules = mutantModules();
  const known = [...new Set(modules.map((m) => m.mutant))].sort();
  const unknown = names.filter((name) => !known.includes(name));
  if (unknown.length > 0) throw new Error(`TIDINGS_MUTANT names no mutant: ${unknown.join(', ')}; the mutants are ${known.join(', ')}`);
  const replacedBy = new Map<string, string>();
  for (const m of modules.filter((m) => names.includes(m.mutant))) {
    const at = `${m.packageName} ${m.specifier}`;
    const other = replacedBy.get(at);
    if (other !== undefined) throw new Error(`TIDINGS_MUTANT: ${other} and ${m.mutant} both replace ${at}; run them one at a time`);
    replacedBy.set(at, m.mutant);
  }
  return names;
}

/** The export conditions a test run resolves the workspace packages with: their sources, and the mutants selected. */
export const sourceConditions: readonly string[] = ['tidings-source', ...selectedMutants().map((name) => `tidings-mutant-${name}`)];

/** Node's arguments to run `script` from the TypeScript sources, with the same mutants as this test run. */
export function sourceNodeArgs(script: string): string[] {
  return [...sourceConditions.map((condition) => `--conditions=${condition}`), '--no-warnings', script];
}

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { mutantModules, selectedMutants, sourceNodeArgs } from '../support/mutants.ts';

const modules = mutantModules();
const selected = selectedMutants();
/** Each replaceable module once, with the file this run must load for it. */
const replaceable = [...new Map(modules.map((m) => [`${m.packageDir} ${m.specifier}`, m])).values()].map((m) => ({
  ...m,
  expected: modules.find((other) => other.packageDir === m.packageDir && other.specifier === m.specifier && selected.includes(other.mutant))?.replacement ?? m.real,
}));

describe('test mutants', () => {
  it('every mutant named in the property suite replaces at least one module', () => {
    const named = ['id-cursor', 'ack-before-send', 'no-dedup', 'notify-only', 'commit-tag-ignored', 'outage-dead-letters', 'no-parking', 'xid-order', 'tail-only'];
    expect([...new Set(modules.map((m) => m.mutant))].sort()).toEqual(named.sort());
  });

  it.each(modules)('$mutant replaces $packageName $specifier with a module of the same exports', async ({ real, replacement }) => {
    const [original, mutant] = await Promise.all([import(real), import(replacement)]);
    expect(Object.keys(mutant).sort()).toEqual(Object.keys(original).sort());
  });

  it.each(modules)('$mutant lives outside what $packageName publishes', ({ packageDir, replacement }) => {
    const { files } = JSON.parse(readFileSync(`${packageDir}/package.json`, 'utf8')) as { files: string[] };
    const relative = replacement.slice(packageDir.length + 1);
    expect(relative.startsWith('mutants/')).toBe(true);
    expect(files.filter((entry) => relative.startsWith(`${entry.replace(/\/$/, '')}/`))).toEqual([]);
  });

  // vitest resolves with the same conditions (vitest.config.ts); the mutants' own runs show it.
  it('a process the tests spawn loads, for every replaceable module, the file TIDINGS_MUTANT selects', () => {
    const code = `const { createRequire } = require('node:module');
      const asked = JSON.parse(process.env.ASKED);
      process.stdout.write(JSON.stringify(asked.map(([dir, specifier]) => createRequire(dir + '/package.json').resolve(specifier))));`;
    const asked = replaceable.map((m) => [m.packageDir, m.specifier]);
    const child = spawnSync(process.execPath, sourceNodeArgs('-'), { input: code, encoding: 'utf8', env: { ...process.env, ASKED: JSON.stringify(asked) } });
    expect(child.stderr).toBe('');
    expect(JSON.parse(child.stdout)).toEqual(replaceable.map((m) => m.expected));
  });
});

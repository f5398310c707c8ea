#!/usr/bin/env node
// The `tidings` command of @tidings/relays: runs the compiled CLI, or, in a checkout that has not
// been built yet (`npm install` does not compile), the TypeScript sources on a Node that runs them.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';

const compiled = new URL('../dist/cli/main.js', import.meta.url);
const sources = new URL('../src/cli/main.ts', import.meta.url);

if (existsSync(compiled)) {
  const { main } = await import(compiled.href);
  process.exitCode = await main(process.argv.slice(2));
} else if (existsSync(sources) && process.features?.typescript) {
  const child = spawn(process.execPath, ['--conditions=tidings-source', '--no-warnings', fileURLToPath(sources), ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => {
    process.exitCode = code ?? 128 + (constants.signals[signal] ?? 0);
  });
} else {
  console.error(
    `tidings: the compiled command is missing (${fileURLToPath(compiled)}). In the tidings repository, ` +
      'run `npm run build` first, or `npm run tidings -- <command>` (it runs the sources on the Node the project installs). ' +
      `This Node (${process.version}) cannot run the TypeScript sources itself; Node 22.18+ can.`,
  );
  process.exitCode = 1;
}

import { chmod, lstat, mkdir, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** Group and other permission bits: none may be set on the embedded database's files. */
const looseBits = 0o077;

/**
 * Makes the embedded database's folder (`.tidings/`, holding the data files and the secret key)
 * private to its owner: created 0700, and an existing folder that others can read or write is
 * tightened, with every file under it, and reported through `warn`. PGlite creates its files
 * 0666 whatever the umask, so `tightenPrivateFolder` takes those bits off again after opening and
 * after closing; the 0700 folder keeps other users out meanwhile. Its data and WAL files hold
 * webhook URLs and whatever else an application stores.
 */
export async function preparePrivateFolder(dataDir: string, warn: (message: string) => void): Promise<string> {
  const root = dirname(dataDir);
  await mkdir(root, { recursive: true, mode: 0o700 });
  const mode = (await lstat(root)).mode & 0o777;
  if (mode & looseBits) {
    const fixed = await tighten(root);
    warn(
      `${root} was readable or writable by other users (mode ${mode.toString(8).padStart(4, '0')}); ` +
        `tightened it to 0700${fixed > 0 ? ` and ${fixed} files and folders in it to owner-only` : ''}. ` +
        'It holds the embedded database and the key that encrypts webhook secrets.',
    );
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  return root;
}

/** Takes group and other permissions off every file PGlite made in the folder; call after open and after close. */
export async function tightenPrivateFolder(root: string): Promise<void> {
  await tighten(root);
}

/** Removes group and other bits from `path` and everything under it; returns how many entries below `path` changed. */
async function tighten(path: string): Promise<number> {
  const stat = await lstat(path);
  if (stat.isSymbolicLink()) return 0;
  await chmod(path, stat.isDirectory() ? 0o700 : stat.mode & 0o700);
  let changed = 0;
  if (stat.isDirectory()) {
    for (const entry of await readdir(path)) {
      const child = join(path, entry);
      const before = (await lstat(child)).mode & looseBits;
      changed += (await tighten(child)) + (before ? 1 : 0);
    }
  }
  return changed;
}

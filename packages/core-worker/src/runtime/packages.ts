/**
 * Where tasks resolve packages from besides the usual places: the cluster's package directories
 * on this host. NpmInstall installs into `<root>/npm/node_modules`, UploadFile and UploadDirectory
 * write into `<root>/uploads/node_modules`; a resolve hook (resolve-hook.ts, registered in the
 * worker's main thread and in each task thread) makes `await import('name')` in a task function,
 * in client.run and in a registered module fall back to them.
 *
 * `<root>` is one directory per cluster and host: `<base>/<scheduler host>-<port>`, with base
 * `--packages-dir` / SKEIN_PACKAGES_DIR, else `<os tmpdir>/skein-packages-<uid>` (one per local
 * user). Every worker of the cluster on this host, and a worker its nanny restarts, finds the same
 * one. securePackagesRoot() creates it 0700 and refuses one that is a symbolic link, another user's,
 * or writable by others, before anything is written there.
 */
import { existsSync, lstatSync, mkdirSync } from 'node:fs';
import { register } from 'node:module';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join, resolve as resolvePath } from 'node:path';
import { InvalidArgumentError, PermissionDeniedError, parseAddress } from '@skein/common';
import { fileURLToPath } from 'node:url';
import { PACKAGE_DIRS_BYTES, isActive, markActive, readDirs, writeDirs } from './package-dirs.js';

export const PACKAGES_DIR_ENV = 'SKEIN_PACKAGES_DIR';

/**
 * Set by a worker in its own environment at start (and so in its task threads): this cluster's
 * package directory on this host. Plugins and tasks read it (uploaded data is in
 * `$SKEIN_PACKAGES_ROOT/uploads/node_modules`).
 */
export const PACKAGES_ROOT_ENV = 'SKEIN_PACKAGES_ROOT';

/** The root of the worker running in this process (PACKAGES_ROOT_ENV), else the one for `schedulerAddress`. */
export function currentPackagesRoot(schedulerAddress?: string): string {
  const set = process.env[PACKAGES_ROOT_ENV];
  if (set) return set;
  if (!schedulerAddress) throw new InvalidArgumentError(`No ${PACKAGES_ROOT_ENV} in this process and no scheduler address to derive the cluster's package directory from.`);
  return packagesRoot(schedulerAddress);
}

/**
 * THE cluster root on this host, as the worker, its nanny and a LocalCluster compute it: for the
 * scheduler at `schedulerAddress` (any form parseAddress takes), under `base` (a worker's
 * `--packages-dir`; relative: against the cwd), else `env`'s SKEIN_PACKAGES_DIR, else the
 * per-user default (defaultPackagesBase).
 */
export function packagesRoot(schedulerAddress: string, base?: string, env: Readonly<Record<string, string | undefined>> = process.env): string {
  const a = parseAddress(schedulerAddress);
  return clusterPackagesRoot(a.host, a.port, base ? resolvePath(base) : env[PACKAGES_DIR_ENV] || defaultPackagesBase());
}

/** A worker command line's `--packages-dir DIR` (or `--packages-dir=DIR`), the last one given. */
export function packagesDirArg(workerArgs: readonly string[]): string | undefined {
  let dir: string | undefined;
  for (let i = 0; i < workerArgs.length; i++) {
    const a = workerArgs[i]!;
    if (a === '--packages-dir') dir = workerArgs[i + 1];
    else if (a.startsWith('--packages-dir=')) dir = a.slice('--packages-dir='.length);
  }
  return dir || undefined;
}

/** The default base: `<os tmpdir>/skein-packages-<uid>`, one per local user (created 0700, see securePackagesRoot). */
export function defaultPackagesBase(): string {
  const who = typeof process.getuid === 'function' ? String(process.getuid()) : userInfo().username.replace(/[^\w.-]+/g, '_');
  return join(tmpdir(), `skein-packages-${who}`);
}

/** The cluster's directory on this host for the scheduler at `host:port`. */
export function clusterPackagesRoot(schedulerHost: string, schedulerPort: number, base?: string): string {
  const b = base || process.env[PACKAGES_DIR_ENV] || defaultPackagesBase();
  return join(b, `${schedulerHost.replace(/[^\w.-]+/g, '_')}-${schedulerPort}`);
}

/**
 * Checks that `dir` is a real directory (not a symbolic link) of this user that no other user may
 * write into: tasks import what is in it, so another local user able to plant files there could run
 * code in them.
 */
function checkPrivate(dir: string, what: string): void {
  const st = lstatSync(dir);
  const fix = `remove it (rm -rf ${dir}) or choose another directory with --packages-dir / ${PACKAGES_DIR_ENV}`;
  if (st.isSymbolicLink()) throw new PermissionDeniedError(`${what} ${dir} is a symbolic link; Skein refuses to use it, since whoever made the link controls what tasks import: ${fix}.`);
  if (!st.isDirectory()) throw new PermissionDeniedError(`${what} ${dir} is not a directory: ${fix}.`);
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  if (uid !== undefined && st.uid !== uid) throw new PermissionDeniedError(`${what} ${dir} belongs to user id ${st.uid}, not to this user (${uid}); Skein refuses to import from it: ${fix}.`);
  if (uid !== undefined && (st.mode & 0o022) !== 0) {
    throw new PermissionDeniedError(`${what} ${dir} is writable by other users (mode ${(st.mode & 0o777).toString(8)}); Skein refuses to import from it: ${fix}, or chmod go-w it.`);
  }
}

/**
 * Creates the cluster root (mode 0700) and checks it, and the default base when the root is under
 * it, before anything is written there or imported from there: each must be a directory of this
 * user, not a symbolic link, not writable by others. Throws PermissionDeniedError saying which and
 * how to fix it. Returns `root`.
 */
export function securePackagesRoot(root: string): string {
  const base = dirname(root);
  if (base === defaultPackagesBase()) {
    try {
      mkdirSync(base, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    checkPrivate(base, "The cluster package directories' base");
  } else {
    mkdirSync(base, { recursive: true });
  }
  try {
    mkdirSync(root, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  checkPrivate(root, "The cluster's package directory");
  return root;
}

/** Where NpmInstall installs (npm's --prefix) and where uploads land, under a cluster root. */
export function npmPrefix(root: string): string {
  return join(root, 'npm');
}
export function uploadsPrefix(root: string): string {
  return join(root, 'uploads');
}

let shared: SharedArrayBuffer | undefined;
let hooked = false;

function hookUrl(): URL {
  const here = new URL('./resolve-hook.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  // Running from TypeScript sources (tests): the compiled hook.
  return new URL('../../dist/runtime/resolve-hook.js', import.meta.url);
}

/**
 * Registering a hook starts a loader thread (tens of ms per thread), so a thread registers it only
 * once the directories are in use: at start when they exist already (a restarted worker, one that
 * joins after an install), else when activatePackages() marks them (the built-in plugins call it
 * after an install or an upload). The main thread registers only where the worker command asked
 * (installResolveHook with `mainThread`), a task thread at its init or its next batch of tasks.
 */
let wantHookHere = false;

function hookIfActive(): void {
  if (hooked || !wantHookHere || !shared || !isActive(shared)) return;
  hooked = true;
  register(hookUrl(), { data: { dirs: shared } });
}

/**
 * This thread falls back to the directories in `dirs` (the main thread's buffer,
 * packageDirsBuffer(); a task thread receives it with its init message), once they are in use.
 */
export function installResolveHook(dirs: SharedArrayBuffer): void {
  shared = dirs;
  wantHookHere = true;
  hookIfActive();
}

/** A task thread, before each batch of tasks: registers the hook if the directories came into use (one atomic load). */
export function checkResolveHook(): void {
  if (!hooked && wantHookHere) hookIfActive();
}

/**
 * Marks the package directories in use, for every thread of this process: the plugins call it after
 * writing there (they may be another copy of this module, so it is reached through a global).
 */
export function activatePackages(): void {
  const act = (globalThis as Record<symbol, unknown>)[ACTIVATE] as (() => void) | undefined;
  if (act) act();
  else if (shared) {
    markActive(shared);
    hookIfActive();
  }
}

const ACTIVATE = Symbol.for('skein.core-worker.activatePackages');

/** The worker's main thread: makes this module's activation the process's (see activatePackages). */
export function exposeActivation(): void {
  (globalThis as Record<symbol, unknown>)[ACTIVATE] = () => {
    markActive(packageDirsBuffer());
    hookIfActive();
  };
  if (readDirs(packageDirsBuffer()).some((d) => existsSync(d))) markActive(packageDirsBuffer());
  hookIfActive();
}

/** This process's shared buffer of package directories (made on first use, in the main thread). */
export function packageDirsBuffer(): SharedArrayBuffer {
  return (shared ??= new SharedArrayBuffer(PACKAGE_DIRS_BYTES));
}

/** Sets the package directories every thread of this process falls back to. */
export function setPackageDirs(dirs: readonly string[]): void {
  writeDirs(packageDirsBuffer(), dirs);
}

/** The package directories set (empty before setPackageDirs). */
export function packageDirs(): string[] {
  return shared ? readDirs(shared) : [];
}

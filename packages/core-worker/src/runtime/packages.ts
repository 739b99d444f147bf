/**
 * Where tasks resolve packages from besides the usual places: the cluster's package directories
 * on this host. NpmInstall installs into `<root>/npm/node_modules`, UploadFile and UploadDirectory
 * write into `<root>/uploads/node_modules`; a resolve hook (resolve-hook.ts, registered in the
 * worker's main thread and in each task thread) makes `await import('name')` in a task function,
 * in client.run and in a registered module fall back to them.
 *
 * `<root>` is one directory per cluster and host: `<base>/<scheduler host>-<port>`, with base
 * `--packages-dir` / SKEIN_PACKAGES_DIR, else `<os tmpdir>/skein-packages`. Every worker of the
 * cluster on this host, and a worker its nanny restarts, finds the same one.
 */
import { existsSync } from 'node:fs';
import { register } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  const m = /^(?:[a-z]+:\/\/)?\[?([^\]]+?)\]?:(\d+)$/.exec(schedulerAddress ?? '');
  if (!m) throw new Error(`No ${PACKAGES_ROOT_ENV} in this process and no scheduler address to derive the cluster's package directory from.`);
  return clusterPackagesRoot(m[1]!, Number(m[2]));
}

/** The cluster's directory on this host for the scheduler at `host:port`. */
export function clusterPackagesRoot(schedulerHost: string, schedulerPort: number, base?: string): string {
  const b = base || process.env[PACKAGES_DIR_ENV] || join(tmpdir(), 'skein-packages');
  return join(b, `${schedulerHost.replace(/[^\w.-]+/g, '_')}-${schedulerPort}`);
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

/**
 * What a `--preload` / `--module` / plugin module / NpmInstall argument names: a path on this
 * machine or a package name. One rule everywhere (CLI flags, options, the client): see
 * resolveModuleArg.
 */
import { existsSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';

const SCRIPT = /\.(?:m|c)?js$/i;

/**
 * Makes `m` absolute (against `cwd`) when it is a path: it starts with `./` or `../` (or is `.` /
 * `..`), it exists there as a file or folder, or it ends with one of `extensions` (default `.js`,
 * `.mjs`, `.cjs`). URLs (`file:`, `data:`, `node:`) and absolute paths are returned as they are,
 * anything else (a package name such as `left-pad` or `@scope/pkg/sub`) too. `existing: false`
 * skips the existence test (NpmInstall: `left-pad` is the registry's even when a folder of that
 * name is in the cwd).
 */
export function resolveModuleArg(m: string, options: { cwd?: string; extensions?: RegExp; existing?: boolean } = {}): string {
  const cwd = options.cwd ?? process.cwd();
  if (m === '') return m;
  if (/^[a-z][a-z0-9+.-]*:/i.test(m) && !/^[a-zA-Z]:[\\/]/.test(m)) return m;
  if (isAbsolute(m)) return m;
  if (/^\.{1,2}(?:[\\/]|$)/.test(m) || (options.extensions ?? SCRIPT).test(m) || (options.existing !== false && existsSync(resolve(cwd, m)))) return resolve(cwd, m);
  return m;
}

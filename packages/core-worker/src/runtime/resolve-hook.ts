/**
 * A module.register() resolve hook (it runs on Node's loader thread): a bare specifier that does
 * not resolve the usual way (from the importing module) resolves from the cluster's package
 * directories, the ones NpmInstall installs into and uploads land in (see packages.ts). Each
 * directory is tried as a package root (`<dir>/node_modules/<name>`, then a file or folder
 * `<dir>/node_modules/<specifier>` itself, for UploadFile's `helpers.mjs`).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { readDirs } from './package-dirs.js';

let shared: SharedArrayBuffer | undefined;

export function initialize(data: { dirs: SharedArrayBuffer }): void {
  shared = data.dirs;
}

interface ResolveContext {
  parentURL?: string;
  conditions: string[];
  importAttributes?: Record<string, string>;
}
type NextResolve = (specifier: string, context: ResolveContext) => Promise<{ url: string; format?: string | null; shortCircuit?: boolean }>;

/** 'name', '@scope/name', 'name/sub/path': not relative, absolute, a URL or a Node builtin. */
function isBare(specifier: string): boolean {
  return !/^(\.{0,2}\/|[a-zA-Z][a-zA-Z\d+.-]*:)/.test(specifier) && specifier !== '' && !specifier.startsWith('#');
}

export async function resolve(specifier: string, context: ResolveContext, next: NextResolve): Promise<{ url: string; format?: string | null; shortCircuit?: boolean }> {
  try {
    return await next(specifier, context);
  } catch (err) {
    const code = (err as { code?: string })?.code;
    if (!shared || !isBare(specifier) || (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'ERR_PACKAGE_PATH_NOT_EXPORTED')) throw err;
    for (const dir of readDirs(shared)) {
      try {
        return await next(specifier, { ...context, parentURL: pathToFileURL(join(dir, 'package.json')).href });
      } catch {
        // not in this directory
      }
      const file = join(dir, 'node_modules', specifier);
      if (existsSync(file)) {
        try {
          return await next(pathToFileURL(file).href, context);
        } catch {
          // a folder without an entry point
        }
      }
    }
    throw err;
  }
}

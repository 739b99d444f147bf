/**
 * The built-in plugins that manage the workers' environment (Dask's PipInstall, UploadFile,
 * UploadDirectory, Environ). Each builds a plugin description for `client.registerPlugin`; the
 * work happens in the workers (@skein/core-worker/plugins/*) or their nannies (@skein/nanny/plugins/*).
 *
 * @example
 * await client.registerPlugin(NpmInstall({ packages: ['is-number@7.0.0'] }));
 * await client.submit(async (x) => (await import('is-number')).default(x), 5).result(); // true
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join, relative, resolve, sep } from 'node:path';
import { InvalidArgumentError, MAX_UPLOAD_BYTES, UPLOAD_PLUGIN_MODULE, resolveModuleArg, sha256 } from '@skein/common';
import type { PluginDescription } from './plugins.js';

/** A built-in plugin: a description `client.registerPlugin` takes, with its module, options and name set. */
export type BuiltinPlugin = PluginDescription & { kind: 'worker' | 'nanny'; module: string; options: Record<string, unknown>; name: string };

export interface NpmInstallOptions {
  /** What `npm install` gets: `name@version` (pin versions), tarball paths, folders, git URLs. */
  packages: readonly string[];
  /**
   * Extra npm flags, after Skein's defaults `--ignore-scripts --no-audit --no-fund` (a later flag
   * wins: `--ignore-scripts=false` runs install scripts), e.g. `['--registry=https://npm.example.com']`.
   */
  npmOptions?: readonly string[];
  /**
   * Restart every worker through its nanny once installed (for `--module` and `--preload`
   * modules, which load at start). Tasks running meanwhile are rescheduled. Default false:
   * running workers import the new packages at once.
   */
  restartWorkers?: boolean;
  /**
   * How long npm may run on each host, and how long a worker waits for another one's install
   * (ms, default 300 000). The registration waits this plus 60 s for each process (a
   * RegisterPluginOptions.timeoutMs overrides that).
   */
  timeoutMs?: number;
}

/** npm's default run time on each host (ms), and the margin the registration adds to it. */
const NPM_TIMEOUT_MS = 300_000;
const NPM_MARGIN_MS = 60_000;

function strings(v: unknown, what: string): string[] {
  if (!Array.isArray(v) || v.some((p) => typeof p !== 'string' || p === '')) throw new InvalidArgumentError(`NpmInstall: ${what} must be an array of non-empty strings.`);
  return [...(v as string[])];
}

/**
 * Installs npm packages on every worker's host (once per host, under a lock) into the cluster's
 * package directory, where tasks `await import('name')` them; workers that join later get them
 * too. A failure reports npm's own error per worker, and the cluster keeps working.
 */
export function NpmInstall(o: NpmInstallOptions): BuiltinPlugin {
  if (!o || typeof o !== 'object') throw new InvalidArgumentError("NpmInstall needs options: NpmInstall({ packages: ['is-number@7.0.0'] }).");
  const packages = strings(o.packages, 'packages');
  if (packages.length === 0) throw new InvalidArgumentError("NpmInstall: packages is empty; name at least one, e.g. ['is-number@7.0.0'].");
  const npmOptions = o.npmOptions === undefined ? [] : strings(o.npmOptions, 'npmOptions');
  // A local tarball or folder is resolved here, against the client's working directory.
  const resolved = packages.map((p) => resolveModuleArg(p, { extensions: /\.(?:tgz|tar\.gz)$/i, existing: false }));
  const restart = o.restartWorkers === true;
  if (o.timeoutMs !== undefined && !(typeof o.timeoutMs === 'number' && Number.isFinite(o.timeoutMs) && o.timeoutMs >= 0)) {
    throw new InvalidArgumentError(`NpmInstall: timeoutMs must be a number of milliseconds (0: the default ${NPM_TIMEOUT_MS}), got ${typeof o.timeoutMs}.`);
  }
  const npmTimeoutMs = o.timeoutMs || NPM_TIMEOUT_MS;
  return {
    kind: restart ? 'nanny' : 'worker',
    module: restart ? '@skein/nanny/plugins/npm-install' : '@skein/core-worker/plugins/npm-install',
    // One id per NpmInstall(): the workers of one host share its npm run, including workers that
    // join later; registering a new NpmInstall of the same packages replaces it and runs npm again.
    options: { packages: resolved, npmOptions, id: randomUUID(), timeoutMs: npmTimeoutMs },
    name: `npm-install-${sha256(JSON.stringify([resolved, npmOptions, restart])).slice(0, 12)}`,
    timeoutMs: npmTimeoutMs + NPM_MARGIN_MS,
  };
}


/**
 * Ships one file to every worker (and every worker that joins later) into the cluster's uploads
 * directory: a module is importable by its file name (`await import('helpers.mjs')`), data is at
 * `$SKEIN_PACKAGES_ROOT/uploads/node_modules/<name>`. A module already imported keeps its old
 * code in a running worker: upload under a new name, or restart the workers.
 */
export function UploadFile(path: string): BuiltinPlugin {
  if (typeof path !== 'string' || !path) throw new InvalidArgumentError('UploadFile(path) needs the path of a file.');
  const file = resolve(path);
  const st = statSync(file, { throwIfNoEntry: false });
  if (!st?.isFile()) throw new InvalidArgumentError(`UploadFile: ${file} is not a file.`);
  if (st.size > MAX_UPLOAD_BYTES) throw new InvalidArgumentError(`UploadFile: ${file} is ${st.size} bytes, more than ${MAX_UPLOAD_BYTES}: put it on a shared file system or in the image.`);
  const data = readFileSync(file);
  const name = basename(file);
  return {
    kind: 'worker',
    module: UPLOAD_PLUGIN_MODULE,
    options: { name, kind: 'file', files: [{ path: name, base64: data.toString('base64') }] },
    name: `upload-file-${name}`,
  };
}

/** Options of UploadDirectory. */
export interface UploadDirectoryOptions {
  /**
   * Leave out entries whose relative path (with `/`) this returns true for. Default: `.git` folders.
   * Symbolic links and other entries that are not regular files or folders are refused (links are
   * not followed): leave them out here or replace them by copies.
   */
  skip?: (relativePath: string) => boolean;
}

/**
 * Ships a folder to every worker (and every worker that joins later) into the cluster's uploads
 * directory: importable by its name (`await import('mylib')` through its package.json or
 * index.js; `await import('mylib/util.js')`), data at `$SKEIN_PACKAGES_ROOT/uploads/node_modules/<name>/...`.
 */
export function UploadDirectory(path: string, options: UploadDirectoryOptions = {}): BuiltinPlugin {
  if (typeof path !== 'string' || !path) throw new InvalidArgumentError('UploadDirectory(path) needs the path of a folder.');
  const dir = resolve(path);
  if (!statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new InvalidArgumentError(`UploadDirectory: ${dir} is not a folder.`);
  if (!basename(dir)) throw new InvalidArgumentError(`UploadDirectory: ${dir} has no name to import it by (the file system root); upload a named folder, e.g. UploadDirectory('./mylib').`);
  const skip = options.skip ?? ((rel: string) => rel.split(sep).includes('.git'));
  const files: Array<{ path: string; base64: string }> = [];
  let total = 0;
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const full = join(d, entry.name);
      const rel = relative(dir, full);
      if (skip(rel)) continue;
      if (entry.isDirectory()) walk(full);
      else if (!entry.isFile()) {
        // Not followed: a link may point anywhere (outside the folder, into a loop), and a device or
        // socket has no contents to ship. Nothing is left out silently.
        const type = entry.isSymbolicLink() ? 'a symbolic link' : 'not a regular file (a socket, FIFO or device)';
        throw new InvalidArgumentError(
          `UploadDirectory: ${full} is ${type}; UploadDirectory ships regular files and folders only and does not follow links. Replace it by a copy of its target, or leave it out with the skip option: UploadDirectory(path, { skip: (rel) => rel === ${JSON.stringify(rel.split(sep).join('/'))} }).`,
        );
      } else {
        const data = readFileSync(full);
        total += data.byteLength;
        if (total > MAX_UPLOAD_BYTES) throw new InvalidArgumentError(`UploadDirectory: ${dir} holds more than ${MAX_UPLOAD_BYTES} bytes: put it on a shared file system or in the image.`);
        files.push({ path: rel.split(sep).join('/'), base64: data.toString('base64') });
      }
    }
  };
  walk(dir);
  const name = basename(dir);
  return { kind: 'worker', module: UPLOAD_PLUGIN_MODULE, options: { name, kind: 'directory', files }, name: `upload-directory-${name}` };
}

/**
 * Environment variables for every worker process, set by its nanny before the worker starts:
 * running workers are restarted to get them (their tasks are rescheduled), workers that join
 * later start with them. Needs nannies (a LocalCluster and `skein worker` have them).
 */
export function Environ(vars: Readonly<Record<string, string>>): BuiltinPlugin {
  if (!vars || typeof vars !== 'object' || Array.isArray(vars)) throw new InvalidArgumentError("Environ needs an object of variables: Environ({ OMP_NUM_THREADS: '1' }).");
  const entries = Object.entries(vars);
  for (const [k, v] of entries) {
    if (typeof v !== 'string') throw new InvalidArgumentError(`Environ: the value of ${k} must be a string, got ${typeof v}.`);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new InvalidArgumentError(`Environ: ${JSON.stringify(k)} is not an environment variable name.`);
  }
  return {
    kind: 'nanny',
    module: '@skein/nanny/plugins/environ',
    options: { vars: Object.fromEntries(entries) },
    name: `environ-${sha256(JSON.stringify(entries)).slice(0, 12)}`,
  };
}

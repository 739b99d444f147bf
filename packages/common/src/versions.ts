/**
 * What a process runs (Node, its Skein packages, named packages) and the comparison of the client's,
 * the scheduler's and the workers' (Dask's `distributed/versions.py` and `Client.get_versions`).
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Versions as VersionsMessage } from '@skein/protocol';
import { InvalidArgumentError, VersionMismatchError, type VersionDifference } from './errors.js';

/** What one process runs. Package names are keys of Maps (user data: any name is ordinary). */
export interface Versions {
  /** process.version, e.g. 'v20.19.0'. */
  node: string;
  /** process.platform-process.arch, e.g. 'linux-x64'. */
  platform: string;
  /** Every Skein package this process runs: its own and the Skein packages it depends on. */
  skein: Map<string, string>;
  /** The packages asked for by name: their version, or null where this process does not find one. */
  packages: Map<string, string | null>;
}

/**
 * The environment variable that replaces what a process reports, as JSON: `{"node": "v0.0.0",
 * "@skein/common": "9.9.9", "left-pad": "1.0.0"}` (a name it does not run is added). For testing
 * the mismatch check and for diagnosing; it changes nothing but the report.
 */
export const VERSIONS_OVERRIDE_ENV = 'SKEIN_VERSIONS_OVERRIDE';

const skeinCache = new Map<string, Map<string, string>>();

function readJson(file: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return undefined;
  }
}

/**
 * The Skein packages a process runs: `root` (resolved from the module at `fromUrl`, which may be
 * inside `root` itself) and, transitively, every `@skein/*` or `skein` package among its
 * dependencies, each resolved from the package that depends on it. Memoized per root.
 */
export function skeinPackageVersions(fromUrl: string, root: string): Map<string, string> {
  const cacheKey = `${fromUrl}\n${root}`;
  const cached = skeinCache.get(cacheKey);
  if (cached) return cached;
  const out = new Map<string, string>();
  const visit = (name: string, from: string) => {
    if (out.has(name)) return;
    let file: string;
    try {
      file = createRequire(from).resolve(`${name}/package.json`);
    } catch {
      return; // not installed where this process runs (a dependency it does not load)
    }
    const pkg = readJson(file);
    if (!pkg || typeof pkg.version !== 'string') return;
    out.set(name, pkg.version);
    const deps = pkg.dependencies && typeof pkg.dependencies === 'object' ? Object.keys(pkg.dependencies) : [];
    for (const dep of deps) if (dep === 'skein' || dep.startsWith('@skein/')) visit(dep, file);
  };
  visit(root, fromUrl);
  skeinCache.set(cacheKey, out);
  return out;
}

/**
 * The version of package `name` as code running in `dirs` (first match wins) would import it:
 * the `package.json` found in a `node_modules` folder on the lookup path of each directory
 * (read directly, so a package whose `exports` hide its package.json is found too). Null: none.
 */
export function resolvePackageVersion(name: string, dirs: readonly string[]): string | null {
  if (!name || name.startsWith('.') || name.startsWith('/') || name.includes('\0')) return null;
  for (const dir of dirs) {
    const paths = createRequire(join(dir, 'noop.js')).resolve.paths(name) ?? [];
    for (const p of paths) {
      const pkg = readJson(join(p, name, 'package.json'));
      if (pkg && typeof pkg.version === 'string') return pkg.version;
    }
  }
  return null;
}

/** The most package names one getVersions looks up (each is a few file lookups on every process). */
export const MAX_NAMED_PACKAGES = 1000;

/** Checks the `packages` option of getVersions: package names, as npm spells them (at most MAX_NAMED_PACKAGES). */
export function checkPackageNames(packages: readonly unknown[], where: string): string[] {
  if (packages.length > MAX_NAMED_PACKAGES) {
    throw new InvalidArgumentError(`${where}: ${packages.length} packages named; at most ${MAX_NAMED_PACKAGES} are looked up at once.`);
  }
  const out: string[] = [];
  for (const p of packages) {
    if (typeof p !== 'string' || !/^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*$/i.test(p)) {
      throw new InvalidArgumentError(`${where}: ${JSON.stringify(p)} is not an npm package name (such as 'left-pad' or '@scope/name').`);
    }
    out.push(p);
  }
  return out;
}

/**
 * This process's versions: Node, the Skein packages of `root` (see skeinPackageVersions), and
 * each of `packages` as resolved from `dirs`; SKEIN_VERSIONS_OVERRIDE replaces what it names.
 */
export function localVersions(fromUrl: string, root: string, packages: readonly string[] = [], dirs: readonly string[] = [process.cwd()]): Versions {
  const v: Versions = {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    skein: new Map(skeinPackageVersions(fromUrl, root)),
    packages: new Map(packages.map((p) => [p, resolvePackageVersion(p, dirs)])),
  };
  const raw = process.env[VERSIONS_OVERRIDE_ENV];
  if (raw) {
    let o: unknown;
    try {
      o = JSON.parse(raw);
    } catch {
      o = undefined;
    }
    if (!o || typeof o !== 'object' || Array.isArray(o)) {
      throw new InvalidArgumentError(`${VERSIONS_OVERRIDE_ENV} must be a JSON object of names to versions, such as {"@skein/common":"9.9.9"}; it is ${raw.slice(0, 80)}.`);
    }
    for (const [name, version] of Object.entries(o as Record<string, unknown>)) {
      if (typeof version !== 'string') continue;
      if (name === 'node') v.node = version;
      else if (v.packages.has(name)) v.packages.set(name, version);
      else v.skein.set(name, version);
    }
  }
  return v;
}

export function toVersionsMessage(v: Versions): VersionsMessage {
  const packages = new Map<string, string>();
  const missing: string[] = [];
  for (const [name, version] of v.packages) {
    if (version === null) missing.push(name);
    else packages.set(name, version);
  }
  return { node: v.node, platform: v.platform, skein: new Map(v.skein), packages, missing };
}

export function fromVersionsMessage(m: VersionsMessage | undefined): Versions {
  const packages = new Map<string, string | null>(m?.packages ?? []);
  for (const name of m?.missing ?? []) packages.set(name, null);
  return { node: m?.node ?? '', platform: m?.platform ?? '', skein: new Map(m?.skein ?? []), packages };
}

/**
 * What differs between the processes: the Node version; each Skein package among the processes
 * that run it (the client runs no scheduler package, which is no difference); each named package
 * across all of them (one process without it differs).
 */
export function versionDifferences(processes: ReadonlyMap<string, Versions>): VersionDifference[] {
  const groups = new Map<string, Map<string | null, string[]>>();
  const add = (what: string, version: string | null, who: string) => {
    let g = groups.get(what);
    if (!g) groups.set(what, (g = new Map()));
    const list = g.get(version);
    if (list) list.push(who);
    else g.set(version, [who]);
  };
  for (const [who, v] of processes) {
    if (v.node) add('node', v.node, who);
    for (const [name, version] of v.skein) add(name, version, who);
    for (const [name, version] of v.packages) add(`package ${name}`, version, who);
  }
  const out: VersionDifference[] = [];
  for (const [what, versions] of groups) if (versions.size > 1) out.push({ what, versions });
  return out;
}

/** Throws VersionMismatchError when `processes` differ (see versionDifferences). */
export function checkVersions(processes: ReadonlyMap<string, Versions>): void {
  const diffs = versionDifferences(processes);
  if (diffs.length > 0) throw new VersionMismatchError(diffs);
}

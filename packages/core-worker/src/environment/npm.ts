/**
 * The npm install engine behind NpmInstall: installs packages into the cluster's npm directory on
 * this host (`<root>/npm`, see runtime/packages.ts) once per host: every worker (or nanny) of the
 * host calls it, one runs npm under a lock file, and the others, waiting on the lock, find the
 * outcome it recorded and report that (the same success, or npm's same error) without running
 * npm again. Dask's InstallPlugin with its per-host lock.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, NpmInstallError, TimeoutError } from '@skein/common';
import { npmPrefix, securePackagesRoot } from '../runtime/packages.js';

export interface NpmInstallRequest {
  /** What `npm install` gets: names, `name@version`, tarball paths, folders, git URLs. */
  packages: readonly string[];
  /** Extra npm flags, after Skein's defaults (`--ignore-scripts --no-audit --no-fund`): a later flag wins, e.g. `--ignore-scripts=false`. */
  npmOptions?: readonly string[];
  /** Identifies one registration: every worker of a host that shares it shares one npm run. */
  id: string;
}

export interface NpmInstallOutcome {
  /** True when this call ran npm; false when another process of this host had (its outcome is reported). */
  ran: boolean;
  /** npm's output (stdout then stderr). */
  output: string;
  /** The npm directory the packages are in (`<root>/npm`). */
  directory: string;
}

export interface NpmInstallOptions {
  /** How long npm may run, and how long to wait for another process's lock (ms). Default 300 000. */
  timeoutMs?: number;
  /** The npm command. Default SKEIN_NPM, else `npm`. */
  npm?: string;
}

/** Skein's flags before the user's: no install scripts (a package's code runs only when imported), no audit or funding requests. */
export const DEFAULT_NPM_FLAGS: readonly string[] = ['--ignore-scripts', '--no-audit', '--no-fund', '--no-update-notifier'];

interface Recorded {
  ok: boolean;
  output: string;
  how: string;
}

const LOCK = '.skein-install.lock';
const OUTCOMES = '.skein-installs.json';

/**
 * Checks NpmInstall's packages and npmOptions. An error names the bad field and its type, never its
 * value: npm options (and package URLs) may hold registry auth tokens.
 */
export function checkNpmRequest(r: { packages?: unknown; npmOptions?: unknown }, where: string): { packages: string[]; npmOptions: string[] } {
  const list = (v: unknown, what: string): string[] => {
    if (v === undefined) return [];
    if (!Array.isArray(v)) throw new InvalidArgumentError(`${where}: ${what} must be an array of non-empty strings, got ${v === null ? 'null' : typeof v}.`);
    v.forEach((p: unknown, i) => {
      if (typeof p !== 'string') throw new InvalidArgumentError(`${where}: ${what}[${i}] must be a non-empty string, got ${p === null ? 'null' : typeof p}.`);
      if (p === '' || p.includes('\0')) throw new InvalidArgumentError(`${where}: ${what}[${i}] is ${p === '' ? 'empty' : 'a string with a NUL character'}; give a non-empty string.`);
    });
    return [...(v as string[])];
  };
  const packages = list(r.packages, 'packages');
  if (packages.length === 0) throw new InvalidArgumentError(`${where}: packages is empty; name at least one package, e.g. { packages: ['left-pad@1.3.0'] }.`);
  const npmOptions = list(r.npmOptions, 'npmOptions');
  npmOptions.forEach((o, i) => {
    if (!o.startsWith('-')) {
      throw new InvalidArgumentError(`${where}: npmOptions[${i}] does not start with '-'; npmOptions holds flags such as '--legacy-peer-deps' or '--//registry.example.com/:_authToken=...' (put packages in packages).`);
    }
  });
  return { packages, npmOptions };
}

/**
 * The options of the NpmInstall plugins (the worker's and the nanny's), as @skein/client's
 * NpmInstall builds them: `{ packages, npmOptions?, id, timeoutMs? }`, checked with clear errors.
 */
export function checkNpmInstallOptions(options: unknown): { request: NpmInstallRequest; timeoutMs: number | undefined } {
  const o = (options ?? {}) as { packages?: unknown; npmOptions?: unknown; id?: unknown; timeoutMs?: unknown };
  const { packages, npmOptions } = checkNpmRequest(o, 'NpmInstall');
  if (typeof o.id !== 'string' || !o.id) throw new InvalidArgumentError('NpmInstall: options.id is missing (build the plugin with NpmInstall() from @skein/client).');
  if (o.timeoutMs !== undefined && !(typeof o.timeoutMs === 'number' && o.timeoutMs >= 0)) throw new InvalidArgumentError(`NpmInstall: options.timeoutMs must be a number of milliseconds, got ${typeof o.timeoutMs}.`);
  return { request: { packages, npmOptions, id: o.id }, timeoutMs: (o.timeoutMs as number | undefined) || undefined };
}

/** The outcomes recorded on this host, by request id (stored as an array of [id, outcome] pairs: ids are client data). */
function readOutcomes(file: string): Map<string, Recorded> {
  try {
    const o = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    return Array.isArray(o) ? new Map(o as Array<[string, Recorded]>) : new Map();
  } catch {
    return new Map();
  }
}

function writeOutcome(dir: string, id: string, r: Recorded): void {
  const file = join(dir, OUTCOMES);
  const all = readOutcomes(file);
  all.set(id, r);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify([...all]));
  renameSync(tmp, file);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Test seams of lock(): beforeBreak runs after a waiter judged the lock stale and before it breaks it. */
export interface LockHooks {
  beforeBreak?: () => Promise<void>;
}

interface Holder {
  host?: string;
  pid?: number;
  token?: string;
  at?: number;
}

function readHolder(file: string): { holder: Holder; text: string } | undefined {
  try {
    const text = readFileSync(file, 'utf8');
    let holder: Holder = {};
    try {
      holder = JSON.parse(text) as Holder;
    } catch {
      // not ours: judged by its age alone
    }
    return { holder, text };
  } catch {
    return undefined;
  }
}

/**
 * Takes the host's install lock in `dir`: a file holding this host, pid and a unique token, put in
 * place atomically (written beside it, then hard-linked to the lock's name, which fails when the
 * lock exists), so a waiter never sees half a lock. A lock whose holder on this host is gone, or
 * older than `staleMs`, is broken by renaming it to a name of the breaker's own and checking that
 * what it renamed is the holder it judged stale; if it is not (another waiter broke the stale lock
 * and took a fresh one meanwhile), the fresh lock is put back. Resolves with the release function,
 * which removes the lock only while it still holds this call's token.
 */
export async function lock(dir: string, deadline: number, staleMs: number, hooks: LockHooks = {}): Promise<() => void> {
  const file = join(dir, LOCK);
  const token = `${hostname()}-${process.pid}-${randomBytes(8).toString('hex')}`;
  const mine = join(dir, `${LOCK}.${token}`);
  // Takes whatever is at `file` out of the way under a name of our own and returns its text.
  const takeAway = (): { aside: string; text: string } | undefined => {
    const aside = join(dir, `${LOCK}.${token}.aside-${randomBytes(4).toString('hex')}`);
    try {
      renameSync(file, aside);
    } catch {
      return undefined; // gone already
    }
    return { aside, text: readFileSync(aside, 'utf8') };
  };
  const putBack = (aside: string): void => {
    try {
      linkSync(aside, file);
    } catch {
      // Someone took the free lock in between; the holder we displaced finds out at its release.
    }
    rmSync(aside, { force: true });
  };
  for (let wait = 20; ; wait = Math.min(250, wait * 2)) {
    const text = JSON.stringify({ host: hostname(), pid: process.pid, token, at: Date.now() } satisfies Holder);
    writeFileSync(mine, text);
    try {
      linkSync(mine, file);
      rmSync(mine, { force: true });
      return () => {
        const got = takeAway();
        if (!got) return;
        if (got.text === text) rmSync(got.aside, { force: true });
        else putBack(got.aside); // not ours any more: another waiter broke it and holds it now
      };
    } catch (err) {
      rmSync(mine, { force: true });
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const seen = readHolder(file);
    if (!seen) continue; // released meanwhile
    const { holder } = seen;
    const at = typeof holder.at === 'number' ? holder.at : (statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
    const dead = holder.host === hostname() && typeof holder.pid === 'number' && !alive(holder.pid);
    if (dead || Date.now() - at > staleMs) {
      if (hooks.beforeBreak) await hooks.beforeBreak();
      const got = takeAway();
      if (got && got.text !== seen.text) putBack(got.aside);
      else if (got) rmSync(got.aside, { force: true });
      continue;
    }
    if (Date.now() > deadline) {
      throw new TimeoutError(`Waited for the npm install lock ${file} (held by ${holder.host ?? '?'} pid ${holder.pid ?? '?'}) past the timeout; remove the file if no install runs.`);
    }
    await new Promise((r) => setTimeout(r, wait));
  }
}

function runNpm(npm: string, args: string[], cwd: string, timeoutMs: number): Promise<{ code: number | null; output: string; stderr: string; timedOut: boolean; spawnError?: Error }> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const child = spawn(npm, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const done = (code: number | null, spawnError?: Error) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString('utf8');
      const stderr = Buffer.concat(err).toString('utf8');
      resolve({ code, output: `${stdout}${stderr}`, stderr, timedOut, ...(spawnError ? { spawnError } : {}) });
    };
    child.once('error', (e) => done(null, e));
    child.once('close', (code) => done(code));
  });
}

/**
 * Installs `request.packages` into `<root>/npm` once per host (see the module comment). Rejects with
 * NpmInstallError carrying npm's own error output when npm fails (or failed for another process of
 * this host under the same request id).
 */
export async function installPackages(root: string, request: NpmInstallRequest, options: NpmInstallOptions = {}): Promise<NpmInstallOutcome> {
  const { packages, npmOptions } = checkNpmRequest(request, 'NpmInstall');
  if (!request.id) throw new InvalidArgumentError('NpmInstall: the request has no id.');
  const timeoutMs = options.timeoutMs ?? 300_000;
  const dir = npmPrefix(securePackagesRoot(root));
  mkdirSync(dir, { recursive: true });
  const manifest = join(dir, 'package.json');
  if (!statSync(manifest, { throwIfNoEntry: false })) {
    // npm records what it installed here, so a later install keeps the earlier packages.
    writeFileSync(manifest, `${JSON.stringify({ name: 'skein-cluster-packages', private: true, description: 'Packages NpmInstall installed for one Skein cluster on this host' }, null, 2)}\n`);
  }
  const release = await lock(dir, Date.now() + timeoutMs, timeoutMs + 60_000);
  try {
    const done = readOutcomes(join(dir, OUTCOMES)).get(request.id);
    if (done) {
      if (!done.ok) throw new NpmInstallError(packages, dir, done.output, `${done.how}, in another worker of this host`);
      return { ran: false, output: done.output, directory: dir };
    }
    const npm = options.npm ?? process.env['SKEIN_NPM'] ?? 'npm';
    const r = await runNpm(npm, ['install', ...DEFAULT_NPM_FLAGS, ...npmOptions, '--', ...packages], dir, timeoutMs);
    const how = r.spawnError
      ? `${npm} could not be started: ${r.spawnError.message}`
      : r.timedOut
        ? `npm ran past ${timeoutMs} ms and was killed`
        : `npm exited with code ${r.code}`;
    const ok = !r.spawnError && !r.timedOut && r.code === 0;
    // npm's error output is what says why; keep stdout too when stderr is empty.
    const output = ok ? r.output : r.stderr.trim() || r.output;
    writeOutcome(dir, request.id, { ok, output, how });
    if (!ok) throw new NpmInstallError(packages, dir, output, how);
    return { ran: true, output, directory: dir };
  } finally {
    release();
  }
}

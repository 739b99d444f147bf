/**
 * The npm install engine behind NpmInstall: installs packages into the cluster's npm directory on
 * this host (`<root>/npm`, see runtime/packages.ts) once per host: every worker (or nanny) of the
 * host calls it, one runs npm under a lock file, and the others, waiting on the lock, find the
 * outcome it recorded and report that (the same success, or npm's same error) without running
 * npm again. Dask's InstallPlugin with its per-host lock.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { InvalidArgumentError, NpmInstallError, TimeoutError } from '@skein/common';
import { npmPrefix } from '../runtime/packages.js';

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

export function checkNpmRequest(r: { packages?: unknown; npmOptions?: unknown }, where: string): { packages: string[]; npmOptions: string[] } {
  const list = (v: unknown, what: string): string[] => {
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.some((p) => typeof p !== 'string' || p === '' || p.includes('\0'))) {
      throw new InvalidArgumentError(`${where}: ${what} must be an array of non-empty strings, got ${JSON.stringify(v)?.slice(0, 120)}.`);
    }
    return [...(v as string[])];
  };
  const packages = list(r.packages, 'packages');
  if (packages.length === 0) throw new InvalidArgumentError(`${where}: packages is empty; name at least one package, e.g. { packages: ['left-pad@1.3.0'] }.`);
  const npmOptions = list(r.npmOptions, 'npmOptions');
  for (const o of npmOptions) {
    if (!o.startsWith('-')) throw new InvalidArgumentError(`${where}: npmOptions holds flags such as '--legacy-peer-deps'; ${JSON.stringify(o)} is not one (put packages in packages).`);
  }
  return { packages, npmOptions };
}

function readOutcomes(file: string): Map<string, Recorded> {
  try {
    const o = JSON.parse(readFileSync(file, 'utf8')) as Record<string, Recorded>;
    return new Map(Object.entries(o));
  } catch {
    return new Map();
  }
}

function writeOutcome(dir: string, id: string, r: Recorded): void {
  const file = join(dir, OUTCOMES);
  const all = readOutcomes(file);
  all.set(id, r);
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(Object.fromEntries(all)));
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

/**
 * Takes the host's install lock in `dir` (a file created exclusively, holding this host and pid).
 * A lock whose holder on this host is gone, or older than `staleMs`, is broken. Resolves with
 * the release function.
 */
async function lock(dir: string, deadline: number, staleMs: number): Promise<() => void> {
  const file = join(dir, LOCK);
  for (let wait = 20; ; wait = Math.min(250, wait * 2)) {
    try {
      const fd = openSync(file, 'wx');
      writeSync(fd, JSON.stringify({ host: hostname(), pid: process.pid }));
      closeSync(fd);
      return () => {
        try {
          unlinkSync(file);
        } catch {
          // already gone
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder: { host?: string; pid?: number } = {};
    try {
      holder = JSON.parse(readFileSync(file, 'utf8')) as typeof holder;
    } catch {
      // being written, or removed meanwhile
    }
    const age = Date.now() - (statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
    const dead = holder.host === hostname() && typeof holder.pid === 'number' && !alive(holder.pid);
    if (dead || age > staleMs) {
      try {
        unlinkSync(file);
      } catch {
        // another waiter broke it first
      }
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
  const dir = npmPrefix(root);
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

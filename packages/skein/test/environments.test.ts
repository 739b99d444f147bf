import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, Environ, NpmInstall, UploadDirectory, UploadFile, VersionMismatchError } from '@skein/client';
import { Worker } from '@skein/core-worker';
import { LocalCluster } from '../src/index.js';
import { execFileSync } from 'node:child_process';
import { clusterPackagesRoot, installPackages, packagesRoot } from '@skein/core-worker/environment';
import { NpmInstallError, PluginSetupError, type SkeinError } from '@skein/common';
import { SKEIN_BIN, readyOf, startProcess, until, type Proc } from './helpers.js';

// Level 3: real LocalClusters (worker processes under nannies), real npm. Each cluster keeps its
// packages under a temporary SKEIN_PACKAGES_DIR of its own, removed at the end.

/** Writes a package `name@version` (an ES module exporting `version` and `hello()`) into `dir`. */
function writePackage(dir: string, name: string, version: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name, version, type: 'module', main: 'index.js', exports: { '.': './index.js' } }));
  writeFileSync(join(dir, 'index.js'), `export const version = ${JSON.stringify(version)};\nexport function hello(x) { return 'hello ' + x + ' from ${name}@${version}'; }\n`);
  return dir;
}

/** The process warnings of type SkeinVersionWarning emitted while `fn` runs. */
async function versionWarnings<T>(fn: () => Promise<T>): Promise<{ value: T; warnings: Error[] }> {
  const warnings: Error[] = [];
  const on = (w: Error) => {
    if (w.name === 'SkeinVersionWarning') warnings.push(w);
  };
  process.on('warning', on);
  try {
    const value = await fn();
    // process.emitWarning delivers on the next tick.
    await new Promise((r) => setImmediate(r));
    return { value, warnings };
  } finally {
    process.off('warning', on);
  }
}

/**
 * A function from its source text. Vitest rewrites `import()` in test files, so a task that
 * imports is written as text here; what reaches the workers is exactly this source.
 */
function fromSource<F>(source: string): F {
  return new Function(`return (${source});`)() as F;
}

/** `npm pack` of a fresh package folder `name@version`: the tarball's path. */
function packPackage(work: string, name: string, version: string): string {
  const dir = writePackage(join(work, `${name}-src`), name, version);
  const file = execFileSync('npm', ['pack', '--silent', '--pack-destination', work], { cwd: dir, encoding: 'utf8' }).trim().split('\n').pop()!;
  return join(work, file);
}

/** The scheduler's host and port, as workers name their cluster's package directory. */
function hostPort(address: string): [string, number] {
  const m = /^tcp:\/\/(.+):(\d+)$/.exec(address)!;
  return [m[1]!, Number(m[2])];
}

describe('the npm install engine and resolving packages from the cluster directory', () => {
  let base: string;
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'skein-env-engine-'));
    cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 1, memoryLimit: '1GB', env: { SKEIN_PACKAGES_DIR: base } });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
    rmSync(base, { recursive: true, force: true });
  });

  it('installs once per host under a lock; tasks on both running workers then import the package by name', async () => {
    const tarball = packPackage(base, 'skein-fixture-pkg', '1.2.3');
    const root = clusterPackagesRoot(...hostPort(cluster.schedulerAddress), base);
    // Before the install, a task cannot import it (and that failure is not remembered).
    const importIt = fromSource<(x: number) => Promise<[number, string]>>("async (x) => [process.pid, (await import('skein-fixture-pkg')).hello(x)]");
    await expect(client.submit(importIt, 0).result()).rejects.toThrow(/Cannot find package 'skein-fixture-pkg'/);
    // Two installers of one host at once: one runs npm, the other waits on the lock and reports its outcome.
    const outcomes = await Promise.all([1, 2].map(() => installPackages(root, { packages: [tarball], id: 'engine-1' })));
    expect(outcomes.map((o) => o.ran).sort()).toEqual([false, true]);
    expect(outcomes[0]!.directory).toBe(join(root, 'npm'));
    // Installed from outside the workers (here: this process), so they are told the directory is in use.
    await client.run(fromSource<() => void>("() => globalThis[Symbol.for('skein.core-worker.activatePackages')]()"));

    const out = await client.gather(client.map(importIt, [1, 2, 3, 4, 5, 6]));
    expect(out.map((r) => r[1])).toEqual([1, 2, 3, 4, 5, 6].map((x) => `hello ${x} from skein-fixture-pkg@1.2.3`));
    // Task threads of both workers (the failed import above was not remembered).
    const pids = (await client.schedulerInfo()).workers.map((w) => w.pid).sort();
    expect([...new Set(out.map((r) => r[0]))].sort()).toEqual(pids);
    // client.run runs on each worker's main thread: both import it too.
    const ran = await client.run(fromSource<() => Promise<string>>("async () => (await import('skein-fixture-pkg')).version"));
    expect(Object.values(ran)).toEqual(['1.2.3', '1.2.3']);
  });

  it("a package npm cannot find gives npm's own error, recorded for the host", async () => {
    const root = clusterPackagesRoot(...hostPort(cluster.schedulerAddress), base);
    const err = await installPackages(root, { packages: [join(base, 'no-such-package-dir')], id: 'engine-missing' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NpmInstallError);
    const e = err as NpmInstallError;
    expect(e.code).toBe('install_failed');
    expect(e.output).toMatch(/npm (ERR!|error)/);
    // A second process of the host asking the same reports the same error without running npm.
    const again = (await installPackages(root, { packages: [join(base, 'no-such-package-dir')], id: 'engine-missing' }).catch((x: unknown) => x)) as NpmInstallError;
    expect(again.output).toBe(e.output);
    expect(again.message).toContain('in another worker of this host');
  });
});

describe('the built-in plugins: NpmInstall, UploadFile, UploadDirectory, Environ', () => {
  let base: string;
  let npmRuns: string;
  let cluster: LocalCluster;
  let client: Client;
  let tarball: string;

  /** How many times npm ran on this host (the wrapper below counts). */
  const runs = () => (existsSync(npmRuns) ? readFileSync(npmRuns, 'utf8').split('\n').filter(Boolean).length : 0);

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'skein-env-plugins-'));
    npmRuns = join(base, 'npm-runs.txt');
    // npm itself, behind a wrapper that counts its runs.
    const wrapper = join(base, 'npm-counting.sh');
    // With the file npm-slow present, "npm" hangs (for the timeout test).
    writeFileSync(wrapper, `#!/bin/sh\necho run >> ${JSON.stringify(npmRuns)}\nif [ -f ${JSON.stringify(join(base, 'npm-slow'))} ]; then exec sleep 30; fi\nexec npm "$@"\n`);
    chmodSync(wrapper, 0o755);
    tarball = packPackage(base, 'skein-fixture-pkg', '1.0.0');
    cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 1, memoryLimit: '1GB', env: { SKEIN_PACKAGES_DIR: base, SKEIN_NPM: wrapper } });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    const root = clusterPackagesRoot(...hostPort(cluster.schedulerAddress), base);
    const had = existsSync(root);
    await cluster?.close();
    // The cluster's package directory goes with the LocalCluster that used it.
    expect([had, existsSync(root)]).toEqual([true, false]);
    rmSync(base, { recursive: true, force: true });
  });

  const useFixture = fromSource<(x: number) => Promise<string>>("async (x) => (await import('skein-fixture-pkg')).hello(x)");

  it('NpmInstall of a packed local package: npm runs once for both running workers of the host, and tasks on both import it', async () => {
    const res = await client.registerPlugin(NpmInstall({ packages: [tarball] }));
    expect(res.results).toHaveLength(2);
    expect(res.results.every((r) => r.ok && r.kind === 'worker')).toBe(true);
    expect(runs()).toBe(1);
    const addresses = (await client.schedulerInfo()).workers.map((w) => w.address);
    for (const a of addresses) {
      expect(await client.submitWith({ workers: [a], pure: false }, useFixture, 7).result()).toBe('hello 7 from skein-fixture-pkg@1.0.0');
    }
  });

  it('NpmInstall of a small real package from the registry (is-number@7.0.0, no dependencies)', async () => {
    const res = await client.registerPlugin(NpmInstall({ packages: ['is-number@7.0.0'] }));
    expect(res.results.map((r) => r.ok)).toEqual([true, true]);
    const isNumber = fromSource<(x: unknown) => Promise<boolean>>("async (x) => (await import('is-number')).default(x)");
    expect(await client.gather(client.map(isNumber, [5, 'five', '5']))).toEqual([true, false, true]);
    const v = await client.getVersions({ packages: ['is-number'], check: true });
    expect([...v.workers.values()].map((w) => w.packages.get('is-number'))).toEqual(['7.0.0', '7.0.0']);
  });

  it("NpmInstall of a package that does not exist: npm's own error for each worker, and the cluster keeps working", async () => {
    const err = await client.registerPlugin(NpmInstall({ packages: ['skein-no-such-package-zz9@1.0.0'] })).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginSetupError);
    const e = err as PluginSetupError;
    expect(e.results).toHaveLength(2);
    for (const r of e.results) {
      expect(r.ok).toBe(false);
      expect(r.error?.type).toBe('NpmInstallError');
      expect(r.error?.message).toMatch(/npm (error|ERR!) (code E404|404)/);
      expect(r.error?.message).toContain('skein-no-such-package-zz9');
    }
    expect(e.message).toContain('skein-no-such-package-zz9');
    expect(await client.submit((x: number) => x * 2, 21).result()).toBe(42);
    expect(await client.submitWith({ pure: false }, useFixture, 1).result()).toBe('hello 1 from skein-fixture-pkg@1.0.0');
    // It stays registered (as in Dask) until unregistered: workers that join would report it too.
    await client.unregisterPlugin(e.plugin);
  });

  it("NpmInstall's own timeout reaches the workers' npm run: npm past it is killed and reported, well before the default", { timeout: 20_000 }, async () => {
    writeFileSync(join(base, 'npm-slow'), '');
    try {
      const err = await client.registerPlugin(NpmInstall({ packages: ['skein-never-installed@1.0.0'], timeoutMs: 1_500 })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(PluginSetupError);
      for (const r of (err as PluginSetupError).results) {
        expect(r.ok).toBe(false);
        expect(r.error?.message).toContain('npm ran past 1500 ms and was killed');
      }
      await client.unregisterPlugin((err as PluginSetupError).plugin);
    } finally {
      rmSync(join(base, 'npm-slow'));
    }
  });

  it('registerPlugin with timeoutMs: 0 uses the default timeout on the client as on the scheduler', async () => {
    const slow = { kind: 'worker' as const, source: 'export async function setup() { await new Promise((r) => setTimeout(r, 5500)); }' };
    const res = await client.registerPlugin(slow, { name: 'slow-setup', timeoutMs: 0 });
    expect(res.results.map((r) => r.ok)).toEqual([true, true]);
    await client.unregisterPlugin('slow-setup');
  });

  it('UploadFile and UploadDirectory: tasks import the module and the folder by name and read its data', async () => {
    const src = join(base, 'src');
    mkdirSync(join(src, 'mylib', 'data'), { recursive: true });
    writeFileSync(join(src, 'helpers.mjs'), 'export const triple = (x) => 3 * x;\n');
    writeFileSync(join(src, 'mylib', 'package.json'), JSON.stringify({ name: 'mylib', type: 'module', main: 'index.js' }));
    writeFileSync(join(src, 'mylib', 'index.js'), "export const greet = (x) => 'hi ' + x;\n");
    writeFileSync(join(src, 'mylib', 'data', 'table.json'), JSON.stringify({ rows: 3 }));
    expect((await client.registerPlugin(UploadFile(join(src, 'helpers.mjs')))).results.map((r) => r.ok)).toEqual([true, true]);
    expect((await client.registerPlugin(UploadDirectory(join(src, 'mylib')))).results.map((r) => r.ok)).toEqual([true, true]);
    const task = fromSource<(x: number) => Promise<[number, string, number]>>(
      `async (x) => {
        const { triple } = await import('helpers.mjs');
        const { greet } = await import('mylib');
        const { readFileSync } = await import('node:fs');
        const { join } = await import('node:path');
        const table = JSON.parse(readFileSync(join(process.env.SKEIN_PACKAGES_ROOT, 'uploads', 'node_modules', 'mylib', 'data', 'table.json'), 'utf8'));
        return [triple(x), greet(x), table.rows];
      }`,
    );
    for (const a of (await client.schedulerInfo()).workers.map((w) => w.address)) {
      expect(await client.submitWith({ workers: [a], pure: false }, task, 2).result()).toEqual([6, 'hi 2', 3]);
    }
  });

  it('an upload whose name or entry reaches outside the uploads folder is refused on every worker, with what is wrong and how to fix it', async () => {
    const upload = (name: string, kind: 'file' | 'directory', path: string) => ({
      kind: 'worker' as const,
      module: '@skein/core-worker/plugins/upload',
      options: { name, kind, files: [{ path, base64: Buffer.from('planted').toString('base64') }] },
    });
    const root = clusterPackagesRoot(...hostPort(cluster.schedulerAddress), base);
    const cases: Array<[ReturnType<typeof upload>, RegExp]> = [
      [upload('../../x', 'file', '../../x'), /upload name \("\.\.\/\.\.\/x"\) has a '\.\.' segment.*without '\.\.'/],
      [upload('lib', 'directory', 'a/../../x'), /files\[0\]\.path \("a\/\.\.\/\.\.\/x"\) has a '\.\.' segment/],
    ];
    for (const [spec, why] of cases) {
      const res = await client.registerPlugin(spec, { name: `bad-upload-${spec.options.name}`, raiseOnError: false });
      expect(res.results).toHaveLength(2);
      for (const r of res.results) {
        expect(r.ok).toBe(false);
        expect(r.error?.type).toBe('InvalidArgumentError');
        expect(r.error?.message).toMatch(why);
      }
      await client.unregisterPlugin(res.name);
    }
    expect(existsSync(join(root, 'x'))).toBe(false);
    expect(existsSync(join(root, 'uploads', 'x'))).toBe(false);
  });

  it('the scheduler refuses an upload over the size limit and a nanny plugin over the nanny message limit, clearly', async () => {
    // Sent straight, past UploadFile's own check: 33.6 MB of data.
    const big = { kind: 'worker' as const, module: '@skein/core-worker/plugins/upload', options: { name: 'big.bin', kind: 'file', files: [{ path: 'big.bin', base64: 'A'.repeat(44_800_000) }] } };
    const err = await client.registerPlugin(big, { name: 'too-big-upload' }).catch((e: unknown) => e);
    expect((err as SkeinError).code).toBe('invalid_argument');
    expect((err as Error).message).toMatch(/too-big-upload.*33600000 bytes.*33554432.*shared file system/s);
    const root = clusterPackagesRoot(...hostPort(cluster.schedulerAddress), base);
    expect(existsSync(join(root, 'uploads', 'node_modules', 'big.bin'))).toBe(false);

    const nannyBig = { kind: 'nanny' as const, source: `// ${'x'.repeat(1_100_000)}\nexport function setup() {}\n` };
    const err2 = await client.registerPlugin(nannyBig, { name: 'too-big-nanny' }).catch((e: unknown) => e);
    expect((err2 as SkeinError).code).toBe('invalid_argument');
    expect((err2 as Error).message).toMatch(/too-big-nanny.*bytes.*1 MiB.*nann/s);
    // Neither was registered.
    await expect(client.unregisterPlugin('too-big-upload')).rejects.toMatchObject({ code: 'not_found' });
    await expect(client.unregisterPlugin('too-big-nanny')).rejects.toMatchObject({ code: 'not_found' });
  });

  it('a worker that joins after the registrations gets them before it takes tasks (and npm does not run again on this host)', async () => {
    const before = new Set((await client.schedulerInfo()).workers.map((w) => w.address));
    const npmBefore = runs();
    await cluster.scale(3);
    await cluster.waitForWorkers(3, { timeoutMs: 30_000 });
    const joined = (await client.schedulerInfo()).workers.map((w) => w.address).find((a) => !before.has(a))!;
    expect(joined).toBeTruthy();
    expect(await client.submitWith({ workers: [joined], pure: false }, useFixture, 3).result()).toBe('hello 3 from skein-fixture-pkg@1.0.0');
    const helper = fromSource<(x: number) => Promise<number>>("async (x) => (await import('helpers.mjs')).triple(x)");
    expect(await client.submitWith({ workers: [joined], pure: false }, helper, 5).result()).toBe(15);
    // The host's outcomes were recorded: the new worker found its installs done (the failed one too).
    expect(runs()).toBe(npmBefore);
  });

  it('NpmInstall with restartWorkers: the nannies install and restart every worker; no task is lost', async () => {
    const info = await client.schedulerInfo();
    const pids = new Set(info.workers.map((w) => w.pid));
    // Tasks that run until the test says so: the restarts kill them mid-run on the old workers.
    const marker = join(base, 'restarted');
    const waitForMarker = fromSource<(i: number, marker: string) => Promise<[number, number]>>(
      `async (i, marker) => {
        const { existsSync } = await import('node:fs');
        const end = Date.now() + 30000;
        while (!existsSync(marker)) {
          if (Date.now() > end) throw new Error('the test never wrote ' + marker);
          await new Promise((r) => setTimeout(r, 20));
        }
        return [i * 10, process.pid];
      }`,
    );
    const held = client.mapWith({ pure: false }, waitForMarker, [0, 1, 2, 3, 4, 5], [marker, marker, marker, marker, marker, marker]);
    await until(async () => (await client.schedulerInfo()).workers.every((w) => w.processing > 0), 20_000, 'every worker to hold tasks');
    const second = packPackage(base, 'skein-fixture-two', '2.0.0');
    const res = await client.registerPlugin(NpmInstall({ packages: [second], restartWorkers: true }));
    expect(res.results).toHaveLength(info.workers.length);
    expect(res.results.every((r) => r.ok && r.kind === 'nanny')).toBe(true);
    await cluster.waitForWorkers(info.workers.length, { timeoutMs: 30_000 });
    const after = await client.schedulerInfo();
    expect(after.workers.some((w) => pids.has(w.pid))).toBe(false);
    writeFileSync(marker, '');
    // Every task comes back, computed by the new workers (rescheduled from the old ones).
    const done = await client.gather(held);
    expect(done.map((r) => r[0])).toEqual([0, 10, 20, 30, 40, 50]);
    const newPids = new Set(after.workers.map((w) => w.pid));
    expect(done.every((r) => newPids.has(r[1]))).toBe(true);
    const useTwo = fromSource<(x: number) => Promise<string>>("async (x) => (await import('skein-fixture-two')).hello(x)");
    expect(await client.gather(after.workers.map((w) => client.submitWith({ workers: [w.address], pure: false }, useTwo, 1)))).toEqual(
      after.workers.map(() => 'hello 1 from skein-fixture-two@2.0.0'),
    );
  });

  it('Environ: every worker is restarted by its nanny with the variables set before it starts', async () => {
    const res = await client.registerPlugin(Environ({ SKEIN_TEST_ENVIRON: 'from-environ' }));
    expect(res.results.every((r) => r.ok && r.kind === 'nanny')).toBe(true);
    await cluster.waitForWorkers(3, { timeoutMs: 30_000 });
    const read = await client.run(() => process.env['SKEIN_TEST_ENVIRON'] ?? null);
    expect(Object.values(read)).toEqual(['from-environ', 'from-environ', 'from-environ']);
    const inTask = await client.submitWith({ pure: false }, () => process.env['SKEIN_TEST_ENVIRON'] ?? null).result();
    expect(inTask).toBe('from-environ');
  });

  it('a `skein worker --packages-dir DIR` joiner: its nanny installs the NpmInstall(restartWorkers) packages where its tasks look', async () => {
    const dir = join(base, 'cli-packages');
    const cli = startProcess([SKEIN_BIN, 'worker', cluster.schedulerAddress, '--host', '127.0.0.1', '--name', 'cli-packages-dir', '--packages-dir', dir, '--ready-json']);
    try {
      const ready = await readyOf(cli);
      const useTwo = fromSource<() => Promise<string>>("async () => (await import('skein-fixture-two')).version");
      expect(await client.submitWith({ workers: [ready.address], pure: false }, useTwo).result()).toBe('2.0.0');
      expect(existsSync(join(packagesRoot(cluster.schedulerAddress, dir), 'npm', 'node_modules', 'skein-fixture-two'))).toBe(true);
    } finally {
      cli.kill('SIGTERM');
      await cli.exited;
    }
  });
});

describe('client.getVersions', () => {
  let base: string;
  let cluster: LocalCluster;
  let extra: Proc | undefined;

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'skein-env-versions-'));
    cluster = await LocalCluster.start({ nWorkers: 1, threadsPerWorker: 1, memoryLimit: '1GB', env: { SKEIN_PACKAGES_DIR: base } });
  });
  afterAll(async () => {
    extra?.kill();
    await extra?.exited;
    await cluster?.close();
    rmSync(base, { recursive: true, force: true });
  });

  it('reports Node and every Skein package on the client, the scheduler and each worker; the same everywhere: no warning, check passes', async () => {
    const { value: client, warnings } = await versionWarnings(() => Client.connect(cluster));
    try {
      expect(warnings).toEqual([]);
      const v = await client.getVersions({ check: true });
      expect(v.client.node).toBe(process.version);
      expect(v.scheduler.node).toBe(process.version);
      expect(v.workers.size).toBe(1);
      const [worker] = [...v.workers.values()];
      expect(worker!.node).toBe(process.version);
      expect(v.client.skein.get('@skein/client')).toBe('0.1.0');
      expect(v.scheduler.skein.get('@skein/core-scheduler')).toBe('0.1.0');
      expect(worker!.skein.get('@skein/core-worker')).toBe('0.1.0');
      for (const p of [v.client, v.scheduler, worker!]) expect(p.skein.get('@skein/common')).toBe('0.1.0');
    } finally {
      await client.close();
    }
  });

  it('a worker reporting another version: the next client warns once at connect naming it, and check: true throws VersionMismatchError', async () => {
    // A second worker, reporting another @skein/common through the documented override, and with a
    // stub package of its own in its cluster package directory.
    const otherBase = join(base, 'other');
    const info0 = await (async () => {
      const c = await Client.connect(cluster);
      try {
        return await c.schedulerInfo();
      } finally {
        await c.close();
      }
    })();
    const [, host, port] = /^tcp:\/\/(.+):(\d+)$/.exec(cluster.schedulerAddress)!;
    writePackage(join(otherBase, `${host}-${port}`, 'npm', 'node_modules', 'skein-stub-pkg'), 'skein-stub-pkg', '2.0.0');
    extra = startProcess([SKEIN_BIN, 'worker', cluster.schedulerAddress, '--name', 'odd-one', '--packages-dir', otherBase, '--host', '127.0.0.1', '--nthreads', '1', '--memory-limit', '1GB'], {
      SKEIN_VERSIONS_OVERRIDE: JSON.stringify({ '@skein/common': '9.9.9' }),
      SKEIN_LOG_LEVEL: 'warn',
    });
    expect(info0.workers).toHaveLength(1);
    const c0 = await Client.connect(cluster);
    let odd = '';
    try {
      await until(async () => {
        const w = (await c0.schedulerInfo()).workers.find((x) => x.name === 'odd-one');
        odd = w?.address ?? '';
        return odd !== '';
      }, 20_000, 'the extra worker to register');
    } finally {
      await c0.close();
    }

    const { value: client, warnings } = await versionWarnings(() => Client.connect(cluster));
    try {
      expect(warnings).toHaveLength(1);
      expect(warnings[0]!.message).toContain(`@skein/common: 0.1.0 on client, scheduler, worker ${info0.workers[0]!.address}; 9.9.9 on worker ${odd}`);

      const v = await client.getVersions();
      expect(v.workers.get(odd)!.skein.get('@skein/common')).toBe('9.9.9');
      const err = await client.getVersions({ check: true }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(VersionMismatchError);
      const e = err as VersionMismatchError;
      expect(e.code).toBe('version_mismatch');
      expect(e.differences.map((d) => d.what)).toEqual(['@skein/common']);
      expect(e.differences[0]!.versions.get('9.9.9')).toEqual([`worker ${odd}`]);
      expect(e.message).toContain(`9.9.9 on worker ${odd}`);

      // A named package: found by the odd worker in its package directory, by nobody else.
      const named = await client.getVersions({ packages: ['skein-stub-pkg'] });
      expect(named.workers.get(odd)!.packages.get('skein-stub-pkg')).toBe('2.0.0');
      expect(named.client.packages.get('skein-stub-pkg')).toBeNull();
      expect(named.scheduler.packages.get('skein-stub-pkg')).toBeNull();
      expect(named.workers.get(info0.workers[0]!.address)!.packages.get('skein-stub-pkg')).toBeNull();
      const e2 = (await client.getVersions({ check: true, packages: ['skein-stub-pkg'] }).catch((x: unknown) => x)) as VersionMismatchError;
      expect(e2.differences.map((d) => d.what).sort()).toEqual(['@skein/common', 'package skein-stub-pkg']);
      expect(e2.message).toContain(`2.0.0 on worker ${odd}`);

      await expect(client.getVersions({ packages: ['../etc'] })).rejects.toThrow(/not an npm package name/);
      await expect(client.getVersions({ packages: Array.from({ length: 1001 }, (_, i) => `p${i}`) })).rejects.toThrow(/at most 1000/);
    } finally {
      await client.close();
    }
  });
});

describe('in-process workers of two clusters', () => {
  let base: string;
  const clusters: LocalCluster[] = [];
  const workers: Worker[] = [];
  const clients: Client[] = [];

  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'skein-env-inproc-'));
  });
  afterAll(async () => {
    for (const c of clients) await c.close();
    for (const w of workers) await w.close();
    for (const c of clusters) await c.close();
    rmSync(base, { recursive: true, force: true });
  });

  it("each worker's upload lands in its own cluster's package directory", async () => {
    for (const tag of ['a', 'b']) {
      const cluster = await LocalCluster.start({ nWorkers: 0 });
      clusters.push(cluster);
      workers.push(await Worker.start({ scheduler: cluster.schedulerAddress, name: `inproc-${tag}`, nthreads: 1, packagesDir: base }));
      clients.push(await Client.connect(cluster));
    }
    const file = join(base, 'which.mjs');
    writeFileSync(file, "export const cluster = 'a';\n");
    // To the first cluster, whose worker started first (the second one's start set the process's SKEIN_PACKAGES_ROOT).
    const res = await clients[0]!.registerPlugin(UploadFile(file));
    expect(res.results.map((r) => r.ok)).toEqual([true]);
    const [rootA, rootB] = clusters.map((c) => packagesRoot(c.schedulerAddress, base));
    expect(existsSync(join(rootA!, 'uploads', 'node_modules', 'which.mjs'))).toBe(true);
    expect(existsSync(join(rootB!, 'uploads', 'node_modules', 'which.mjs'))).toBe(false);
  });
});

describe('a `skein worker` joiner and a start-time NpmInstall(restartWorkers)', () => {
  let base: string;
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    base = mkdtempSync(join(tmpdir(), 'skein-env-joiner-'));
    cluster = await LocalCluster.start({ nWorkers: 0, env: { SKEIN_PACKAGES_DIR: base } });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
    rmSync(base, { recursive: true, force: true });
  });

  it('the worker the CLI started early (before the install) is replaced: its --preload sees the packages', async () => {
    const tarball = packPackage(base, 'skein-fixture-three', '3.0.0');
    const preload = join(base, 'preload-three.mjs');
    writeFileSync(
      preload,
      "export async function setup() {\n  try {\n    globalThis.__three = (await import('skein-fixture-three')).version;\n  } catch (e) {\n    globalThis.__three = 'missing: ' + e.message;\n  }\n}\n",
    );
    // No nanny yet: nothing installs now; the joiner's nanny installs at its start.
    expect((await client.registerPlugin(NpmInstall({ packages: [tarball], restartWorkers: true }))).results).toEqual([]);
    const cli = startProcess([SKEIN_BIN, 'worker', cluster.schedulerAddress, '--host', '127.0.0.1', '--name', 'cli-joiner', '--preload', preload, '--ready-json'], { SKEIN_PACKAGES_DIR: base });
    try {
      const ready = await readyOf(cli);
      const useThree = fromSource<() => Promise<string>>("async () => (await import('skein-fixture-three')).version");
      expect(await client.submitWith({ workers: [ready.address], pure: false }, useThree).result()).toBe('3.0.0');
      // The worker's preload ran after the install.
      expect(await client.runWith({ workers: [ready.address] }, () => (globalThis as { __three?: string }).__three ?? null)).toEqual({ [ready.address]: '3.0.0' });
    } finally {
      cli.kill('SIGTERM');
      await cli.exited;
    }
  });
});

describe('--preload and --module names without ./', () => {
  let dir: string;
  const procs: Proc[] = [];
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'skein-env-preload-'));
  });
  afterAll(async () => {
    for (const p of procs) {
      p.kill('SIGTERM');
      await p.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('`--preload x.mjs` is the file x.mjs in the cwd, as `--module x.mjs` is, on the scheduler and a worker', async () => {
    writeFileSync(join(dir, 'hello-preload.mjs'), "export function setup(ctx) { globalThis.__helloPreload = ctx.name; console.error('hello-preload set up'); }\n");
    const s = startProcess([SKEIN_BIN, 'scheduler', '--port', '0', '--no-dashboard', '--host', '127.0.0.1', '--preload', 'hello-preload.mjs', '--ready-json'], {}, dir);
    procs.push(s);
    const sched = await readyOf(s);
    await s.waitFor(/hello-preload set up/);
    const w = startProcess([SKEIN_BIN, 'worker', sched.address, '--no-nanny', '--host', '127.0.0.1', '--preload', 'hello-preload.mjs', '--ready-json'], {}, dir);
    procs.push(w);
    const ready = await readyOf(w);
    const client = await Client.connect(sched.address);
    try {
      const got = await client.run(() => (globalThis as { __helloPreload?: string }).__helloPreload ?? null);
      expect(got).toEqual({ [ready.address]: `preload:${join(dir, 'hello-preload.mjs')}` });
    } finally {
      await client.close();
    }
  });
});

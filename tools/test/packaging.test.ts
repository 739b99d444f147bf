// The packages as users get them: `pnpm pack` every package (pnpm turns workspace: ranges into
// versions), check each tarball, then install @skein/client alone in an empty folder and import it.
// Needs `pnpm build` first (tools/test.sh does it) and the npm registry for third-party dependencies.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, run } from './processes.js';

interface Manifest {
  name: string;
  version: string;
  bin?: string | Record<string, string>;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
}

interface Packed {
  dir: string; // the package's folder in the repo
  source: Manifest; // its package.json in the repo
  tarball: string;
  files: string[]; // paths inside the tarball, without the leading "package/"
  packed: Manifest; // the package.json inside the tarball
}

const packagesDir = join(repoRoot, 'packages');
const packageDirs = readdirSync(packagesDir, { withFileTypes: true })
  .filter((d) => d.isDirectory() && existsSync(join(packagesDir, d.name, 'package.json')))
  .map((d) => d.name)
  .sort();

const work = mkdtempSync(join(tmpdir(), 'skein-packaging-'));
const packed = new Map<string, Packed>(); // by package name

function binPaths(bin: Manifest['bin'], name: string): [string, string][] {
  if (!bin) return [];
  if (typeof bin === 'string') return [[name.replace(/^@[^/]+\//, ''), bin]];
  return Object.entries(bin);
}

const normalize = (p: string) => p.replace(/^\.\//, '');

beforeAll(async () => {
  for (const d of packageDirs) {
    const dir = join(packagesDir, d);
    const source = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;
    const dest = join(work, 'tarballs', d);
    const r = await run('pnpm', ['pack', '--pack-destination', dest], { cwd: dir, timeoutMs: 120_000 });
    if (r.code !== 0) throw new Error(`pnpm pack failed in packages/${d}:\n${r.stdout}\n${r.stderr}`);
    const tgz = readdirSync(dest).filter((f) => f.endsWith('.tgz'));
    if (tgz.length !== 1) throw new Error(`expected one tarball from packages/${d}, got ${tgz.join(', ') || 'none'}`);
    const tarball = join(dest, tgz[0]!);
    const list = await run('tar', ['-tzf', tarball]);
    if (list.code !== 0) throw new Error(`tar -tzf ${tarball} failed: ${list.stderr}`);
    const files = list.stdout
      .split('\n')
      .filter(Boolean)
      .map((f) => f.replace(/^package\//, ''));
    const manifest = await run('tar', ['-xzOf', tarball, 'package/package.json']);
    const packedManifest = JSON.parse(manifest.stdout) as Manifest;
    packed.set(source.name, { dir: d, source, tarball, files, packed: packedManifest });
  }
});

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe.each(packageDirs)('packages/%s tarball', (d) => {
  const get = () => [...packed.values()].find((p) => p.dir === d)!;

  it('holds dist/index.js, README.md and its package.json with its own name and version', () => {
    const p = get();
    expect(p.files).toContain('dist/index.js');
    expect(p.files).toContain('README.md');
    expect(p.files).toContain('package.json');
    expect(p.packed.name).toBe(p.source.name);
    expect(p.packed.version).toBe(p.source.version);
  });

  it('has no workspace: ranges left', () => {
    const p = get();
    for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies'] as const) {
      for (const [dep, range] of Object.entries(p.packed[field] ?? {})) {
        expect(range, `${field}.${dep}`).not.toMatch(/^workspace:/);
      }
    }
  });

  it('holds the files its bins point to', () => {
    const p = get();
    for (const [bin, path] of binPaths(p.packed.bin, p.packed.name)) {
      expect(p.files, `bin "${bin}" -> ${path}`).toContain(normalize(path));
    }
  });
});

describe('@skein/client installed alone', () => {
  it('pulls in neither the scheduler nor the worker, and imports', async () => {
    // The @skein packages @skein/client needs, transitively, come from the tarballs.
    const needed = new Set<string>();
    const visit = (name: string) => {
      if (needed.has(name)) return;
      const p = packed.get(name);
      if (!p) throw new Error(`${name} is needed by @skein/client but is not a package of this repo`);
      needed.add(name);
      for (const field of ['dependencies', 'peerDependencies', 'optionalDependencies'] as const) {
        for (const dep of Object.keys(p.packed[field] ?? {})) if (dep.startsWith('@skein/') || dep === 'skein') visit(dep);
      }
    };
    visit('@skein/client');

    const app = join(work, 'app');
    rmSync(app, { recursive: true, force: true });
    await run('mkdir', ['-p', app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }, null, 2));
    const tarballs = [...needed].map((n) => packed.get(n)!.tarball);
    const install = await run(
      'npm',
      ['install', '--no-audit', '--no-fund', '--loglevel=error', ...tarballs],
      { cwd: app, timeoutMs: 240_000 },
    );
    expect(install.code, `npm install failed:\n${install.stdout}\n${install.stderr}`).toBe(0);

    const skeinDir = join(app, 'node_modules', '@skein');
    const installed = readdirSync(skeinDir).sort();
    expect(installed).toEqual([...needed].map((n) => n.replace('@skein/', '')).sort());
    expect(installed).not.toContain('core-scheduler');
    expect(installed).not.toContain('core-worker');
    expect(existsSync(join(app, 'node_modules', 'skein'))).toBe(false);

    // Every @skein package came from a tarball, none from a registry.
    const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { version?: string; resolved?: string }>;
    };
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (!/node_modules\/(@skein\/[^/]+|skein)$/.test(path)) continue;
      expect(entry.resolved ?? '', `${path} in package-lock.json`).toMatch(/^file:/);
    }

    const imported = await run(
      process.execPath,
      ['--input-type=module', '-e', "const m = await import('@skein/client'); console.log(typeof m);"],
      { cwd: app },
    );
    expect(imported.code, `import('@skein/client') failed:\n${imported.stderr}`).toBe(0);
    expect(imported.stdout.trim()).toBe('object');
  });
});

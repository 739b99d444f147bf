import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PluginHost, importPluginModule, type PluginSpecData } from '../src/plugins.js';
import type { Logger } from '../src/log.js';

const silent = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined };

/** A host whose plugins log to `events` (a global the source modules reach). */
function host(log: Logger = silent): { h: PluginHost<{ name: string; options: unknown }>; events: string[] } {
  const events: string[] = [];
  (globalThis as { __phEvents?: string[] }).__phEvents = events;
  const h = new PluginHost<{ name: string; options: unknown }>({
    kind: 'worker',
    target: () => ({ target: 'tcp://w:1', targetName: 'w' }),
    context: (name, options) => ({ name, options }),
    importer: (s) => import(s),
    log,
  });
  return { h, events };
}

const FACTORY = `export default (o) => ({
  setup(ctx) { globalThis.__phEvents.push('setup ' + ctx.name + ' ' + JSON.stringify(o)); if (o && o.fail) throw new RangeError('bad ' + o.fail); },
  teardown(ctx) { globalThis.__phEvents.push('teardown ' + ctx.name + ' ' + JSON.stringify(o)); },
  transition(key, from, to) { globalThis.__phEvents.push('t ' + key + ' ' + from + '->' + to); },
});`;
const spec = (name: string, id: string, options?: unknown, source = FACTORY): PluginSpecData => ({
  name,
  kind: 'worker',
  module: '',
  source,
  optionsJson: options === undefined ? '' : JSON.stringify(options),
  id,
  failWorker: false,
});

describe('PluginHost', () => {
  it('reports a setup that does not settle within its timeout as timed out, and goes on with the next plugin', async () => {
    const { h, events } = host();
    const hanging = `export default () => ({ setup() { globalThis.__phEvents.push('hang'); return new Promise(() => {}); } });`;
    const r = await h.setup({ ...spec('slow', 'id1', undefined, hanging), timeoutMs: 50 });
    expect(r).toMatchObject({ ok: false, stage: 'setup', error: { type: 'TimeoutError' } });
    expect(r.error!.message).toMatch(/"slow".*50 ms/);
    expect(await h.setup(spec('next', 'id2', { v: 1 }))).toMatchObject({ ok: true });
    expect(events).toEqual(['hang', 'setup next {"v":1}']);
  });

  it('replaces a plugin whose old teardown throws: the error is logged and the new one is set up (Dask plugin_add)', async () => {
    const errors: string[] = [];
    const { h: logged, events } = host({ ...silent, error: (m: string) => void errors.push(m) });
    const throwing = `export default () => ({ setup() { globalThis.__phEvents.push('setup old'); }, teardown() { throw new Error('teardown broke'); } });`;
    expect(await logged.setup(spec('p', 'id1', undefined, throwing))).toMatchObject({ ok: true });
    expect(await logged.setup(spec('p', 'id2', { v: 2 }))).toMatchObject({ ok: true });
    expect(events).toEqual(['setup old', 'setup p {"v":2}']);
    expect(logged.ids()).toEqual(['id2']);
    expect(errors.some((m) => m.includes('teardown broke'))).toBe(true);
  });

  it('sets up, skips a registration id already applied, replaces a name (teardown first), and tears down', async () => {
    const { h, events } = host();
    expect(await h.setup(spec('p', 'id1', { v: 1 }))).toEqual({ name: 'p', kind: 'worker', target: 'tcp://w:1', targetName: 'w', ok: true });
    expect(await h.setup(spec('p', 'id1', { v: 1 }))).toMatchObject({ ok: true });
    expect(events).toEqual(['setup p {"v":1}']);
    await h.setup(spec('p', 'id2', { v: 2 }));
    expect(events).toEqual(['setup p {"v":1}', 'teardown p {"v":1}', 'setup p {"v":2}']);
    expect(h.ids()).toEqual(['id2']);
    h.transition('k', 'ready', 'executing', {});
    expect(events[events.length - 1]).toBe('t k ready->executing');
    expect(await h.teardown('p')).toMatchObject({ ok: true });
    expect(h.size).toBe(0);
    expect(h.transitionHooks).toHaveLength(0);
    // Not applied: nothing to do.
    expect(await h.teardown('p')).toMatchObject({ ok: true });
  });

  it('reports a throwing setup with its type and message; the plugin stays applied, so its teardown still runs (Dask)', async () => {
    const { h, events } = host();
    const r = await h.setup(spec('bad', 'id1', { fail: 'db' }));
    expect(r).toMatchObject({ ok: false, stage: 'setup', error: { type: 'RangeError', message: 'bad db' } });
    expect(r.error!.stack).toContain('RangeError');
    expect(h.has('bad')).toBe(true);
    await h.closeAll();
    expect(events).toEqual(['setup bad {"fail":"db"}', 'teardown bad {"fail":"db"}']);
    // A module that cannot be loaded leaves nothing behind.
    const missing = await h.setup({ ...spec('gone', 'id2'), source: '', module: '/nonexistent/plugin.mjs' });
    expect(missing).toMatchObject({ ok: false, stage: 'load' });
    expect(h.has('gone')).toBe(false);
  });

  it('takes named hook exports, and refuses a module that exports no plugin', async () => {
    const { h, events } = host();
    await h.setup(spec('named', 'id1', { x: 1 }, `export function setup(ctx) { globalThis.__phEvents.push('named ' + JSON.stringify(ctx.options)); }`));
    expect(events).toEqual(['named {"x":1}']);
    const r = await h.setup(spec('none', 'id2', undefined, `export const nothing = 1;`));
    expect(r).toMatchObject({ ok: false, error: { type: 'InvalidArgumentError' } });
    expect(r.error!.message).toMatch(/exports no plugin: export a default factory/);
  });

  it('runs setups and teardowns one at a time, in the order asked', async () => {
    const { h, events } = host();
    const slow = `export default () => ({ async setup(ctx) { await new Promise((r) => setTimeout(r, 30)); globalThis.__phEvents.push('slow'); }, teardown() { globalThis.__phEvents.push('slow down'); } });`;
    const all = Promise.all([h.setup(spec('s', 'i1', undefined, slow)), h.teardown('s'), h.setup(spec('f', 'i2'))]);
    await all;
    expect(events).toEqual(['slow', 'slow down', 'setup f undefined']);
    await h.closeAll();
    expect(events[events.length - 1]).toBe('teardown f undefined');
  });
});

describe('plugin sources on disk', () => {
  /** Runs `fn` with TMPDIR (os.tmpdir()) pointing at a fresh directory. */
  async function inTmp(fn: (root: string, dir: string) => Promise<void>): Promise<void> {
    const root = mkdtempSync(join(tmpdir(), 'skein-src-test-'));
    const saved = process.env['TMPDIR'];
    process.env['TMPDIR'] = root;
    try {
      await fn(root, join(root, `skein-plugins-${process.getuid!()}`));
    } finally {
      if (saved === undefined) delete process.env['TMPDIR'];
      else process.env['TMPDIR'] = saved;
      rmSync(root, { recursive: true, force: true });
    }
  }
  const importer = (s: string) => import(s);

  it('imports a source from a per-user 0700 directory and never a planted file under its hash name', async () => {
    await inTmp(async (_root, dir) => {
      const source = `export const who = 'genuine ${Math.random()}';`;
      const hash = createHash('sha256').update(source).digest('hex');
      mkdirSync(dir, { recursive: true, mode: 0o755 });
      writeFileSync(join(dir, `${hash}.mjs`), "export const who = 'planted';");
      const mod = await importPluginModule({ module: '', source }, importer);
      expect(mod['who']).toBe(source.slice(source.indexOf("'") + 1, source.lastIndexOf("'")));
      expect(statSync(dir).mode & 0o777).toBe(0o700);
    });
  });

  it('refuses a plugin source directory that is a symbolic link', async () => {
    await inTmp(async (root, dir) => {
      const elsewhere = join(root, 'elsewhere');
      mkdirSync(elsewhere);
      symlinkSync(elsewhere, dir);
      await expect(importPluginModule({ module: '', source: 'export const x = 1;' }, importer)).rejects.toThrow(/symbolic link/);
    });
  });
});

import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { Client, NpmInstall, NpmInstallError, PluginSetupError, SkeinError, pluginErrorOf } from '@skein/client';
import { SchedulerServiceClient, WorkerServiceClient } from '@skein/protocol';
import { LocalCluster } from '../src/index.js';
import { SKEIN_BIN, readyOf, startProcess, until, type Proc } from './helpers.js';

// Plugins (client.registerPlugin) and --preload against real clusters, after Dask's
// test_worker_plugin.py, test_scheduler_plugin.py, test_nanny_plugin.py and test_preload.py.

const dir = mkdtempSync(join(tmpdir(), 'skein-plugins-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function fixture(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** A worker plugin that keeps what happened to it on the worker's globalThis, where client.run reads it. */
const WORKER_PLUGIN = fixture(
  'worker-plugin.mjs',
  `
export default function create(options) {
  const slot = (globalThis.__skeinPlugins ??= {});
  return {
    setup(ctx) {
      const s = (slot[ctx.name] ??= { setups: 0, teardowns: 0, transitions: [] });
      s.setups++;
      s.status = 'setup';
      s.options = options;
      s.worker = { name: ctx.worker.name, address: ctx.worker.address, localDirectory: ctx.worker.localDirectory, pid: ctx.worker.pid };
      if (options && options.failOn === ctx.worker.name) throw new TypeError('no database on ' + ctx.worker.name);
    },
    teardown(ctx) {
      const s = slot[ctx.name];
      s.teardowns++;
      s.status = 'teardown';
    },
    transition(key, from, to) {
      if (options && options.record) slot[options.record].transitions.push([key, from, to]);
    },
  };
}
`,
);

/** Reads one plugin's record on every worker. */
async function records(client: Client, name: string): Promise<Record<string, { setups: number; teardowns: number; status: string; options: unknown; worker: { name: string; address: string; localDirectory: string; pid: number }; transitions: string[][] } | null>> {
  return client.run((n: string) => ((globalThis as { __skeinPlugins?: Record<string, unknown> }).__skeinPlugins?.[n] ?? null) as never, name);
}

describe('worker plugins', () => {
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 2, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it('sets a plugin up on every worker with its options and the worker context, and on a worker that joins later', async () => {
    const res = await client.registerPlugin({ kind: 'worker', module: WORKER_PLUGIN, options: { answer: 42 } }, { name: 'db' });
    expect(res.name).toBe('db');
    expect(res.results).toHaveLength(2);
    expect(res.results.every((r) => r.ok && r.kind === 'worker')).toBe(true);
    const info = await client.schedulerInfo();
    expect(new Set(res.results.map((r) => r.target))).toEqual(new Set(info.workers.map((w) => w.address)));
    let rec = await records(client, 'db');
    for (const [address, r] of Object.entries(rec)) {
      expect(r).toMatchObject({ setups: 1, teardowns: 0, status: 'setup', options: { answer: 42 } });
      expect(r!.worker.address).toBe(address);
      expect(r!.worker.name).toMatch(/^local-/);
      expect(existsSync(r!.worker.localDirectory)).toBe(true);
    }
    // Dask's test_create_with_client: a worker started after the registration gets the plugin.
    await cluster.scale(3);
    await cluster.waitForWorkers(3);
    rec = await records(client, 'db');
    expect(Object.keys(rec)).toHaveLength(3);
    for (const r of Object.values(rec)) expect(r).toMatchObject({ setups: 1, status: 'setup', options: { answer: 42 } });
    await cluster.scale(2);
    await until(async () => (await client.schedulerInfo()).workers.length === 2, 20_000, 'the third worker to leave');
    await client.unregisterPlugin('db');
  });

  it('replaces a plugin registered again under its name, and leaves it with idempotent', async () => {
    await client.registerPlugin({ kind: 'worker', module: WORKER_PLUGIN, options: { v: 1 } }, { name: 'again' });
    const skipped = await client.registerPlugin({ kind: 'worker', module: WORKER_PLUGIN, options: { v: 2 } }, { name: 'again', idempotent: true });
    expect(skipped).toMatchObject({ skipped: true, results: [] });
    for (const r of Object.values(await records(client, 'again'))) expect(r).toMatchObject({ setups: 1, teardowns: 0, options: { v: 1 } });
    const replaced = await client.registerPlugin({ kind: 'worker', module: WORKER_PLUGIN, options: { v: 3 } }, { name: 'again' });
    expect(replaced.skipped).toBe(false);
    expect(replaced.results.map((r) => r.ok)).toEqual([true, true]);
    // Dask's plugin_add: the old instance is torn down, the new one set up.
    for (const r of Object.values(await records(client, 'again'))) expect(r).toMatchObject({ setups: 2, teardowns: 1, status: 'setup', options: { v: 3 } });
    await client.unregisterPlugin('again');
  });

  it('tears a plugin down everywhere on unregister; an unknown name is NOT_FOUND', async () => {
    await client.registerPlugin({ kind: 'worker', module: WORKER_PLUGIN }, { name: 'gone' });
    const res = await client.unregisterPlugin('gone');
    expect(res.results.map((r) => r.ok)).toEqual([true, true]);
    for (const r of Object.values(await records(client, 'gone'))) expect(r).toMatchObject({ setups: 1, teardowns: 1, status: 'teardown' });
    const err = await client.unregisterPlugin('gone').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SkeinError);
    expect((err as SkeinError).code).toBe('not_found');
    expect((err as Error).message).toMatch(/No plugin named "gone" is registered/);
  });

  it('reports a setup that throws per worker, naming the worker and the error; the worker keeps running', async () => {
    const info = await client.schedulerInfo();
    const victim = info.workers[0]!;
    const err = await client.registerPlugin({ kind: 'worker', module: WORKER_PLUGIN, options: { failOn: victim.name } }, { name: 'flaky' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginSetupError);
    const e = err as PluginSetupError;
    expect(e.message).toContain(victim.address);
    expect(e.message).toContain(`TypeError: no database on ${victim.name}`);
    expect(e.message).toMatch(/failed its setup on 1 of 2 worker/);
    const failed = e.results.filter((r) => !r.ok);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ target: victim.address, targetName: victim.name, error: { type: 'TypeError', message: `no database on ${victim.name}` } });
    // Nobody went down: both workers are there, under the same addresses, and run tasks.
    const after = await client.schedulerInfo();
    expect(after.workers.map((w) => w.address).sort()).toEqual(info.workers.map((w) => w.address).sort());
    const outs = await client.gather(client.map((x: number) => x + 1, [1, 2, 3, 4, 5, 6]));
    expect(outs).toEqual([2, 3, 4, 5, 6, 7]);
    // raiseOnError: false gives the same results without throwing.
    const quiet = await client.registerPlugin({ kind: 'worker', module: WORKER_PLUGIN, options: { failOn: victim.name } }, { name: 'flaky', raiseOnError: false });
    expect(quiet.results.filter((r) => !r.ok).map((r) => r.target)).toEqual([victim.address]);
    await client.unregisterPlugin('flaky');
    // As in Dask, a plugin whose setup threw stays on its worker until removed: its teardown ran too.
    for (const r of Object.values(await records(client, 'flaky'))) expect(r).toMatchObject({ setups: 2, teardowns: 2, status: 'teardown' });
  });

  it('closes the worker whose setup throws when the plugin asks (failWorker)', async () => {
    const info = await client.schedulerInfo();
    const victim = info.workers[0]!;
    // Fails once (the nanny's fresh worker then sets it up fine).
    const marker = join(dir, 'failed-once');
    const src = `
import { existsSync, writeFileSync } from 'node:fs';
export function setup(ctx) {
  if (ctx.worker.name === ${JSON.stringify(victim.name)} && !existsSync(${JSON.stringify(marker)})) {
    writeFileSync(${JSON.stringify(marker)}, 'x');
    throw new Error('cannot reach the database');
  }
}`;
    const err = await client.registerPlugin({ kind: 'worker', source: src, failWorker: true }, { name: 'fatal' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginSetupError);
    expect((err as Error).message).toContain(`${victim.address} (${victim.name}): Error: cannot reach the database`);
    // The victim closed; its nanny started a fresh worker under the same name, which got the plugin.
    await until(async () => {
      const ws = (await client.schedulerInfo()).workers;
      return ws.length === 2 && ws.some((w) => w.name === victim.name && w.address !== victim.address);
    }, 30_000, 'the failed worker to be replaced');
    await client.unregisterPlugin('fatal');
  });

  it("calls a plugin's transition hook with the worker's task transitions", async () => {
    await client.registerPlugin({ kind: 'worker', module: WORKER_PLUGIN, options: { record: 'trans' } }, { name: 'trans' });
    const f = client.submitWith({ key: 'plugin-transition-key' }, (x: number) => x * 2, 21);
    expect(await f.result()).toBe(42);
    const rec = await records(client, 'trans');
    const seen = Object.values(rec).flatMap((r) => r!.transitions.filter((t) => t[0] === 'plugin-transition-key'));
    expect(seen.map((t) => `${t[1]}->${t[2]}`)).toEqual(expect.arrayContaining(['executing->memory']));
    expect(seen.some((t) => t[2] === 'executing')).toBe(true);
    await client.unregisterPlugin('trans');
  });

  it('names a plugin after its module and options by default; a teardown that throws is reported, the plugin unregistered all the same', async () => {
    const a = await client.registerPlugin({ kind: 'worker', module: WORKER_PLUGIN, options: { n: 1 } });
    expect(a.name).toMatch(/^worker-[0-9a-f]{12}$/);
    // The same description gets the same name: registering it again replaces it.
    const b = await client.registerPlugin({ kind: 'worker', module: WORKER_PLUGIN, options: { n: 1 } });
    expect(b.name).toBe(a.name);
    for (const r of Object.values(await records(client, a.name))) expect(r).toMatchObject({ setups: 2, teardowns: 1 });
    await client.unregisterPlugin(a.name);

    await client.registerPlugin({ kind: 'worker', source: `export default () => ({ teardown() { throw new Error('pool will not close'); } });` }, { name: 'stuck' });
    const err = await client.unregisterPlugin('stuck').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginSetupError);
    expect((err as PluginSetupError).phase).toBe('teardown');
    expect((err as Error).message).toMatch(/failed its teardown on 2 of 2 worker\(s\): .*Error: pool will not close/);
    await expect(client.unregisterPlugin('stuck')).rejects.toThrow(/No plugin named "stuck"/);
  });

  it('reports a setup that never settles as timed out after the registration timeout; the worker goes on with other plugins', async () => {
    const res = await client.registerPlugin({ kind: 'worker', source: 'export function setup() { return new Promise(() => {}); }' }, { name: 'hangs', timeoutMs: 300, raiseOnError: false });
    expect(res.results).toHaveLength(2);
    for (const r of res.results) {
      expect(r).toMatchObject({ ok: false, stage: 'setup', error: { type: 'TimeoutError', code: 'deadline_exceeded' } });
      expect(r.error!.message).toMatch(/"hangs".*300 ms/);
    }
    const next = await client.registerPlugin({ kind: 'worker', module: WORKER_PLUGIN }, { name: 'after-hang' });
    expect(next.results.map((r) => r.ok)).toEqual([true, true]);
    await client.unregisterPlugin('after-hang');
    await client.unregisterPlugin('hangs', { raiseOnError: false });
  });

  it('refuses bad descriptions with a clear error', async () => {
    await expect(client.registerPlugin({ kind: 'worker' })).rejects.toThrow(/exactly one of `module`/);
    await expect(client.registerPlugin({ kind: 'gpu' as never, module: WORKER_PLUGIN })).rejects.toThrow(/plugin kind "gpu" is not one of worker, scheduler, nanny/);
    const missing = await client.registerPlugin({ kind: 'worker', module: join(dir, 'nope.mjs') }, { name: 'missing', raiseOnError: false });
    expect(missing.results.every((r) => !r.ok && /nope\.mjs/.test(r.error!.message))).toBe(true);
    await client.unregisterPlugin('missing');
  });
});

describe('plugin races', () => {
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 1, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it("an unregister waits for a register of the same name still in progress, so the plugin ends up torn down everywhere", async () => {
    const entered = join(dir, 'ser-entered');
    const release = join(dir, 'ser-release');
    // A nanny plugin whose teardown holds until the test says so.
    const nannyMod = fixture(
      'ser-nanny-plugin.mjs',
      `import { existsSync, writeFileSync } from 'node:fs';
export default () => ({
  setup() {},
  async teardown() {
    writeFileSync(${JSON.stringify(entered)}, '');
    const end = Date.now() + 30000;
    while (!existsSync(${JSON.stringify(release)}) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  },
});
`,
    );
    await client.registerPlugin({ kind: 'nanny', module: nannyMod }, { name: 'ser' });
    try {
      // Replacing it by a worker plugin tears the nanny one down first (held)...
      const reg = client.registerPlugin({ kind: 'worker', module: WORKER_PLUGIN }, { name: 'ser' });
      await until(async () => existsSync(entered), 20_000, 'the nanny teardown of ser to start');
      // ...and an unregister of the name comes in meanwhile.
      const un = cluster.scheduler.plugins.unregister('ser', 0);
      writeFileSync(release, '');
      expect((await reg).results.map((r) => r.ok)).toEqual([true]);
      expect((await un).results.map((r) => r.ok)).toEqual([true]);
      expect(Object.values(await records(client, 'ser')).map((r) => r?.status)).toEqual(['teardown']);
    } finally {
      writeFileSync(release, '');
    }
  }, 60_000);

  it('a worker that fetched a plugin at start and registers after its unregister tears it down', async () => {
    const block = join(dir, 'race-block');
    const entered = join(dir, 'race-entered');
    const release = join(dir, 'race-release');
    // Setup of a starting worker (GetPlugins, before it registers) waits while `block` exists.
    const mod = fixture(
      'race-plugin.mjs',
      `import { existsSync, writeFileSync } from 'node:fs';
export default () => ({
  async setup(ctx) {
    const s = ((globalThis.__skeinPlugins ??= {})[ctx.name] = { status: 'setup' });
    if (existsSync(${JSON.stringify(block)})) {
      writeFileSync(${JSON.stringify(entered)}, '');
      const end = Date.now() + 30000;
      while (!existsSync(${JSON.stringify(release)}) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    }
  },
  teardown(ctx) { globalThis.__skeinPlugins[ctx.name].status = 'teardown'; },
});
`,
    );
    await client.registerPlugin({ kind: 'worker', module: mod }, { name: 'race-2' });
    writeFileSync(block, '');
    try {
      const scaled = cluster.scale(2);
      await until(async () => existsSync(entered), 20_000, 'the new worker to start the setup of race-2');
      const un = await client.unregisterPlugin('race-2');
      expect(un.results).toHaveLength(1);
      writeFileSync(release, '');
      await scaled;
      await cluster.waitForWorkers(2);
      await until(async () => Object.values(await records(client, 'race-2')).every((r) => r?.status === 'teardown'), 10_000, 'every worker to tear race-2 down');
    } finally {
      rmSync(block, { force: true });
      writeFileSync(release, '');
    }
  }, 60_000);

  it('a nanny that fetched a nanny plugin at start and whose worker registers after its unregister tears it down', async () => {
    const block = join(dir, 'nrace-block');
    const entered = join(dir, 'nrace-entered');
    const release = join(dir, 'nrace-release');
    // The nannies of a LocalCluster run in this process: the plugin records on this globalThis.
    const mod = fixture(
      'nanny-race-plugin.mjs',
      `import { existsSync, writeFileSync } from 'node:fs';
export default () => ({
  async setup(ctx) {
    (globalThis.__nannyRace ??= new Map()).set(ctx.nanny.address, 'setup');
    if (existsSync(${JSON.stringify(block)})) {
      writeFileSync(${JSON.stringify(entered)}, '');
      const end = Date.now() + 30000;
      while (!existsSync(${JSON.stringify(release)}) && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
    }
  },
  teardown(ctx) { globalThis.__nannyRace.set(ctx.nanny.address, 'teardown'); },
});
`,
    );
    const before = (await client.schedulerInfo()).workers.length;
    await client.registerPlugin({ kind: 'nanny', module: mod }, { name: 'nrace' });
    writeFileSync(block, '');
    try {
      const scaled = cluster.scale(before + 1);
      await until(async () => existsSync(entered), 20_000, 'the new nanny to start the setup of nrace');
      await client.unregisterPlugin('nrace');
      writeFileSync(release, '');
      await scaled;
      await cluster.waitForWorkers(before + 1);
      const states = () => [...((globalThis as { __nannyRace?: Map<string, string> }).__nannyRace ?? new Map<string, string>()).values()];
      await until(async () => states().length === before + 1 && states().every((v) => v === 'teardown'), 10_000, 'every nanny to tear nrace down');
    } finally {
      rmSync(block, { force: true });
      writeFileSync(release, '');
    }
  }, 60_000);
});

describe('scheduler plugins', () => {
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 1, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it('sees start, graph updates, transitions, workers and clients coming and going, and close', async () => {
    // The LocalCluster's scheduler runs in this process: the plugin leaves its events here.
    const events: string[] = [];
    (globalThis as { __schedEvents?: string[] }).__schedEvents = events;
    const mod = fixture(
      'scheduler-plugin.mjs',
      `
const ev = (s) => globalThis.__schedEvents.push(s);
export default (options) => ({
  start(ctx) { ev('start ' + ctx.name + ' ' + options.tag + ' ' + ctx.scheduler.address); },
  updateGraph({ client, keys }) { ev('graph ' + keys.join(',')); },
  transition(key, from, to) { if (key === 'sp-key') ev('t ' + from + '->' + to); },
  addWorker({ address, name }) { ev('add-worker ' + name); },
  removeWorker({ address }) { ev('remove-worker ' + address); },
  addClient(id) { ev('add-client ' + id); },
  removeClient(id) { ev('remove-client ' + id); },
  close() { ev('close'); },
});
`,
    );
    const res = await client.registerPlugin({ kind: 'scheduler', module: mod, options: { tag: 'T' } }, { name: 'sp' });
    expect(res.results).toMatchObject([{ kind: 'scheduler', ok: true, target: cluster.scheduler.address }]);
    expect(events).toEqual([`start sp T ${cluster.scheduler.address}`]);

    expect(await client.submitWith({ key: 'sp-key' }, (x: number) => x + 1, 1).result()).toBe(2);
    expect(events).toContain('graph sp-key');
    expect(events).toEqual(expect.arrayContaining(['t released->waiting', 't processing->memory']));

    await cluster.scale(2);
    await cluster.waitForWorkers(2);
    const added = (await client.schedulerInfo()).workers.find((w) => events.includes(`add-worker ${w.name}`));
    expect(added).toBeDefined();
    await cluster.scale(1);
    await until(() => events.some((e) => e.startsWith('remove-worker ')), 20_000, 'remove-worker');

    const other = await Client.connect(cluster);
    await until(() => events.some((e) => e.startsWith('add-client ')), 5_000, 'add-client');
    await other.close();
    await until(() => events.some((e) => e.startsWith('remove-client ')), 5_000, 'remove-client');
    const addId = events.find((e) => e.startsWith('add-client '))!.slice('add-client '.length);
    expect(events).toContain(`remove-client ${addId}`);

    await client.unregisterPlugin('sp');
    expect(events[events.length - 1]).toBe('close');
  });
});

describe('nanny plugins', () => {
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 1, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it("sets the worker's environment through its nanny and restarts it (restart: true); a nanny that joins later starts its worker with it", async () => {
    const before = (await client.schedulerInfo()).workers;
    const mod = fixture(
      'nanny-plugin.mjs',
      `
export default (options) => ({
  restart: true,
  setup(ctx) { ctx.setWorkerEnv(options.env); (globalThis.__nannySetups ??= []).push(ctx.nanny.address); },
  teardown(ctx) { (globalThis.__nannyTeardowns ??= []).push(ctx.nanny.address); },
});
`,
    );
    const res = await client.registerPlugin({ kind: 'nanny', module: mod, options: { env: { SKEIN_PLUGIN_VAR: 'from-the-nanny' } } }, { name: 'env' });
    expect(res.results).toHaveLength(1);
    expect(res.results[0]).toMatchObject({ kind: 'nanny', ok: true });
    const after = (await client.schedulerInfo()).workers;
    expect(after).toHaveLength(1);
    expect(after[0]!.pid).not.toBe(before[0]!.pid);
    expect(Object.values(await client.run(() => process.env['SKEIN_PLUGIN_VAR'] ?? null))).toEqual(['from-the-nanny']);
    // Tasks (worker threads) see it too.
    expect(await client.submit(() => process.env['SKEIN_PLUGIN_VAR'] ?? null).result()).toBe('from-the-nanny');

    await cluster.scale(2);
    await cluster.waitForWorkers(2);
    const vars = await client.run(() => process.env['SKEIN_PLUGIN_VAR'] ?? null);
    expect(Object.values(vars)).toEqual(['from-the-nanny', 'from-the-nanny']);
    const setups = (globalThis as { __nannySetups?: string[] }).__nannySetups!;
    expect(new Set(setups).size).toBe(2);

    // A CLI nanny (it starts its first worker early, before it reads the registry) joining now:
    // its worker has the environment from the start.
    const cli = startProcess([SKEIN_BIN, 'worker', cluster.scheduler.address, '--host', '127.0.0.1', '--name', 'cli-nanny', '--ready-json']);
    try {
      const ready = await readyOf(cli);
      const env = await client.runWith({ workers: [ready.address] }, () => process.env['SKEIN_PLUGIN_VAR'] ?? null);
      expect(env).toEqual({ [ready.address]: 'from-the-nanny' });
    } finally {
      cli.kill('SIGTERM');
      await cli.exited;
    }
    await until(async () => (await client.schedulerInfo()).workers.length === 2, 20_000, 'the CLI worker to leave');

    const un = await client.unregisterPlugin('env');
    expect(un.results.map((r) => r.ok)).toEqual([true, true]);
    expect(new Set((globalThis as { __nannyTeardowns?: string[] }).__nannyTeardowns)).toEqual(new Set(setups));
  });
});

/** A function from its source text (Vitest rewrites `import()` in test files). */
function fromSource<F>(source: string): F {
  return new Function(`return (${source});`)() as F;
}

describe('plugin errors on the wire', () => {
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 1, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it("an NpmInstall failure reaches the client with its code, npm's output and the stage", async () => {
    const missing = join(dir, 'no-such-package-dir');
    const res = await client.registerPlugin(NpmInstall({ packages: [missing] }), { name: 'npm-missing', raiseOnError: false });
    expect(res.results).toHaveLength(1);
    const r = res.results[0]!;
    expect(r).toMatchObject({ ok: false, stage: 'setup', error: { type: 'NpmInstallError', code: 'install_failed' } });
    expect(r.error!.details).toMatchObject({ packages: [missing] });
    expect(String(r.error!.details!['output'])).not.toBe('');
    const e = pluginErrorOf(r);
    expect(e).toBeInstanceOf(NpmInstallError);
    expect((e as NpmInstallError).output).toBe(r.error!.details!['output']);
    expect(e!.message).toBe(r.error!.message);
    await client.unregisterPlugin('npm-missing');
  }, 60_000);
});

describe('nanny plugins without nannies', () => {
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 1, nanny: false, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it('reports each worker without a nanny as a failed target instead of succeeding with no results', async () => {
    const worker = (await client.schedulerInfo()).workers[0]!;
    const desc = { kind: 'nanny' as const, source: 'export function setup(ctx) { ctx.setWorkerEnv({ A: "1" }); }' };
    const err = await client.registerPlugin(desc, { name: 'no-nanny' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginSetupError);
    expect((err as PluginSetupError).message).toContain(worker.address);
    expect((err as PluginSetupError).message).toMatch(/no nanny/);
    const res = await client.registerPlugin(desc, { name: 'no-nanny', raiseOnError: false });
    expect(res.results).toMatchObject([{ kind: 'nanny', ok: false, target: worker.address }]);
    expect(res.results[0]!.error!.message).toMatch(/start workers with a nanny to use nanny plugins/);
    await client.unregisterPlugin('no-nanny');
  });
});

describe('nanny plugin restarts', () => {
  let cluster: LocalCluster;
  let client: Client;
  const saved = process.env['SKEIN_ALLOWED_FAILURES'];

  beforeAll(async () => {
    process.env['SKEIN_ALLOWED_FAILURES'] = '1';
    cluster = await LocalCluster.start({ nWorkers: 1, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    if (saved === undefined) delete process.env['SKEIN_ALLOWED_FAILURES'];
    else process.env['SKEIN_ALLOWED_FAILURES'] = saved;
    await client?.close();
    await cluster?.close();
  });

  it('does not count a plugin-requested restart as a worker death: a task running through more restarts than allowed-failures completes', async () => {
    const mod = fixture('restarting-nanny-plugin.mjs', 'export default () => ({ restart: true, setup() {} });\n');
    const marker = join(dir, 'restarts-done');
    const held = client.submitWith(
      { pure: false },
      fromSource<(marker: string) => Promise<number>>(`async (marker) => {
        const { existsSync } = await import('node:fs');
        const end = Date.now() + 30000;
        while (!existsSync(marker)) {
          if (Date.now() > end) throw new Error('the test never wrote ' + marker);
          await new Promise((r) => setTimeout(r, 20));
        }
        return process.pid;
      }`),
      marker,
    );
    // allowed-failures is 1: two deaths under the task would fail it with KilledWorkerError.
    for (const name of ['restart-1', 'restart-2', 'restart-3']) {
      await until(async () => (await client.schedulerInfo()).workers.every((w) => w.processing > 0) || held.status !== 'pending', 20_000, 'the worker to hold the task');
      if (held.status !== 'pending') await held.result();
      expect(held.status).toBe('pending');
      const res = await client.registerPlugin({ kind: 'nanny', module: mod }, { name });
      expect(res.results.map((r) => r.ok)).toEqual([true]);
    }
    writeFileSync(marker, '');
    const pid = await held.result();
    expect((await client.schedulerInfo()).workers.map((w) => w.pid)).toEqual([pid]);
  }, 60_000);
});

describe('plugins with TLS', () => {
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 1, memoryLimit: '1GB', security: true });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  const call = <Res>(fn: (md: Metadata, cb: (err: ServiceError | null, res?: Res) => void) => void) =>
    new Promise<ServiceError | null>((resolve) => fn(new Metadata(), (err) => resolve(err)));

  it('hands worker and nanny plugins over mutual TLS; only a client registers, only the scheduler sets up', async () => {
    const res = await client.registerPlugin({ kind: 'worker', module: WORKER_PLUGIN }, { name: 'tls-w' });
    expect(res.results.map((r) => r.ok)).toEqual([true]);
    const n = await client.registerPlugin({ kind: 'nanny', source: 'export function setup() {}' }, { name: 'tls-n' });
    expect(n.results).toMatchObject([{ kind: 'nanny', ok: true }]);
    expect(n.results[0]!.target).toMatch(/^tls:\/\//);

    const security = cluster.security;
    // A worker certificate may not register plugins on the scheduler.
    const d = security.dial(cluster.scheduler.address, 'worker', 'scheduler');
    const sched = new SchedulerServiceClient(d.target, d.credentials, d.options);
    const refused = await call((md, cb) => sched.registerPlugin({ plugin: { name: 'x', kind: 'worker', module: WORKER_PLUGIN, source: '', optionsJson: '', id: '', failWorker: false, timeoutMs: 0 }, idempotent: false, timeoutMs: 0 }, md, cb));
    sched.close();
    expect(refused?.code).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(refused?.details).toMatch(/client/);
    // A client certificate may not set a plugin up on a worker directly.
    const worker = (await client.schedulerInfo()).workers[0]!.address;
    const wd = security.dial(worker, 'client', 'worker');
    const w = new WorkerServiceClient(wd.target, wd.credentials, wd.options);
    const denied = await call((md, cb) => w.setupPlugin({ plugin: { name: 'x', kind: 'worker', module: WORKER_PLUGIN, source: '', optionsJson: '', id: 'i', failWorker: false, timeoutMs: 0 } }, md, cb));
    w.close();
    expect(denied?.code).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(denied?.details).toMatch(/scheduler/);
    await client.unregisterPlugin('tls-w');
    await client.unregisterPlugin('tls-n');
  });

  it("reads to a worker only the worker plugins and to a nanny only the nanny plugins (options may hold secrets); an unknown kind is INVALID_ARGUMENT", async () => {
    await client.registerPlugin({ kind: 'nanny', source: 'export function setup() {}', options: { secret: 's3cret' } }, { name: 'tls-secret' });
    const get = (role: 'worker' | 'nanny', kind: string) =>
      new Promise<{ err: ServiceError | null; names: string[] }>((resolve) => {
        const d = cluster.security.dial(cluster.scheduler.address, role, 'scheduler');
        const sched = new SchedulerServiceClient(d.target, d.credentials, d.options);
        sched.getPlugins({ kind }, new Metadata(), (err, res) => {
          sched.close();
          resolve({ err, names: res?.plugins.map((p) => p.name) ?? [] });
        });
      });
    try {
      expect(await get('nanny', 'nanny')).toEqual({ err: null, names: ['tls-secret'] });
      const asWorker = await get('worker', 'nanny');
      expect(asWorker.err?.code).toBe(GrpcStatus.PERMISSION_DENIED);
      expect(asWorker.err?.details).toMatch(/nanny/);
      expect((await get('nanny', 'worker')).err?.code).toBe(GrpcStatus.PERMISSION_DENIED);
      expect((await get('worker', 'worker')).err).toBeNull();
      const unknown = await get('worker', 'bogus');
      expect(unknown.err?.code).toBe(GrpcStatus.INVALID_ARGUMENT);
      expect(unknown.err?.details).toMatch(/bogus/);
    } finally {
      await client.unregisterPlugin('tls-secret');
    }
  });
});

describe('--preload', () => {
  const procs: Proc[] = [];
  afterAll(() => {
    for (const p of procs) p.kill();
  });

  /** A preload module that writes `<role> setup <address>` / `<role> teardown` lines to a log file. */
  const log = join(dir, 'preload.log');
  const PRELOAD = fixture(
    'preload.mjs',
    `
import { appendFileSync } from 'node:fs';
const who = (ctx) => ctx.scheduler ? 'scheduler ' + ctx.scheduler.address : ctx.worker ? 'worker ' + ctx.worker.address : 'nanny ' + ctx.nanny.address;
export function setup(ctx) { appendFileSync(${JSON.stringify(log)}, who(ctx) + ' setup\\n'); }
export async function teardown(ctx) { appendFileSync(${JSON.stringify(log)}, who(ctx) + ' teardown\\n'); }
`,
  );
  const lines = () => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []);

  it('runs setup on a CLI-started scheduler, worker and nanny before they serve, and teardown when they stop', async () => {
    const s = startProcess([SKEIN_BIN, 'scheduler', '--port', '0', '--no-dashboard', '--host', '127.0.0.1', '--preload', PRELOAD, '--ready-json']);
    procs.push(s);
    const sched = await readyOf(s);
    expect(lines()).toEqual([`scheduler ${sched.address} setup`]);
    const w = startProcess([SKEIN_BIN, 'worker', sched.address, '--no-nanny', '--host', '127.0.0.1', '--preload', PRELOAD, '--ready-json']);
    procs.push(w);
    const worker = await readyOf(w);
    expect(lines()).toContain(`worker ${worker.address} setup`);
    const n = startProcess([SKEIN_BIN, 'worker', sched.address, '--host', '127.0.0.1', '--preload-nanny', PRELOAD, '--preload', PRELOAD, '--ready-json']);
    procs.push(n);
    const nw = await readyOf(n);
    const nannySetup = lines().findIndex((l) => l.startsWith('nanny ') && l.endsWith(' setup'));
    const nannyWorkerSetup = lines().indexOf(`worker ${nw.address} setup`);
    expect(nannySetup).toBeGreaterThan(0);
    // The nanny's preload ran before it started its worker.
    expect(nannyWorkerSetup).toBeGreaterThan(nannySetup);

    n.kill('SIGTERM');
    w.kill('SIGTERM');
    expect(await w.exited).toBe(0);
    await n.exited;
    s.kill('SIGTERM');
    await s.exited;
    const all = lines();
    expect(all).toContain(`worker ${worker.address} teardown`);
    expect(all).toContain(`worker ${nw.address} teardown`);
    expect(all.some((l) => l.startsWith('nanny ') && l.endsWith(' teardown'))).toBe(true);
    expect(all[all.length - 1]).toBe(`scheduler ${sched.address} teardown`);
  });

  it("logs a preload whose setup or teardown throws and runs on (Dask's test_failure_doesnt_crash_*); a module that cannot be loaded fails the start", async () => {
    const bad = fixture('bad-preload.mjs', `export function setup() { throw new Error('no GPU here'); }\nexport function teardown() { throw new Error('cannot let go'); }`);
    const s = startProcess([SKEIN_BIN, 'scheduler', '--port', '0', '--no-dashboard', '--host', '127.0.0.1', '--preload', bad, '--ready-json']);
    procs.push(s);
    const sched = await readyOf(s);
    await s.waitFor(/no GPU here/);
    const w = startProcess([SKEIN_BIN, 'worker', sched.address, '--no-nanny', '--host', '127.0.0.1', '--preload', bad, '--ready-json']);
    procs.push(w);
    await readyOf(w);
    await w.waitFor(/worker: plugin "preload:.*bad-preload\.mjs" failed its setup: Error: no GPU here/);
    const client = await Client.connect(sched.address);
    try {
      expect(await client.submit((x: number) => x * 3, 14).result()).toBe(42);
    } finally {
      await client.close();
    }
    w.kill('SIGTERM');
    expect(await w.exited).toBe(0);
    expect(w.stderr.join('\n')).toMatch(/failed its teardown: Error: cannot let go/);
    s.kill('SIGTERM');
    await s.exited;
    expect(s.stderr.join('\n')).toMatch(/cannot let go/);

    const missing = startProcess([SKEIN_BIN, 'worker', sched.address, '--no-nanny', '--preload', join(dir, 'no-such-preload.mjs')]);
    procs.push(missing);
    expect(await missing.exited).toBe(1);
    expect(missing.stderr.join('\n')).toMatch(/The worker preload module .*no-such-preload\.mjs could not be loaded/);
  });

  it('takes preload modules for the scheduler, workers and nannies of a LocalCluster', async () => {
    const mark = join(dir, 'lc-preload.log');
    const mod = fixture(
      'lc-preload.mjs',
      `
import { appendFileSync } from 'node:fs';
export function setup(ctx) { appendFileSync(${JSON.stringify(mark)}, (ctx.scheduler ? 'scheduler' : ctx.worker ? 'worker' : 'nanny') + '\\n'); }
`,
    );
    const cluster = await LocalCluster.start({ nWorkers: 1, memoryLimit: '1GB', preload: { scheduler: [mod], worker: [mod], nanny: [mod] } });
    try {
      expect(readFileSync(mark, 'utf8').trim().split('\n')).toEqual(['scheduler', 'nanny', 'worker']);
    } finally {
      await cluster.close();
    }
  });
});

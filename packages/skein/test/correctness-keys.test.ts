/**
 * Issue 11, item 13: keys, worker names and resource names are user data. A key named like an
 * Object.prototype member must be as ordinary as `x-1`, through the TypeScript client (column
 * batches) and through the per-key protocol (a raw gRPC client, as a client in another language
 * sends it), with inline (small) and transferred (> 64 KiB) values; and one such key may not stall
 * the other tasks of its update or later ones.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@skein/client';
import { SchedulerServiceClient, TaskSpec, type ClientSessionResponse, type ClientUpdate, type InlineFunction } from '@skein/protocol';
import { CHANNEL_OPTIONS, PROTOCOL_VERSION, decodeValue, encodeValue, grpcTarget, inlineFunction, insecureChannel, makeRef } from '@skein/common';
import { Worker } from '@skein/core-worker';
import { chromium } from 'playwright-core';
import { LocalCluster } from '../src/index.js';
import { until } from './helpers.js';

const KEYS = ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__', 'isPrototypeOf', '__defineGetter__', 'propertyIsEnumerable'];
const LARGE = 100 * 1024; // above the scheduler's 64 KiB inline limit: the dependent fetches it from a peer
const OTHERS = 50;
const LATER = 20;

// Small: the dependency's value (2) travels inline with the dependent's ComputeTask. Large: a
// 100 KiB Uint8Array of 2s held by worker A, fetched by worker B. Either way the dependent gives 20.
const FORMS = [
  { name: 'inline', make: (n: number) => n + 1, use: (v: number) => v * 10, arg: 1 },
  { name: 'non-inline', make: (n: number) => new Uint8Array(n).fill(2), use: (v: Uint8Array) => v[v.length - 1]! * 10 + (v.length === 100 * 1024 ? 0 : 1000), arg: LARGE },
] as const;

async function twoWorkers(cluster: LocalCluster): Promise<[string, string]> {
  const addresses = [...cluster.workers.values()].map((w) => w.address).sort();
  expect(addresses).toHaveLength(2);
  return addresses as [string, string];
}

describe.each(FORMS)('keys named like Object.prototype members, $name values, TypeScript client', (form) => {
  let cluster: LocalCluster;
  let client: Client;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 2, nanny: false });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it('computes each as a dependency, with 50 other tasks in the same update and 20 later roots', { timeout: 30_000 }, async () => {
    const [a, b] = await twoWorkers(cluster);
    const deps = KEYS.map((key) => client.submitWith({ key, workers: [a] }, form.make as (n: number) => unknown, form.arg));
    const dependents = deps.map((d) => client.submitWith({ workers: [b] }, form.use as (v: unknown) => number, d));
    const others = client.map((i: number) => i * 2, Array.from({ length: OTHERS }, (_, i) => i));
    expect(await client.gather(dependents)).toEqual(KEYS.map(() => 20));
    expect(await client.gather(others)).toEqual(Array.from({ length: OTHERS }, (_, i) => i * 2));
    for (const [i, d] of deps.entries()) expect(d.key).toBe(KEYS[i]);
    const later = client.map((i: number) => i + 100, Array.from({ length: LATER }, (_, i) => i));
    expect(await client.gather(later)).toEqual(Array.from({ length: LATER }, (_, i) => i + 100));
    // The client's own books are keyed by these names too: the values come back by key.
    const values = await client.gather(deps);
    for (const v of values) expect(form.name === 'inline' ? v : (v as Uint8Array).length).toBe(form.name === 'inline' ? 2 : LARGE);
  });
});

/** A raw per-key client session (hello without `batches`), as in protocol-session.test.ts. */
async function rawSession(address: string) {
  const grpc = new SchedulerServiceClient(grpcTarget(address), insecureChannel(), CHANNEL_OPTIONS);
  const call = grpc.clientSession();
  const updates: ClientUpdate[] = [];
  const errors: Error[] = [];
  let wake: () => void = () => undefined;
  call.on('data', (r: ClientSessionResponse) => {
    updates.push(...r.updates);
    wake();
  });
  call.on('error', (e: Error) => {
    errors.push(e);
    wake();
  });
  call.write({ messages: [{ kind: { $case: 'hello', value: { protocolVersion: PROTOCOL_VERSION, clientId: 'raw-keys-client', batches: false } } }] });
  const waitFor = async <T>(what: string, pred: () => T | undefined, ms = 20_000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      if (errors[0]) throw errors[0];
      const v = pred();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 50);
      });
    }
  };
  await waitFor('welcome', () => updates.find((u) => u.kind?.$case === 'welcome'));
  /** The values of `keys` once each is in memory; throws on an erred key. */
  const results = (keys: string[]) => {
    const want = new Set(keys);
    return waitFor(`${keys.length} results`, () => {
      const got = new Map<string, unknown>();
      for (const u of updates) {
        if (u.kind?.$case === 'erred' && want.has(u.kind.value.key)) throw new Error(`${u.kind.value.key} erred: ${u.kind.value.error?.message}`);
        if (u.kind?.$case === 'inMemory' && want.has(u.kind.value.key)) got.set(u.kind.value.key, u.kind.value.value ? decodeValue(u.kind.value.value) : undefined);
      }
      return got.size === want.size ? got : undefined;
    });
  };
  const update = (tasks: TaskSpec[], functions: InlineFunction[], stimulusId: string) =>
    call.write({ messages: [{ kind: { $case: 'updateGraph', value: { tasks, batches: [], wantedKeys: tasks.map((t) => t.key), functions, broadcastKeys: [], stimulusId } } }] });
  const close = () => {
    call.end();
    grpc.close();
  };
  return { update, results, close };
}

function inlineSpec(key: string, fn: InlineFunction, args: unknown[], over: Partial<TaskSpec> = {}): TaskSpec {
  return TaskSpec.create({ key, function: { kind: { $case: 'inlineHash', value: fn.hash } }, args: encodeValue(args, 'json'), ...over });
}

describe.each(FORMS)('keys named like Object.prototype members, $name values, per-key protocol', (form) => {
  let cluster: LocalCluster;
  const cleanup: Array<() => void> = [];
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 2, nanny: false });
  });
  afterEach(() => {
    for (const f of cleanup.splice(0)) f();
  });
  afterAll(async () => {
    await cluster?.close();
  });

  it('computes each as a dependency, with 50 other tasks in the same update and 20 later roots', { timeout: 30_000 }, async () => {
    const [a, b] = await twoWorkers(cluster);
    const s = await rawSession(cluster.schedulerAddress);
    cleanup.push(s.close);
    const make = inlineFunction(form.make as (n: number) => unknown);
    const use = inlineFunction(form.use as (v: unknown) => number);
    const double = inlineFunction((i: number) => i * 2);
    const tasks = [
      ...KEYS.map((key) => inlineSpec(key, make, [form.arg], { workers: [a] })),
      ...KEYS.map((key) => inlineSpec(`use-${key}`, use, [makeRef(key)], { dependencies: [key], workers: [b] })),
      ...Array.from({ length: OTHERS }, (_, i) => inlineSpec(`other-${i}`, double, [i])),
    ];
    s.update(tasks, [make, use, double], 'keys-1');
    const got = await s.results(tasks.map((t) => t.key));
    for (const key of KEYS) expect(got.get(`use-${key}`)).toBe(20);
    for (let i = 0; i < OTHERS; i++) expect(got.get(`other-${i}`)).toBe(i * 2);
    if (form.name === 'inline') for (const key of KEYS) expect(got.get(key)).toBe(2);
    const later = Array.from({ length: LATER }, (_, i) => inlineSpec(`later-${i}`, double, [i + 50]));
    s.update(later, [double], 'keys-2');
    const done = await s.results(later.map((t) => t.key));
    for (let i = 0; i < LATER; i++) expect(done.get(`later-${i}`)).toBe((i + 50) * 2);
  });
});

describe('worker and resource names like Object.prototype members', () => {
  let cluster: LocalCluster;
  let client: Client;
  let worker: Worker | undefined;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 1, threadsPerWorker: 2, nanny: false, resources: { constructor: 1, toString: 2, ['__proto__']: 1 } });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await worker?.close();
    await cluster?.close();
  });

  it('runs tasks that need resources named constructor, toString and __proto__, one constructor at a time', async () => {
    const spans = client.mapWith(
      { resources: { constructor: 1 }, pure: false },
      async (_i: number) => {
        const start = Date.now();
        await new Promise((r) => setTimeout(r, 100));
        return [start, Date.now()] as const;
      },
      [1, 2, 3],
    );
    const runs = (await client.gather(spans)).sort((x, y) => x[0] - y[0]);
    // Both threads were free, but the worker has one `constructor`: the runs do not overlap.
    for (let i = 1; i < runs.length; i++) expect(runs[i]![0]).toBeGreaterThanOrEqual(runs[i - 1]![1]);
    const proto = client.submitWith({ resources: { ['__proto__']: 1, toString: 2 } }, () => 'ran');
    expect(await proto.result()).toBe('ran');
    const info = await client.schedulerInfo();
    expect(Object.entries(info.workers[0]!.resources).sort()).toEqual([['__proto__', 1], ['constructor', 1], ['toString', 2]]);
  });

  it('places a task on a worker named __proto__ and reports it by its address', async () => {
    worker = await Worker.start({ scheduler: cluster.schedulerAddress, name: '__proto__', nthreads: 1 });
    const f = client.submitWith({ workers: ['__proto__'], key: 'hasOwnProperty' }, () => process.pid);
    expect(await f.result()).toBe(process.pid);
    const ran = await client.run(() => 7);
    expect(Object.keys(ran).sort()).toEqual([...[...cluster.workers.values()].map((w) => w.address), worker.address].sort());
    expect(ran[worker.address]).toBe(7);
    const info = await client.schedulerInfo();
    expect(info.workers.find((w) => w.name === '__proto__')?.address).toBe(worker.address);
  });
});

describe('skein subcommands named like Object.prototype members', () => {
  it('are unknown commands', async () => {
    const { runSkeinCli } = await import('../src/dispatch.js');
    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string) => (written.push(String(chunk)), true)) as typeof process.stderr.write;
    try {
      for (const name of ['constructor', 'toString', '__proto__']) expect(await runSkeinCli([name])).toBe(2);
    } finally {
      process.stderr.write = write;
    }
    expect(written.filter((w) => /unknown command/.test(w))).toHaveLength(3);
  });
});

describe('dashboard with task groups and a worker named like Object.prototype members', () => {
  it('draws the task stream and progress bars of groups constructor, toString, __proto__ without a page error', async () => {
    const cluster = await LocalCluster.start({ nWorkers: 1, threadsPerWorker: 2, nanny: false });
    const client = await Client.connect(cluster);
    const browser = await chromium.launch({ executablePath: process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu'] });
    const worker = await Worker.start({ scheduler: cluster.schedulerAddress, name: 'constructor', nthreads: 1 });
    try {
      const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
      const pageErrors: string[] = [];
      page.on('pageerror', (e) => pageErrors.push(e.message));
      await page.goto(cluster.dashboardLink);
      // One task per group, each group's name an Object.prototype member (the key's prefix).
      const fs = ['constructor', 'toString', '__proto__', 'valueOf'].map((key) => client.submitWith({ key }, () => 1));
      await client.gather(fs);
      await until(async () => /[1-9]\d* task runs/.test((await page.locator('#stream-info').textContent()) ?? ''), 15_000, 'the task stream to draw the runs');
      await until(async () => (await page.locator('#progress .bar').count()) >= 4, 15_000, 'a progress bar per group');
      await until(async () => (await page.locator('#workers tbody tr').count()) === 2, 15_000, 'both workers listed');
      expect(pageErrors).toEqual([]);
      await page.close();
    } finally {
      await browser.close();
      await client.close();
      await worker.close();
      await cluster.close();
    }
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, delayed, TaskError, CancelledError } from '@skein/client';
import { LocalCluster } from '../src/index.js';

// Level 2/3: a real LocalCluster (scheduler in this process, worker processes) on loopback.
describe('LocalCluster with worker processes', () => {
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 1, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it('starts one registered worker per requested process, each its own pid', async () => {
    const info = await client.schedulerInfo();
    expect(info.workers).toHaveLength(2);
    const pids = new Set(info.workers.map((w) => w.pid));
    expect(pids.size).toBe(2);
    expect(pids.has(process.pid)).toBe(false);
    for (const w of info.workers) {
      expect(w.address).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
      expect(w.memoryLimit).toBe(1e9);
    }
  });

  it('submits, maps and gathers', async () => {
    const f = client.submit((x: number) => x + 1, 41);
    expect(await f.result()).toBe(42);
    const xs = Array.from({ length: 2000 }, (_, i) => i);
    const futures = client.map((x: number) => x * 2, xs);
    const out = await client.gather(futures);
    expect(out).toEqual(xs.map((x) => x * 2));
  });

  it('runs tasks in parallel on both workers', async () => {
    const futures = client.map(
      async (i: number) => {
        const start = Date.now();
        await new Promise((r) => setTimeout(r, 300));
        return [process.pid, start, Date.now(), i] as const;
      },
      [1, 2, 3, 4],
    );
    const runs = await client.gather(futures);
    expect(new Set(runs.map((r) => r[0])).size).toBe(2);
    // Some run on one worker overlaps in time with a run on the other.
    const overlap = runs.some((a) => runs.some((b) => a[0] !== b[0] && a[1] < b[2] && b[1] < a[2]));
    expect(overlap).toBe(true);
  });

  it('passes futures nested in arrays and objects and keeps V8 types', async () => {
    const a = client.submit((n: number) => new Float64Array([n, n * 2]), 3);
    const b = client.submit(() => new Map([['k', 10n]]));
    const c = client.submit(
      (o: { arr: Float64Array[]; m: Map<string, bigint> }) => o.arr[0]![1]! + Number(o.m.get('k')),
      { arr: [a], m: b } as never,
    );
    expect(await c.result()).toBe(16);
    expect(await a.result()).toEqual(new Float64Array([3, 6]));
  });

  it('computes a delayed tree reduction', async () => {
    const add = delayed((x: number, y: number) => x + y);
    let level: unknown[] = Array.from({ length: 256 }, (_, i) => i + 1);
    while (level.length > 1) {
      const next: unknown[] = [];
      for (let i = 0; i < level.length; i += 2) next.push(add(level[i] as number, level[i + 1] as number));
      level = next;
    }
    const total = client.compute(level[0] as ReturnType<typeof add>);
    expect(await total.result()).toBe((256 * 257) / 2);
  });

  it('returns remote errors with their message and stack', async () => {
    const f = client.submit(function explode(x: number) {
      throw new RangeError(`bad input ${x}`);
    }, 5);
    const err = await f.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskError);
    expect((err as TaskError).remoteType).toBe('RangeError');
    expect((err as TaskError).message).toBe('bad input 5');
    expect((err as TaskError).remoteStack).toMatch(/explode/);
    expect(f.status).toBe('error');
  });

  it('explains a function that uses a variable it did not receive', async () => {
    const factor = 3;
    const f = client.submit((x: number) => x * factor, 2);
    const err = (await f.result().catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/uses "factor", which is not defined on the worker/);
    expect(err.message).toMatch(/Pass "factor" as an argument/);
  });

  it('moves results larger than 4 MB between workers and to the client', async () => {
    const info = await client.schedulerInfo();
    const [w1, w2] = info.workers.map((w) => w.address);
    const big = client.submitWith({ workers: [w1!], pure: false }, (n: number) => Buffer.alloc(n, 7), 12_000_000);
    const sum = client.submitWith(
      { workers: [w2!] },
      (b: Buffer) => {
        let s = 0;
        for (let i = 0; i < b.length; i += 4096) s += b[i]!;
        return [b.length, s];
      },
      big,
    );
    expect(await sum.result()).toEqual([12_000_000, Math.ceil(12_000_000 / 4096) * 7]);
    const local = (await big.result()) as Buffer;
    expect(local.length).toBe(12_000_000);
    expect(local[11_999_999]).toBe(7);
  });

  it('scatters data, also to every worker', async () => {
    const [d] = client.scatter([[1, 2, 3]], { broadcast: true });
    const f = client.submit((xs: number[]) => xs.reduce((a, b) => a + b, 0), d!);
    expect(await f.result()).toBe(6);
  });

  it('runs a function on every worker', async () => {
    const out = await client.run(() => process.pid);
    const info = await client.schedulerInfo();
    expect(Object.keys(out).sort()).toEqual(info.workers.map((w) => w.address).sort());
    expect(new Set(Object.values(out)).size).toBe(2);
  });

  it('retries a failing task', async () => {
    const f = client.submitWith(
      { retries: 3, pure: false },
      () => {
        const g = globalThis as { __skeinTries?: number };
        g.__skeinTries = (g.__skeinTries ?? 0) + 1;
        if (g.__skeinTries < 2) throw new Error('flaky');
        return 'ok';
      },
    );
    expect(await f.result()).toBe('ok');
  });

  it('cancels a running computation', async () => {
    const f = client.submitWith({ pure: false }, () => new Promise((r) => setTimeout(r, 1500)));
    await new Promise((r) => setTimeout(r, 100));
    await f.cancel();
    const err = await f.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CancelledError);
  });

  it('tells the story of a key', async () => {
    const f = client.submit((x: number) => x - 1, 100);
    await f.result();
    const story = await client.story(f);
    const scheduler = story.filter((t) => t.where === 'scheduler'); // the worker's own transitions follow in story.test.ts
    expect(scheduler.map((t) => `${t.start}->${t.finish}`)).toEqual(['released->waiting', 'waiting->processing', 'processing->memory']);
  });
});

describe('LocalCluster with in-process workers and resources', () => {
  it('runs tasks that need resources only on workers that have them', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 1, processes: false, resources: { GPU: 1 } });
    await using client = await Client.connect(cluster);
    const f = client.submitWith({ resources: { GPU: 1 } }, (x: number) => x * 10, 4);
    expect(await f.result()).toBe(40);
    const never = client.submitWith({ resources: { TPU: 1 } }, (x: number) => x, 1);
    // No worker has a TPU: the future says so (issue 11) instead of looking merely pending.
    for (const end = Date.now() + 5_000; never.status !== 'no-worker' && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
    expect(never.status).toBe('no-worker');
    expect(never.noWorkerReason).toMatch(/TPU/);
    const info = await client.schedulerInfo();
    expect(info.tasksByState['no-worker']).toBe(1);
  });
});

describe('bulk transfers between workers', () => {
  it('moves a 64 MB value between workers over the raw TCP path, intact, and a task can pass it on', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 2, memoryLimit: '2GB' });
    await using client = await Client.connect(cluster);
    const [w1, w2] = (await client.schedulerInfo()).workers.map((w) => w.address);
    const big = client.submitWith({ workers: [w1!], pure: false }, (n: number) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i += 4096) b[i] = (i / 4096) % 251;
      b[n - 1] = 42;
      return b;
    }, 64_000_000);
    // On w2 the input arrives through the bulk path and is handed to the task thread in place;
    // the task returns it unchanged, so the shared buffer also travels back out.
    const echoed = client.submitWith({ workers: [w2!] }, (b: Buffer) => b, big);
    const check = client.submitWith(
      { workers: [w1!] },
      (b: Buffer) => {
        let bad = 0;
        for (let i = 0; i < b.length - 1; i += 4096) if (b[i] !== (i / 4096) % 251) bad++;
        return [b.length, bad, b[b.length - 1]];
      },
      echoed,
    );
    expect(await check.result()).toEqual([64_000_000, 0, 42]);
    const story = await client.story(echoed);
    expect(story.filter((t) => t.where === 'scheduler').at(-1)).toMatchObject({ finish: 'memory', worker: w2 });
    // The transfers reach the dashboard's metrics (worker -> scheduler TransferDone).
    const metrics = await (await fetch(cluster.dashboardLink.replace(/\/status$/, '/metrics'))).text();
    const transfers = Number(/^skein_transfers_total (\d+)/m.exec(metrics)?.[1]);
    const bytes = Number(/^skein_transfer_bytes_total (\d+)/m.exec(metrics)?.[1]);
    expect(transfers).toBeGreaterThanOrEqual(2);
    expect(bytes).toBeGreaterThanOrEqual(128_000_000);
  });
});

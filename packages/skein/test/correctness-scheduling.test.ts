import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@skein/client';
import { LocalCluster } from '../src/index.js';
import { until } from './helpers.js';

// Issue 11, items 5-7 and loose restrictions: execution order, queueing and placement, against
// real worker processes. Tasks signal through files in a temporary directory: `<name>.started`
// when they start, and a blocking task runs until the test writes `<name>.release`.

// Built from source text: the test transform would rewrite `import()` in a function literal, and
// the worker runs the function's source as it is.
/** Runs until `<dir>/<name>.release` exists; writes `<dir>/<name>.started` first. */
const block = new Function(
  'dir',
  'name',
  `return (async () => {
    const fs = await import('node:fs');
    fs.writeFileSync(dir + '/' + name + '.started', '');
    while (!fs.existsSync(dir + '/' + name + '.release')) await new Promise((r) => setTimeout(r, 5));
    return name;
  })();`,
) as (dir: string, name: string) => Promise<string>;

/** Appends `name` to `<dir>/log` (a side effect the test can see) and returns the process id. */
const record = new Function(
  'dir',
  'name',
  `return (async () => {
    const fs = await import('node:fs');
    fs.appendFileSync(dir + '/log', name + '\\n');
    return process.pid;
  })();`,
) as (dir: string, name: string) => Promise<number>;

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'skein-sched-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const started = (name: string) => existsSync(join(dir, `${name}.started`));
const release = (name: string) => writeFileSync(join(dir, `${name}.release`), '');
const logged = (): string[] => (existsSync(join(dir, 'log')) ? readFileSync(join(dir, 'log'), 'utf8').split('\n').filter(Boolean) : []);

/** `p`, or a rejection naming `what` after `ms` (the timer is cleared either way). */
async function within<T>(ms: number, p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(what)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

describe('one worker with one thread', () => {
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 1, threadsPerWorker: 1, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });
  afterEach(() => rmSync(join(dir, 'log'), { force: true }));

  // Dask test_worker::test_stop_doing_unnecessary_work
  it('does not start a cancelled task that was queued behind a running one', async () => {
    const blocker = client.submitWith({ key: 'c5-blocker' }, block, dir, 'c5');
    const victim = client.submitWith({ key: 'c5-victim' }, record, dir, 'c5-victim');
    await until(() => started('c5'), 10_000, 'the blocking task to start');
    // The victim reached the worker (it is processing there) and waits for the thread.
    await until(async () => (await client.story(victim)).some((t) => t.finish === 'processing'), 10_000, 'the victim to be sent');
    await victim.cancel();
    // The worker let go of it (its heartbeat counts only the blocking task as executing) before
    // the blocking task ends: otherwise the free command could still be on its way.
    try {
      const cancelledAt = Date.now();
      await until(
        async () => Object.values(await client.workerMetrics()).some((h) => h.some((m) => m.timeMs > cancelledAt && m.executing === 1)),
        5_000,
        'the worker to drop the cancelled task',
      );
    } finally {
      release('c5');
    }
    expect(await blocker.result()).toBe('c5');
    // A task after it on the same thread has run, so the victim would have run by now.
    expect(await client.submitWith({ key: 'c5-after' }, record, dir, 'c5-after').result()).toBeGreaterThan(0);
    expect(logged()).toEqual(['c5-after']);
  });

  // Dask test_priorities::test_submit (queue on worker): higher priority first once the thread is free.
  it('runs a higher priority task submitted in the same turn first', async () => {
    const blocker = client.submitWith({ key: 'p6-blocker' }, block, dir, 'p6');
    await until(() => started('p6'), 10_000, 'the blocking task to start');
    const low = client.submitWith({ key: 'p6-low', priority: -1 }, record, dir, 'low');
    const mid = client.submitWith({ key: 'p6-mid' }, record, dir, 'mid');
    const high = client.submitWith({ key: 'p6-high', priority: 1 }, record, dir, 'high');
    // All three reached the scheduler (queued there, or sent to the worker).
    await until(
      async () => {
        const story = await client.story(low, mid, high);
        return [low, mid, high].every((f) => story.some((t) => t.key === f.key && (t.finish === 'processing' || t.finish === 'queued')));
      },
      10_000,
      'the tasks to reach the scheduler',
    ).finally(() => release('p6'));
    await Promise.all([blocker.result(), low.result(), mid.result(), high.result()]);
    expect(logged()).toEqual(['high', 'mid', 'low']);
  });
});

describe('one worker with two threads', () => {
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 1, threadsPerWorker: 2, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  // Dask test_client::test_long_tasks_dont_trigger_timeout / head-of-line blocking on a thread.
  it('runs short tasks on the free thread, not behind a long one', async () => {
    const blocker = client.submitWith({ key: 'h7-blocker' }, block, dir, 'h7');
    const shorts = client.mapWith({ key: 'h7-short' }, (x: number) => x + 1, Array.from({ length: 40 }, (_, i) => i));
    try {
      const out = await within(5_000, client.gather(shorts), 'short tasks waited for the long one');
      expect(out).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      expect(started('h7')).toBe(true);
    } finally {
      release('h7');
    }
    expect(await blocker.result()).toBe('h7');
  });
});

describe('two workers with one thread each', () => {
  let cluster: LocalCluster;
  let client: Client;
  let addresses: string[];

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 1, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
    addresses = (await client.schedulerInfo()).workers.map((w) => w.address).sort();
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  // Dask test_client::test_long_tasks_dont_trigger_timeout and test_steal: a ready task queued
  // behind a long one moves to the idle worker.
  it('moves a task queued behind a long one to the idle worker', async () => {
    const inc = (n: number) => n + 1;
    const x = client.submitWith({ key: 'h7x' }, inc, 1);
    const y = client.submitWith({ key: 'h7y' }, inc, x);
    const z = client.submitWith({ key: 'h7z' }, (a: number, b: number) => {
      if (b === 0) throw new Error('division by zero');
      return a / b;
    }, 1, 0);
    const w = client.submitWith({ key: 'h7w' }, block, dir, 'h7w');
    try {
      const got = await within(5_000, y.result(), 'y waited for the long task');
      expect(got).toBe(3);
      await expect(z.result()).rejects.toThrow(/division by zero/);
    } finally {
      release('h7w');
    }
    expect(await w.result()).toBe('h7w');
  });

  // Dask test_steal (loose restrictions are stolen): workers [A] with allowOtherWorkers spread out.
  it('spreads tasks restricted to a saturated worker with allowOtherWorkers to the idle one', async () => {
    const a = addresses[0]!;
    const nap = async (i: number) => {
      await new Promise((r) => setTimeout(r, 150));
      return [process.pid, i] as const;
    };
    const loose = client.mapWith({ key: 'loose', workers: [a], allowOtherWorkers: true }, nap, [1, 2, 3, 4, 5, 6, 7, 8]);
    const pids = new Set((await client.gather(loose)).map((r) => r[0]));
    expect(pids.size).toBe(2);
    const strict = client.mapWith({ key: 'strict', workers: [a] }, nap, [1, 2, 3, 4, 5, 6]);
    const strictPids = new Set((await client.gather(strict)).map((r) => r[0]));
    expect(strictPids.size).toBe(1);
  });
});

describe('two workers with two threads each', () => {
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 2, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  // The test_steal scenario: no short task waits for the long one submitted with them.
  it('runs 40 short tasks while a long one holds one thread', async () => {
    const blocker = client.submitWith({ key: 'h7b-blocker' }, block, dir, 'h7b');
    const shorts = client.mapWith({ key: 'h7b-short' }, (x: number) => x * 3, Array.from({ length: 40 }, (_, i) => i));
    try {
      const out = await within(5_000, client.gather(shorts), 'short tasks waited for the long one');
      expect(out).toEqual(Array.from({ length: 40 }, (_, i) => i * 3));
    } finally {
      release('h7b');
    }
    expect(await blocker.result()).toBe('h7b');
  });
});

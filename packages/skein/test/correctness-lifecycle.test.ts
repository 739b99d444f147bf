/**
 * Issue 11, against real LocalClusters: what cancel, restart and retire do to futures, their
 * dependents and resubmissions, and what a client sees for graphs that can never run (cycles,
 * restrictions no worker meets). Each test names the Dask test whose behaviour it pins.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelledError, Client, TaskError, delayed, type Future } from '@skein/client';
import { CHANNEL_OPTIONS, InvalidArgumentError, PROTOCOL_VERSION, encodeValue, grpcTarget, inlineFunction, insecureChannel, makeRef } from '@skein/common';
import { SchedulerServiceClient, TaskSpec, type ClientSessionResponse, type ClientUpdate } from '@skein/protocol';
import { LocalCluster } from '../src/index.js';
import { until } from './helpers.js';

const inc = (n: number) => n + 1;
const sleepThen = async (ms: number, v: string) => {
  await new Promise((r) => setTimeout(r, ms));
  return v;
};

/** Polls the scheduler's story until `key` reached `state`. */
async function reached(client: Client, key: string, state: string): Promise<void> {
  await until(async () => (await client.story(key)).some((t) => t.finish === state), 10_000, `${key} to reach ${state}`);
}

/** Whether the scheduler's last transition of each key is to 'forgotten'. */
async function forgotten(client: Client, ...keys: string[]): Promise<boolean> {
  const story = (await client.story(...keys)).filter((t) => t.where === 'scheduler');
  return keys.every((k) => story.filter((t) => t.key === k).at(-1)?.finish === 'forgotten');
}

describe('cancel, cycles, restrictions (2 worker processes)', () => {
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

  // Dask test_cancelled_state::test_abort_execution_reschedule
  it('a key resubmitted right after cancel() while its old run executes computes, untouched by the old cancellation', async () => {
    const f = client.submitWith({ key: 'abort-resched-1' }, sleepThen, 400, 'done');
    await reached(client, f.key, 'processing');
    await f.cancel();
    expect(f.status).toBe('cancelled');
    const g = client.submitWith({ key: 'abort-resched-1' }, sleepThen, 400, 'done');
    expect(await g.result(10_000)).toBe('done');
    expect(f.status).toBe('cancelled');
  });

  // Dask test_client::test_cancel
  it('cancelling x cancels y = f(x) for every client that wants it, and x stops feeding it', async () => {
    const other = await Client.connect(cluster);
    try {
      const x = client.submitWith({ key: 'cancel-x-1' }, sleepThen, 800, 'x');
      const y = client.submitWith({ key: 'cancel-y-1' }, (v: string) => `${v}y`, x);
      // The other client only wants y (its definition arrives second and is not used).
      await reached(client, y.key, 'waiting');
      const yOther = other.submitWith({ key: 'cancel-y-1' }, (v: string) => `${v}y`, 'unused');
      await reached(client, x.key, 'processing');
      await client.cancel(x);
      for (const fut of [y, yOther]) {
        const err = await fut.result(5_000).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(CancelledError);
        expect((err as Error).message).toMatch(/its input cancel-x-1 was cancelled/);
      }
      // (Only x and y: futures of earlier tests may still be held until they are collected.)
      await until(() => forgotten(client, x.key, y.key), 5_000, 'x and y to be forgotten');
      // Resubmitting y's key computes again.
      const y2 = other.submitWith({ key: 'cancel-y-1' }, (v: string) => `${v}y`, 'again-');
      expect(await y2.result(10_000)).toBe('again-y');
    } finally {
      await other.close();
    }
  });

  // Dask test_client::test_submit_on_cancelled_future
  it('submit with a cancelled future as input throws CancelledError at once', async () => {
    const x = client.submit(inc, 100);
    await x.result();
    await x.cancel();
    expect(() => client.submit(inc, x)).toThrow(CancelledError);
    expect(() => client.submit((a: number[]) => a, [x as unknown as number])).toThrow(/cancelled future/);
  });

  it('allowOtherWorkers without workers, and NaN, negative or infinite resources are refused at submit', () => {
    expect(() => client.submitWith({ allowOtherWorkers: true }, inc, 1)).toThrow(InvalidArgumentError);
    expect(() => client.submitWith({ allowOtherWorkers: true }, inc, 1)).toThrow(/needs workers/);
    for (const q of [NaN, -1, Infinity]) {
      expect(() => client.submitWith({ resources: { GPU: q } }, inc, 1)).toThrow(/resources\.GPU must be a finite number/);
    }
  });

  it('a dependency cycle, a longer one and a self-dependency are refused with an error naming the cycle, and forgotten', async () => {
    const a0 = delayed(inc, { key: 'cyc-a' })(1);
    const b = delayed(inc, { key: 'cyc-b' })(a0);
    const a = delayed(inc, { key: 'cyc-a' })(b);
    const fa = client.compute(a);
    const err = await fa.result(5_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskError);
    expect((err as TaskError).remoteType).toBe('InvalidArgumentError');
    expect((err as Error).message).toMatch(/dependency cycle: the tasks "cyc-(a|b)" -> "cyc-(a|b)" -> "cyc-(a|b)"/);

    const p0 = delayed(inc, { key: 'cyc3-p' })(1);
    const r = delayed(inc, { key: 'cyc3-r' })(p0);
    const q = delayed(inc, { key: 'cyc3-q' })(r);
    const p = delayed(inc, { key: 'cyc3-p' })(q);
    const down = delayed((v: number) => v, { key: 'cyc3-down' })(p);
    const fdown = client.compute(down);
    await expect(fdown.result(5_000)).rejects.toThrow(/depends on a dependency cycle: the tasks "cyc3-.*" -> "cyc3-.*" -> "cyc3-.*" -> "cyc3-.*"/);

    const s0 = delayed(inc, { key: 'self-1' })(1);
    const s = delayed(inc, { key: 'self-1' })(s0);
    const fs = client.compute(s);
    await expect(fs.result(5_000)).rejects.toThrow(/task "self-1" depends on itself/);

    for (const f of [fa, fdown, fs] as Future<unknown>[]) f.release();
    const refused = ['cyc-a', 'cyc-b', 'cyc3-p', 'cyc3-r', 'cyc3-q', 'cyc3-down', 'self-1'];
    await until(() => forgotten(client, ...refused), 5_000, 'the refused tasks to be forgotten');
  });

  // Dask test_scheduler::test_no_workers_timeout_bad_restrictions (without a timeout: feedback at once)
  it('a task no worker can run shows as no-worker at once, with the reason, and in the story', async () => {
    const byName = client.submitWith({ workers: ['nonexistent'] }, inc, 1);
    const byResource = client.submitWith({ resources: { GPU: 1 } }, inc, 2);
    await until(() => byName.status === 'no-worker' && byResource.status === 'no-worker', 5_000, 'no-worker status');
    expect(byName.noWorkerReason).toMatch(/"nonexistent"/);
    expect(byResource.noWorkerReason).toMatch(/GPU/);
    expect((await client.story(byName)).at(-1)?.finish).toBe('no-worker');
    expect((await client.schedulerInfo()).tasksByState['no-worker']).toBe(2);
    byName.release();
    byResource.release();
  });
});

describe('no-worker tasks and noWorkersTimeoutMs (in-process workers)', () => {
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 1, threadsPerWorker: 1, processes: false, noWorkersTimeoutMs: 300 });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  // Dask test_scheduler::test_no_workers_timeout_bad_restrictions
  it('a task whose restrictions no worker meets fails with NoValidWorkerError after the timeout', async () => {
    const f = client.submitWith({ workers: ['nonexistent'] }, inc, 1);
    const err = await f.result(10_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskError);
    expect((err as TaskError).remoteType).toBe('NoValidWorkerError');
    expect((err as Error).message).toMatch(/"nonexistent".*300 ms \(noWorkersTimeoutMs\)/);
    // Other work is unaffected (Dask's test_no_workers_timeout_processing).
    expect(await client.submit(inc, 41).result(5_000)).toBe(42);
  });
});

describe('a no-worker task runs once a suitable worker joins', () => {
  it('goes no-worker, then pending and finished when the named worker starts', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 1, threadsPerWorker: 1, processes: false });
    await using client = await Client.connect(cluster);
    const names = (await client.schedulerInfo()).workers.map((w) => w.name);
    const next = names[0]!.replace(/\d+$/, (n) => String(Number(n) + 1));
    const f = client.submitWith({ workers: [next] }, inc, 1);
    await until(() => f.status === 'no-worker', 5_000, 'no-worker status');
    await cluster.scale(2);
    await cluster.waitForWorkers(2);
    expect((await client.schedulerInfo()).workers.map((w) => w.name)).toContain(next);
    expect(await f.result(10_000)).toBe(2);
  });
});

// Dask test_failed_workers::test_restart
describe('restart', () => {
  it('resubmitting a key whose old future is still referenced computes after client.restart()', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 1, threadsPerWorker: 1, memoryLimit: '1GB' });
    await using client = await Client.connect(cluster);
    const x = client.submit(inc, 1);
    const y = client.submit(inc, x);
    expect(await y.result(10_000)).toBe(3);
    await client.restart();
    await until(() => x.status === 'cancelled' && y.status === 'cancelled', 5_000, 'old futures cancelled');
    const x2 = client.submit(inc, 1);
    expect(x2.key).toBe(x.key);
    expect(await x2.result(10_000)).toBe(2);
    expect(await client.submit(inc, x2).result(10_000)).toBe(3);
    // The old future stays referenced (a notebook variable) and stays cancelled.
    expect(x.status).toBe('cancelled');
  });
});

// Dask test_scheduler::test_retire_workers
describe('results moved by retireWorkers (values larger than inline)', () => {
  const big = (n: number, fill: number) => new Uint8Array(n).fill(fill);
  let cluster: LocalCluster;
  let client: Client;
  let workers: Array<{ address: string; name: string }>;
  let x: Future<Uint8Array> | undefined;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 3, threadsPerWorker: 1, memoryLimit: '1GB' });
    // A short refetch wait: before the fix the client kept asking the retired worker until it gave up.
    client = await Client.connect(cluster, { refetchTimeoutMs: 3_000 });
    workers = (await client.schedulerInfo()).workers;
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it('can be fetched after retiring their worker by name', async () => {
    const a = workers[0]!;
    const fx = (x = client.submitWith({ workers: [a.address] }, big, 1_000_000, 7));
    await fx.wait(10_000);
    expect(await client.retireWorkers({ workers: [a.name] })).toEqual([a.address]);
    const v = await fx.result(10_000);
    expect(v.length).toBe(1_000_000);
    expect(v[999_999]).toBe(7);
    // Moved, not recomputed.
    expect((await client.story(fx)).filter((t) => t.finish === 'processing')).toHaveLength(1);
  });

  it('can be fetched after retiring by n (the scheduler picks the worker holding least)', async () => {
    const [b, ...rest] = (await client.schedulerInfo()).workers;
    const y = client.submitWith({ workers: [b!.address] }, big, 200_000, 3);
    // 2 MB on every other worker: b holds least, even with x (1 MB) moved there.
    const zs = rest.map((w, i) => client.submitWith({ workers: [w.address] }, big, 2_000_000, 4 + i));
    await client.wait([y, ...zs]);
    expect(await client.retireWorkers({ n: 1 })).toEqual([b!.address]);
    const got = await client.gather([y, ...zs]);
    expect(got.map((g) => g.length)).toEqual([200_000, ...zs.map(() => 2_000_000)]);
    expect(got[0]![0]).toBe(3);
    if (x) expect((await x.result(10_000)).length).toBe(1_000_000);
    expect((await client.schedulerInfo()).workers.map((w) => w.address)).not.toContain(b!.address);
  });
});

describe('results moved by the cluster scaling down (the path of scale and adapt)', () => {
  it('can be fetched after cluster.retireWorkers([name])', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 1, memoryLimit: '1GB' });
    await using client = await Client.connect(cluster, { refetchTimeoutMs: 3_000 });
    const [a] = (await client.schedulerInfo()).workers;
    const x = client.submitWith({ workers: [a!.address] }, (n: number) => new Uint8Array(n).fill(9), 300_000);
    await x.wait(10_000);
    await cluster.retireWorkers([a!.name]);
    expect((await client.schedulerInfo()).workers.map((w) => w.address)).not.toContain(a!.address);
    const v = await x.result(10_000);
    expect(v.length).toBe(300_000);
    expect(v[0]).toBe(9);
  });
});

// A client in another language skips the JavaScript client's checks: the scheduler refuses too.
describe('bad graphs sent through the per-key protocol', () => {
  it('a cycle and a NaN resource quantity are refused by the scheduler with erred reports', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 1, threadsPerWorker: 1, processes: false });
    const rpc = new SchedulerServiceClient(grpcTarget(cluster.schedulerAddress), insecureChannel(), CHANNEL_OPTIONS);
    const call = rpc.clientSession();
    const updates: ClientUpdate[] = [];
    call.on('data', (r: ClientSessionResponse) => updates.push(...r.updates));
    call.on('error', () => undefined);
    try {
      const inc = inlineFunction((v: number) => v + 1);
      const spec = (key: string, deps: string[], over: Partial<TaskSpec> = {}) =>
        TaskSpec.create({
          key,
          function: { kind: { $case: 'inlineHash', value: inc.hash } },
          args: encodeValue(deps.length ? deps.map((d) => makeRef(d)) : [1], 'json'),
          dependencies: deps,
          ...over,
        });
      call.write({ messages: [{ kind: { $case: 'hello', value: { protocolVersion: PROTOCOL_VERSION, clientId: 'raw', batches: false } } }] });
      call.write({
        messages: [
          {
            kind: {
              $case: 'updateGraph',
              value: {
                tasks: [spec('p-a', ['p-b']), spec('p-b', ['p-a']), spec('p-nan', [], { resources: new Map([['GPU', NaN]]) })],
                batches: [],
                wantedKeys: ['p-a', 'p-b', 'p-nan'],
                functions: [inc],
                broadcastKeys: [],
                stimulusId: 'raw-1',
              },
            },
          },
        ],
      });
      const erred = new Map<string, string>();
      await until(
        () => {
          for (const u of updates) if (u.kind?.$case === 'erred') erred.set(u.kind.value.key, u.kind.value.error?.message ?? '');
          return erred.size === 3;
        },
        5_000,
        'three erred reports',
      );
      expect(erred.get('p-a')).toMatch(/dependency cycle: the tasks "p-(a|b)" -> "p-(a|b)" -> "p-(a|b)"/);
      expect(erred.get('p-b')).toMatch(/dependency cycle/);
      expect(erred.get('p-nan')).toMatch(/NaN of resource "GPU"/);
    } finally {
      call.end();
      rpc.close();
    }
  });
});

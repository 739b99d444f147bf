import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { createServer, type AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PROTOCOL_VERSION, bindServer, newServer } from '@skein/common';
import {
  CancelledError,
  Client,
  CommClosedError,
  ProtocolVersionError,
  TaskError,
  TimeoutError,
  asCompleted,
  delayed,
  registered,
  wait,
} from '../src/index.js';
import { FakeCluster } from './fake-cluster.js';

let fake: FakeCluster;
let client: Client;

async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('against a fake scheduler', () => {
  beforeEach(async () => {
    fake = await FakeCluster.start({ registered: { double: (x: number) => x * 2 } });
    client = await Client.connect(fake.address);
  });
  afterEach(async () => {
    await client?.close();
    await fake.close();
  });

  it('connects with a hello and exposes id, address, dashboard link and status', () => {
    expect(client.status).toBe('running');
    expect(client.schedulerAddress).toBe(fake.address);
    expect(client.dashboardLink).toBe('http://127.0.0.1:8787/status');
    expect(client.id).toMatch(/^client-/);
    const hello = fake.received[0]?.kind;
    expect(hello?.$case).toBe('hello');
    expect(hello?.$case === 'hello' && hello.value.clientId).toBe(client.id);
  });

  it('submits, chains futures and gets results', async () => {
    const x = client.submit((a: number, b: number) => a + b, 1, 2);
    const y = client.submit((v: number) => v * 10, x);
    expect(await y.result()).toBe(30);
    expect(await x.result()).toBe(3);
    expect(x.status).toBe('finished');
    expect(x.done()).toBe(true);
    const [u] = fake.updates;
    expect(u?.tasks.map((t) => t.key)).toEqual([x.key, y.key]);
    expect(u?.tasks[1]?.dependencies).toEqual([x.key]);
    expect(u?.wantedKeys).toEqual([x.key, y.key]);
    // Each inline function travels once per session.
    expect(u?.functions).toHaveLength(2);
    const z = client.submit((v: number) => v * 10, 7);
    expect(await z.result()).toBe(70);
    expect(fake.updates[1]?.functions).toHaveLength(0);
  });

  it('pure submits of the same call share a key; impure ones do not', async () => {
    const inc = (x: number) => x + 1;
    const a = client.submit(inc, 1);
    const b = client.submit(inc, 1);
    expect(a.key).toBe(b.key);
    const c = client.submitWith({ pure: false }, inc, 1);
    expect(c.key).not.toBe(a.key);
    const d = client.submitWith({ key: 'named' }, inc, 1);
    expect(d.key).toBe('named');
    expect(await client.gather([a, b, c, d])).toEqual([2, 2, 2, 2]);
    // The shared key was sent and wanted once.
    expect(fake.updates.flatMap((u) => u.wantedKeys).filter((k) => k === a.key)).toHaveLength(1);
  });

  it('finds futures at any depth in arguments and gathers nested structures', async () => {
    const [a, b] = client.scatter([1, 2]);
    const total = client.submit(
      (o: { xs: number[]; nested: { y: number } }) => o.xs.reduce((s, v) => s + v, 0) + o.nested.y,
      { xs: [a!, b!, 3], nested: { y: b! } },
    );
    expect(await total.result()).toBe(8);
    const got = await client.gather({ list: [a, b], one: total, plain: 'x' });
    expect(got).toEqual({ list: [1, 2], one: 8, plain: 'x' });
  });

  it('map sends its tasks in graph updates of at most 2,000 tasks and zips iterables', async () => {
    const n = 5000;
    const xs = Array.from({ length: n }, (_, i) => i);
    const futures = client.map((x: number, y: number) => x * y, xs, new Set(xs.map((x) => x + 1)));
    expect(futures).toHaveLength(n);
    const results = await client.gather(futures);
    expect(results[10]).toBe(110);
    expect(results[n - 1]).toBe((n - 1) * n);
    // Slices, so the scheduler starts on the first while the rest stream in, and no receive buffer
    // holds the whole map; each slice wants exactly its own tasks; the function travels once.
    const updates = fake.updates;
    expect(updates.map((u) => u.tasks.length)).toEqual([2000, 2000, 1000]);
    expect(updates.map((u) => u.wantedKeys)).toEqual(updates.map((u) => u.tasks.map((t) => t.key)));
    expect(updates.map((u) => u.functions.length)).toEqual([1, 0, 0]);
    expect(updates.flatMap((u) => u.tasks.map((t) => t.key))).toEqual(futures.map((f) => f.key));
    // Shortest iterable wins, like zip.
    expect(client.map((a: number, b: number) => a + b, [1, 2, 3], [10, 20])).toHaveLength(2);
    const keyed = client.mapWith({ key: ['k1', 'k2'] }, (x: number) => x, [5, 6]);
    expect(keyed.map((f) => f.key)).toEqual(['k1', 'k2']);
    const prefixed = client.mapWith({ key: 'sq' }, (x: number) => x * x, [5]);
    expect(prefixed[0]?.key).toMatch(/^sq-/);
  });

  it('calls registered functions by name', async () => {
    const double = registered<[number], number>('double');
    const f = client.submit(double, 21);
    expect(await f.result()).toBe(42);
    expect(fake.updates[0]?.tasks[0]?.function?.kind).toEqual({ $case: 'registered', value: 'double' });
    expect(fake.updates[0]?.functions).toHaveLength(0);
  });

  it('computes and persists delayed graphs in one update, wanting only the outputs', async () => {
    const inc = delayed((x: number) => x + 1);
    const add = delayed((a: number, b: number) => a + b);
    const x = inc(1);
    const total = add(add(x, inc(2)), x);
    const f = client.compute(total);
    expect(await f.result()).toBe(7);
    const [u] = fake.updates;
    expect(u?.tasks).toHaveLength(4);
    expect(u?.wantedKeys).toEqual([total.key]);
    const [p1, p2] = client.persist([x, total] as const);
    expect(await p1.result()).toBe(2);
    expect(await p2.result()).toBe(7);
    // Delayed values as submit arguments bring their graph along.
    const s = client.submit((v: number) => v * 100, inc(10));
    expect(await s.result()).toBe(1100);
  });

  it('rejects with a TaskError carrying the remote message and stack', async () => {
    const f = client.submit(function boom(x: number) {
      throw new RangeError(`bad value ${x}`);
    }, 3);
    const err = await f.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskError);
    expect((err as TaskError).message).toBe('bad value 3');
    expect((err as TaskError).remoteType).toBe('RangeError');
    expect((err as TaskError).stack).toContain('boom');
    expect(f.status).toBe('error');
    expect(await f.exception()).toBe(err);
    // Dependents fail with the same error; gather rejects with it.
    const g = client.submit((v: number) => v, f);
    await expect(client.gather([g])).rejects.toThrow('bad value 3');
  });

  it('retries tasks as asked', async () => {
    const f = client.submitWith({ retries: 2, pure: false }, () => {
      const g = globalThis as unknown as { __tries?: number };
      g.__tries = (g.__tries ?? 0) + 1;
      if (g.__tries < 3) throw new Error('flaky');
      return g.__tries;
    });
    expect(await f.result()).toBe(3);
    expect(fake.updates[0]?.tasks[0]?.retries).toBe(2);
  });

  it('cancels futures: they reject with CancelledError and the scheduler gets CancelKeys', async () => {
    const slow = client.submit(() => new Promise<number>(() => undefined));
    const waiting = slow.result();
    await slow.cancel();
    expect(slow.status).toBe('cancelled');
    await expect(waiting).rejects.toBeInstanceOf(CancelledError);
    await until(() => fake.keysOf('cancelKeys').includes(slow.key));
  });

  it('result(timeout) rejects with TimeoutError, and the future stays usable', async () => {
    const slow = client.submit(() => new Promise((r) => setTimeout(() => r('late'), 300)));
    await expect(slow.result(20)).rejects.toBeInstanceOf(TimeoutError);
    expect(await slow.result()).toBe('late');
  });

  it('releases a key only when the last future for it is released', async () => {
    const inc = (x: number) => x + 1;
    const a = client.submit(inc, 5);
    const b = client.submit(inc, 5);
    await a.result();
    a.release();
    a.release(); // idempotent
    await new Promise((r) => setTimeout(r, 20));
    expect(fake.keysOf('releaseKeys')).not.toContain(a.key);
    b.release();
    await until(() => fake.keysOf('releaseKeys').includes(a.key));
    expect(fake.keysOf('releaseKeys').filter((k) => k === a.key)).toHaveLength(1);
    // Submitting again wants the key again.
    const c = client.submit(inc, 5);
    expect(await c.result()).toBe(6);
    expect(fake.updates.flatMap((u) => u.wantedKeys).filter((k) => k === a.key)).toHaveLength(2);
  });

  it('releases keys of garbage-collected futures', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const key = ((): string => client.submit((x: number) => x, 12345).key)();
    await until(() => fake.tasks.get(key)?.state === 'memory');
    await until(() => {
      gc();
      return fake.keysOf('releaseKeys').includes(key);
    });
  });

  it('supports await using for futures', async () => {
    let key = '';
    {
      await using f = client.submit((x: number) => x, 99);
      key = f.key;
      expect(await f.result()).toBe(99);
    }
    await until(() => fake.keysOf('releaseKeys').includes(key));
  });

  it('asCompleted yields futures in completion order; withResults gives values', async () => {
    const sleep = (ms: number) => new Promise((r) => setTimeout(() => r(ms), ms));
    const fs = client.map(sleep, [150, 10, 80]);
    const order: number[] = [];
    for await (const f of asCompleted(fs)) order.push((await f.result()) as number);
    expect(order).toEqual([10, 80, 150]);
    const pairs: Array<[string, unknown]> = [];
    for await (const [f, v] of client.asCompleted(fs, { withResults: true })) pairs.push([f.key, v]);
    expect(pairs).toHaveLength(3);
  });

  it('wait returns done and not-done sets', async () => {
    const sleep = (ms: number) => new Promise((r) => setTimeout(() => r(ms), ms));
    const [fast, slow] = client.map(sleep, [5, 400]);
    const first = await wait([fast!, slow!], { returnWhen: 'FIRST_COMPLETED' });
    expect([...first.done]).toEqual([fast]);
    expect([...first.notDone]).toEqual([slow]);
    await expect(wait([slow!], { timeoutMs: 10 })).rejects.toBeInstanceOf(TimeoutError);
    const all = await client.wait([fast!, slow!]);
    expect(all.done.size).toBe(2);
  });

  it('fetches large values from the worker with GetData in chunks', async () => {
    const big = client.submit((n: number) => new Float64Array(n).fill(1.5), 1_000_000); // 8 MB
    const v = (await big.result()) as Float64Array;
    expect(v).toBeInstanceOf(Float64Array);
    expect(v.length).toBe(1_000_000);
    expect(v[999_999]).toBe(1.5);
    expect(fake.getDataCalls).toBe(1);
    // Cached while the future lives.
    expect(await big.result()).toBe(v);
    expect(fake.getDataCalls).toBe(1);
    // Several large values from one worker travel in one GetData stream.
    const many = client.map((n: number) => Buffer.alloc(n, n % 256), [5_000_001, 5_000_002]);
    const got = await client.gather(many);
    expect(got.map((b) => (b as Buffer).length)).toEqual([5_000_001, 5_000_002]);
    expect(fake.getDataCalls).toBe(2);
  });

  it('falls back to the next holder when a worker says missing', async () => {
    const empty = await FakeCluster.start();
    const holders = await FakeCluster.start({ holders: () => [empty.address, holders.address] });
    const c = await Client.connect(holders.address);
    try {
      const futures = c.map((i: number) => Buffer.alloc(100_000, i), [1, 2, 3, 4, 5, 6]);
      const got = await c.gather(futures);
      expect(got.map((b) => (b as Buffer)[0])).toEqual([1, 2, 3, 4, 5, 6]);
    } finally {
      await c.close();
      await holders.close();
      await empty.close();
    }
  });

  it('waits for a key to be recomputed when no holder can hand its value over, up to refetchTimeoutMs', async () => {
    // A loopback port nobody listens on: the holder that died.
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const dead = `tcp://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    await new Promise((r) => srv.close(r));
    const sched = await FakeCluster.start({ holders: () => [dead] });
    const c = await Client.connect(sched.address);
    const impatient = await Client.connect(sched.address, { refetchTimeoutMs: 300 });
    try {
      const big = c.submit((n: number) => Buffer.alloc(n, 3), 200_000);
      await big.wait();
      const got = big.result();
      const settled = vi.fn();
      void got.then(settled, settled);
      await new Promise((r) => setTimeout(r, 500)); // the fetch from the dead holder has failed by now
      expect(settled).not.toHaveBeenCalled();
      sched.push({ kind: { $case: 'lost', value: { key: big.key } } });
      sched.push({ kind: { $case: 'inMemory', value: { key: big.key, value: undefined, workers: [sched.address], nbytes: 200_000, typeName: 'Buffer' } } });
      expect(((await got) as Buffer)[0]).toBe(3);
      // Nobody reports the key again: a clear error once refetchTimeoutMs has passed.
      const other = impatient.submit((n: number) => Buffer.alloc(n, 4), 200_001);
      await other.wait();
      await expect(other.result()).rejects.toThrow(/Could not fetch the result of .* within 300 ms \(refetchTimeoutMs\)/);
    } finally {
      await impatient.close();
      await c.close();
      await sched.close();
    }
  });

  it("asks the scheduler where a key is now when its known holders fail (Dask's who_has)", async () => {
    // The value moved (a worker retired) and no update about it has arrived: the client asks.
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const gone = `tcp://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    await new Promise((r) => srv.close(r));
    const asked: string[] = [];
    const sched = await FakeCluster.start({
      holders: () => [gone],
      whoHas: (key) => {
        asked.push(key);
        return [sched.address];
      },
    });
    const c = await Client.connect(sched.address, { refetchTimeoutMs: 300 });
    try {
      const big = c.submit((n: number) => Buffer.alloc(n, 5), 200_000);
      expect(((await big.result()) as Buffer)[199_999]).toBe(5);
      expect(asked).toEqual([big.key]);
    } finally {
      await c.close();
      await sched.close();
    }
  });

  it('follows scheduler-side cancelled and lost updates', async () => {
    const slow = client.submit(() => new Promise(() => undefined));
    const p = slow.result().catch((e: unknown) => e);
    await until(() => fake.sessions.size === 1 && fake.tasks.has(slow.key));
    fake.push({ kind: { $case: 'cancelled', value: { key: slow.key, reason: 'impossible graph' } } });
    const err = await p;
    expect(err).toBeInstanceOf(CancelledError);
    expect((err as Error).message).toContain('impossible graph');
    // lost: the future waits again for the next in_memory.
    const big = client.submit((n: number) => Buffer.alloc(n, 7), 200_000);
    await big.wait();
    fake.push({ kind: { $case: 'lost', value: { key: big.key } } });
    await until(() => big.status === 'lost');
    const again = big.result();
    fake.push({
      kind: { $case: 'inMemory', value: { key: big.key, value: undefined, workers: [fake.address], nbytes: 200_000, typeName: 'Buffer' } },
    });
    expect(((await again) as Buffer).length).toBe(200_000);
    expect(big.status).toBe('finished');
  });

  it('scatter stores data and broadcasts on request', async () => {
    const f = client.scatter({ big: 'table' }, { broadcast: true });
    expect(f.key).toMatch(/^object-/);
    expect(await f.result()).toEqual({ big: 'table' });
    const u = fake.updates[0];
    expect(u?.broadcastKeys).toEqual([f.key]);
    const again = client.scatter({ big: 'table' });
    expect(again.key).toBe(f.key);
  });

  it('json encoding for other-language workers', async () => {
    const f = client.submitWith({ encoding: 'json' }, (o: { a: number }) => ({ b: o.a + 1 }), { a: 1 });
    expect(await f.result()).toEqual({ b: 2 });
  });

  it('run, schedulerInfo and story', async () => {
    const r = await client.run((x: number) => x + process.pid * 0, 5);
    expect(r).toEqual({ [fake.address]: 5 });
    const info = await client.schedulerInfo();
    expect(info.workers.map((w) => w.address)).toEqual([fake.address]);
    expect(info.workers[0]?.registeredFunctions).toEqual(['double']);
    expect(info.dashboardAddress).toBe(client.dashboardLink);
    const f = client.submit((x: number) => x, 1);
    await f.result();
    const story = await client.story(f);
    expect(story.map((t) => t.finish)).toEqual(['waiting', 'processing', 'memory']);
    await expect(client.run(() => {
      throw new Error('nope');
    })).rejects.toThrow('nope');
  });

  it('close rejects pending futures with a clear error and is idempotent', async () => {
    const slow = client.submit(() => new Promise(() => undefined));
    const p = slow.result().catch((e: unknown) => e);
    const c1 = client.close();
    const c2 = client.close();
    expect(c1).toBe(c2);
    await c1;
    const err = await p;
    expect(err).toBeInstanceOf(CancelledError);
    expect((err as Error).message).toMatch(/client was closed/);
    expect(client.status).toBe('closed');
    expect(() => client.submit((x: number) => x, 1)).toThrow(/client is closed/);
  });

  it('a malformed KeysInMemory ends the session: pending futures fail with the reason', async () => {
    const slow = client.submit(() => new Promise(() => undefined));
    const p = slow.result();
    await until(() => fake.sessions.size === 1);
    // three keys, but a value column for two
    fake.push({
      kind: {
        $case: 'keysInMemory',
        value: {
          keys: ['a-1', 'a-2', 'a-3'],
          values: { encodings: [1, 1], lengths: [1, 1], data: Buffer.from('12') },
          nbytes: [1, 1, 1],
          typeNames: ['number'],
          typeNameIndex: [0, 0, 0],
          workerCounts: [],
          workers: [],
          workerIndex: [],
        },
      },
    });
    const err = await p.catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommClosedError);
    expect((err as Error).message).toMatch(/malformed update from the scheduler: KeysInMemory of 3 keys from the scheduler, values: the value column has 2 encodings/);
    await until(() => client.status === 'closed');
  });

  it('connection loss rejects pending futures with CommClosedError', async () => {
    const slow = client.submit(() => new Promise(() => undefined));
    const p = slow.result();
    await until(() => fake.sessions.size === 1);
    fake.dropSessions();
    await expect(p).rejects.toBeInstanceOf(CommClosedError);
    await until(() => client.status === 'closed');
  });
});

describe('connecting', () => {
  it('reports a protocol version mismatch naming both versions', async () => {
    const other = await FakeCluster.start({ protocolVersion: '2.0' });
    try {
      const err = await Client.connect(other.address).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ProtocolVersionError);
      expect((err as Error).message).toContain(PROTOCOL_VERSION);
      expect((err as Error).message).toMatch(/2\.0/);
    } finally {
      await other.close();
    }
  });

  it('with a protocol 1.1 scheduler (no answer per cancelled key) takes the next report of a resubmitted key as its own', async () => {
    const old = await FakeCluster.start({ protocolVersion: '1.1' });
    const c = await Client.connect(old.address);
    try {
      const slow = () => new Promise(() => undefined);
      const first = c.submitWith({ key: 'again-1' }, slow);
      await until(() => old.tasks.has('again-1'));
      await first.cancel();
      await until(() => old.keysOf('cancelKeys').includes('again-1'));
      const second = c.submitWith({ key: 'again-1' }, slow);
      const p = second.result().catch((e: unknown) => e);
      await until(() => old.updates.flatMap((u) => u.wantedKeys).filter((k) => k === 'again-1').length === 2);
      old.push({ kind: { $case: 'cancelled', value: { key: 'again-1', reason: 'impossible graph' } } });
      const err = await p;
      expect(err).toBeInstanceOf(CancelledError);
      expect((err as Error).message).toContain('impossible graph');
    } finally {
      await c.close();
      await old.close();
    }
  });

  it('fails fast with CommClosedError when nothing listens', async () => {
    const server = newServer();
    const port = await bindServer(server, '127.0.0.1', 0, 'probe');
    server.forceShutdown();
    const t0 = Date.now();
    const err = await Client.connect(`tcp://127.0.0.1:${port}`, { connectTimeoutMs: 500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommClosedError);
    expect((err as Error).message).toContain(`Cannot reach the scheduler at tcp://127.0.0.1:${port}`);
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it('accepts { schedulerAddress } and await using', async () => {
    const f = await FakeCluster.start();
    try {
      let c: Client | undefined;
      {
        await using client2 = await Client.connect({ schedulerAddress: f.address });
        c = client2;
        expect(await client2.submit((x: number) => x * 3, 3).result()).toBe(9);
      }
      expect(c.status).toBe('closed');
    } finally {
      await f.close();
    }
  });
});

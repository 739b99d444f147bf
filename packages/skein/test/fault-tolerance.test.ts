import { describe, expect, it } from 'vitest';
import { Client, CommClosedError, KilledWorkerError, asCompleted } from '@skein/client';
import { LocalCluster } from '../src/index.js';
import { SKEIN_BIN, readyOf, startProcess, until } from './helpers.js';

// Level 3: real worker processes under real nannies, real signals.
describe('fault tolerance with nannies', () => {
  it('finishes a map when a worker is killed with SIGKILL in the middle, and the nanny restarts it', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 2, memoryLimit: '1GB' });
    await using client = await Client.connect(cluster);
    const before = await client.schedulerInfo();
    const victim = before.workers[0]!;
    const xs = Array.from({ length: 400 }, (_, i) => i);
    const futures = client.map(
      async (x: number) => {
        await new Promise((r) => setTimeout(r, 5));
        return x * x;
      },
      xs,
    );
    let seen = 0;
    let killed = false;
    for await (const f of asCompleted(futures)) {
      expect(f.status).toBe('finished');
      if (++seen === 100 && !killed) {
        process.kill(victim.pid, 'SIGKILL');
        killed = true;
      }
    }
    expect(killed).toBe(true);
    expect(await client.gather(futures)).toEqual(xs.map((x) => x * x));
    await until(async () => {
      const info = await client.schedulerInfo();
      return info.workers.length === 2 && !info.workers.some((w) => w.pid === victim.pid);
    }, 30_000, 'the nanny to restart the killed worker');
  });

  it('fails a task that blows up its workers with KilledWorker after allowed-failures deaths', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 2, memoryLimit: '400MB' });
    await using client = await Client.connect(cluster);
    const hog = client.submitWith({ pure: false }, async () => {
      const hold: Buffer[] = [];
      for (;;) {
        hold.push(Buffer.alloc(40_000_000, 1));
        await new Promise((r) => setTimeout(r, 10));
      }
    });
    const err = await hog.result(120_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KilledWorkerError);
    const kw = err as KilledWorkerError;
    expect(kw.key).toBe(hog.key);
    expect(kw.deaths).toBe(4);
    expect(kw.message).toMatch(/memory past the limit/);
    // The cluster is still usable afterwards.
    await until(async () => (await client.schedulerInfo()).workers.length === 2, 30_000, 'workers to come back');
    expect(await client.submit((x: number) => x + 1, 1).result()).toBe(2);
  });

  it('restarts every worker with client.restart(): old data is gone, new work runs', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 2, memoryLimit: '1GB' });
    await using client = await Client.connect(cluster);
    const old = client.map((x: number) => x + 1, [1, 2, 3]);
    expect(await client.gather(old)).toEqual([2, 3, 4]);
    const pids = (await client.schedulerInfo()).workers.map((w) => w.pid).sort();
    const res = await client.restart();
    expect(res.workers).toHaveLength(2);
    expect(res.closed).toEqual([]);
    const info = await client.schedulerInfo();
    expect(info.workers).toHaveLength(2);
    expect(info.workers.map((w) => w.pid).sort()).not.toEqual(pids);
    expect(Object.values(info.tasksByState).reduce((a, b) => a + b, 0)).toBe(0);
    expect(old[0]!.status).toBe('cancelled');
    expect(await client.submit((x: number) => x * 10, 5).result()).toBe(50);
  });

  it('shows each worker memory and CPU history to the scheduler', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 1, memoryLimit: '1GB' });
    await using client = await Client.connect(cluster);
    await until(async () => Object.values(await client.workerMetrics()).every((s) => s.length >= 2), 10_000, 'two heartbeats');
    const metrics = await client.workerMetrics();
    for (const samples of Object.values(metrics)) {
      expect(samples[0]!.memoryRss).toBeGreaterThan(10_000_000);
      expect(samples[1]!.timeMs).toBeGreaterThan(samples[0]!.timeMs);
    }
  });
});

describe('the scheduler going away', () => {
  it('workers and nannies exit after --death-timeout; clients get a clear error', async () => {
    const scheduler = startProcess([SKEIN_BIN, 'scheduler', '--host', '127.0.0.1', '--port', '0', '--ready-json']);
    const { address } = await readyOf(scheduler);
    const worker = startProcess([SKEIN_BIN, 'worker', address, '--host', '127.0.0.1', '--death-timeout', '2', '--ready-json']);
    await readyOf(worker);
    const client = await Client.connect(address!);
    const pending = client.submitWith({ pure: false }, () => new Promise((r) => setTimeout(r, 60_000)));
    scheduler.kill('SIGKILL');
    const err = await pending.result(20_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommClosedError);
    const t0 = Date.now();
    const code = await worker.exited;
    expect(code).not.toBe(0);
    expect(Date.now() - t0).toBeLessThan(15_000);
    expect(worker.stderr.join('\n')).toMatch(/lost the scheduler/i);
    await client.close();
  });
});

describe('worker memory management in a real cluster', () => {
  it('spills results past the target to disk and reads them back correctly', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 1, memoryLimit: '600MB' });
    await using client = await Client.connect(cluster);
    // Each result takes a moment, as real work does: the worker samples its memory every 100 ms,
    // and results made faster than that can push it past the nanny's 95% before it spills (the
    // nanny then kills it, which is another test's subject).
    const futures = client.mapWith(
      { pure: false },
      async (i: number) => {
        await new Promise((r) => setTimeout(r, 250));
        return Buffer.alloc(50_000_000, i);
      },
      Array.from({ length: 10 }, (_, i) => i),
    );
    const sums = client.map(
      (b: Buffer) => {
        let s = 0;
        for (let j = 0; j < b.length; j += 1_000_000) s += b[j]!;
        return [b.length, s];
      },
      futures,
    );
    const out = await client.gather(sums);
    expect(out).toEqual(Array.from({ length: 10 }, (_, i) => [50_000_000, 50 * i]));
    await until(async () => Object.values(await client.workerMetrics()).some((s) => s.some((x) => x.spilledBytes >= 50_000_000)), 15_000, 'a heartbeat that reports spilled bytes');
    // Spilled results still come back to the client intact.
    const first = (await futures[0]!.result()) as Buffer;
    expect(first.length).toBe(50_000_000);
    expect(first[49_999_999]).toBe(0);
  });
});

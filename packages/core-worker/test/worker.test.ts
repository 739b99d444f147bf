import { describe, expect, it } from 'vitest';
import type { WorkerCommand } from '@skein/protocol';
import { PROTOCOL_VERSION, decodeValue, makeRef } from '@skein/common';
import { Worker } from '../src/worker.js';
import { FakeScheduler } from './fake-scheduler.js';
import { TASKS, computeCmd, workerHarness } from './harness.js';

const { cleanup, setup } = workerHarness();

describe('Worker shell', () => {
  it('says hello, runs tasks and reports results', async () => {
    const { sched, worker } = await setup({ nthreads: 2, name: 'w1', resources: { GPU: 1 } });
    expect(worker.status).toBe('running');
    expect(worker.address).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(sched.hellos[0]).toMatchObject({ address: worker.address, name: 'w1', nthreads: 2, resources: { GPU: 1 }, protocolVersion: PROTOCOL_VERSION, pid: process.pid });
    expect(sched.hellos[0]!.registeredFunctions).toContain('add');
    sched.send(worker.address, computeCmd('add-1', 'add', [1, 2]), computeCmd('lambda-1', (x: number) => x * 10, [makeRef('add-1')], { deps: ['add-1'] }));
    const fin = await sched.waitFor(() => sched.of('taskFinished').length >= 2 && sched.of('taskFinished'));
    expect(fin.map((f) => [f.key, decodeValue(f.value)])).toEqual([
      ['add-1', 3],
      ['lambda-1', 30],
    ]);
    // heartbeats flow at the Welcome's interval
    await sched.waitFor(() => sched.of('heartbeat').length > 0);
    // errors
    sched.send(worker.address, computeCmd('nofn-1', 'nofn', []));
    const erred = await sched.waitFor(() => sched.of('taskErred')[0]);
    expect(erred.error?.message).toMatch(/Function "nofn" is not registered/);
    // free keys
    sched.send(worker.address, { kind: { $case: 'freeKeys', value: { keys: ['add-1'], stimulusId: 'free' } } });
    const rel = await sched.waitFor(() => sched.of('keysReleased')[0]);
    expect(rel.keys).toEqual(['add-1']);
    expect(worker.workerState.data.has('add-1')).toBe(false);
  });

  it('fetches inputs from a peer worker', async () => {
    const { sched, worker: w1 } = await setup();
    const w2 = await Worker.start({ scheduler: sched.address, modules: [TASKS], validate: true });
    cleanup.push(() => w2.close());
    sched.send(w1.address, computeCmd('bytes-1', 'bytes', [3 * 1024 * 1024]));
    const f = await sched.waitFor(() => sched.of('taskFinished')[0]);
    expect(f.value).toBeUndefined(); // too large to inline
    expect(f.nbytes).toBe(3 * 1024 * 1024);
    sched.send(
      w2.address,
      computeCmd('len-1', (b: Uint8Array) => b.length + b[5]!, [makeRef('bytes-1')], { deps: ['bytes-1'], whoHas: [{ key: 'bytes-1', workers: [w1.address], nbytes: f.nbytes }] }),
    );
    const g = await sched.waitFor(() => sched.of('taskFinished').find((m) => m.key === 'len-1'));
    expect(decodeValue(g.value)).toBe(3 * 1024 * 1024 + 7);
  });

  it('fails start with a clear message when the protocol versions differ', async () => {
    const sched = await FakeScheduler.start();
    cleanup.push(() => sched.close());
    sched.protocolVersion = '2.0';
    await expect(Worker.start({ scheduler: sched.address })).rejects.toThrow(/Protocol version mismatch/);
  });

  it('fails start when the scheduler cannot be reached', async () => {
    const t0 = Date.now();
    await expect(Worker.start({ scheduler: 'tcp://127.0.0.1:1', connectTimeoutMs: 500 })).rejects.toThrow(
      /Cannot reach the scheduler at tcp:\/\/127\.0\.0\.1:1: .*Is `skein scheduler` running there\?/,
    );
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it('reconnects with its held keys after the session breaks', async () => {
    const { sched, worker } = await setup({ deathTimeoutMs: 10_000 });
    sched.send(worker.address, computeCmd('add-2', 'add', [2, 2]));
    await sched.waitFor(() => sched.of('taskFinished')[0]);
    // the scheduler dies and comes back on the same port
    await sched.kill();
    const sched2 = await FakeScheduler.start(sched.port);
    cleanup.push(() => sched2.close());
    await sched2.waitFor(() => sched2.hellos[0]);
    expect(sched2.hellos[0]!.held).toEqual([{ key: 'add-2', workers: [worker.address], nbytes: 1 }]);
    await sched2.waitFor(() => worker.status === 'running');
  });

  it('closes with an error when the scheduler stays away past the death timeout', async () => {
    const { sched, worker } = await setup({ deathTimeoutMs: 500 });
    await sched.close();
    const closed = await worker.closed;
    expect(closed.error?.message).toMatch(/Lost the scheduler at .* could not reconnect within 0.5s/);
    expect(worker.status).toBe('closed');
  });

  it('retires through the scheduler and closes on CloseWorker', async () => {
    const { sched, worker } = await setup();
    await worker.retire();
    expect(sched.retired).toEqual([worker.address]);
    expect(worker.status).toBe('closed');
    expect((await worker.closed).error).toBeUndefined();
    await worker.close(); // idempotent
  });

  it('pushes many no-op tasks through, each finished exactly once', async () => {
    const { sched, worker } = await setup({ nthreads: 2, validate: false });
    const n = 20_000;
    const noop = (x: number) => x;
    const t0 = performance.now();
    const batch = 1000;
    for (let i = 0; i < n; i += batch) {
      const cmds: WorkerCommand[] = [];
      for (let j = i; j < i + batch; j++) cmds.push(computeCmd(`noop-${j}`, noop, [j], { sendSource: j === 0 }));
      sched.send(worker.address, ...cmds);
    }
    await sched.waitFor(() => sched.of('taskFinished').length >= n, 60_000);
    const rate = n / ((performance.now() - t0) / 1000);
    console.log(`worker shell: ${Math.round(rate)} tasks/s`);
    expect(sched.of('taskErred')).toEqual([]);
    const keys = sched.of('taskFinished').map((m) => m.key);
    expect(keys).toHaveLength(n);
    expect(new Set(keys).size).toBe(n);
  });
});

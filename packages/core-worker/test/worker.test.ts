import { describe, expect, it, vi } from 'vitest';
import type { WorkerCommand } from '@skein/protocol';
import { PROTOCOL_VERSION, buildValueColumn, decodeValue, encodeValue, makeRef } from '@skein/common';
import { Worker } from '../src/worker.js';
import { FakeScheduler } from './fake-scheduler.js';
import { TASKS, computeBatchCmd, computeCmd, workerHarness } from './harness.js';

const { cleanup, setup } = workerHarness();

describe('Worker shell', () => {
  it('says hello, runs tasks and reports results', async () => {
    const { sched, worker } = await setup({ nthreads: 2, name: 'w1', resources: { GPU: 1 } });
    expect(worker.status).toBe('running');
    expect(worker.address).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(sched.hellos[0]).toMatchObject({ address: worker.address, name: 'w1', nthreads: 2, resources: new Map([['GPU', 1]]), protocolVersion: PROTOCOL_VERSION, pid: process.pid, batches: true });
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

describe('Worker shell: column forms (ComputeBatch, TasksFinished)', () => {
  const sorted = <T extends { key: string }>(xs: T[]) => [...xs].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));

  it('runs a ComputeBatch and reports through TasksFinished when the Welcome has batches', async () => {
    const { sched, worker } = await setup({ nthreads: 1 }, { batches: true });
    // a registered function; the middle result is too large to travel inline (absent in the column)
    sched.send(worker.address, computeBatchCmd('bytes', 'bytes', [[3], [100 * 1024], [5]]));
    await sched.waitFor(() => sched.finished().length >= 3);
    // an inline function, its source sent with the first batch only
    const times10 = (x: number) => x * 10;
    sched.send(worker.address, computeBatchCmd('times10', times10, [[1], [2], [3], [4]]));
    sched.send(worker.address, computeBatchCmd('again', times10, [[5], [6]], { sendSource: false }));
    const fin = await sched.waitFor(() => sched.finished().length >= 9 && sched.finished());
    expect(sorted(fin).map((f) => [f.key, f.value ? decodeValue(f.value) : undefined, f.nbytes])).toEqual([
      ['again-0', 50, 2],
      ['again-1', 60, 2],
      ['bytes-0', Buffer.alloc(3, 7), 3],
      ['bytes-1', undefined, 100 * 1024],
      ['bytes-2', Buffer.alloc(5, 7), 5],
      ['times10-0', 10, 2],
      ['times10-1', 20, 2],
      ['times10-2', 30, 2],
      ['times10-3', 40, 2],
    ]);
    // Results that leave together travel as one column message. (A result that happens to leave
    // alone may go as a TaskFinished; the fixture's tasks finish together, in one thread batch.)
    const columns = sched.of('tasksFinished');
    expect(columns.length).toBeGreaterThan(0);
    expect(columns.some((c) => c.keys.length > 1)).toBe(true);
    expect(sched.of('taskErred')).toEqual([]);
    expect((worker.workerState.data.get('bytes-1') as { data: Uint8Array } | undefined)?.data.byteLength).toBe(100 * 1024);
  });

  it('reports a ComputeBatch per task (TaskFinished) when the Welcome does not have batches', async () => {
    const { sched, worker } = await setup({ nthreads: 2 });
    sched.send(worker.address, computeBatchCmd('add', 'add', [[1, 2], [3, 4], [5, 6]]), computeBatchCmd('sq', (x: number) => x * x, [[7], [8]]));
    const fin = await sched.waitFor(() => sched.of('taskFinished').length >= 5 && sched.of('taskFinished'));
    expect(sorted(fin).map((f) => [f.key, decodeValue(f.value)])).toEqual([
      ['add-0', 3],
      ['add-1', 7],
      ['add-2', 11],
      ['sq-0', 49],
      ['sq-1', 64],
    ]);
    expect(sched.of('tasksFinished')).toEqual([]);
  });

  it.each([
    [
      'an args column shorter than its keys',
      (b: ReturnType<typeof computeBatchCmd>) => (b.kind.value.tasks!.args = buildValueColumn([encodeValue([1, 2], 'json')])),
      /ComputeBatch of 3 tasks, tasks\.args: the value column has 1 encodings and 1 lengths for 3 keys/,
    ],
    [
      'dependencies',
      (b: ReturnType<typeof computeBatchCmd>) => {
        b.kind.value.tasks!.dependencyCounts = [1, 0, 0];
        b.kind.value.tasks!.dependencies = ['add-0'];
      },
      /ComputeBatch of 3 tasks: tasks\.dependency_counts has 3 entries but a ComputeBatch carries only tasks without dependencies/,
    ],
  ])('rejects a ComputeBatch with %s: logs it, errs its tasks with the reason, and carries on', async (_, breakIt, re) => {
    const stderr = vi.spyOn(process.stderr, 'write');
    cleanup.push(() => stderr.mockRestore());
    const { sched, worker } = await setup({}, { batches: true });
    const bad = computeBatchCmd('bad', 'add', [[1, 2], [3, 4], [5, 6]], { stimulusId: 'bad-batch' });
    breakIt(bad);
    // the valid command in the same message still runs
    sched.send(worker.address, bad, computeCmd('ok-1', 'add', [1, 1]));
    const erred = await sched.waitFor(() => sched.of('taskErred').length >= 3 && sched.of('taskErred'));
    expect(erred.map((e) => e.key)).toEqual(['bad-0', 'bad-1', 'bad-2']);
    for (const e of erred) {
      expect(e.stimulusId).toBe('bad-batch');
      expect(e.error).toMatchObject({ type: 'InvalidArgumentError', code: 'invalid_argument', key: e.key });
      expect(e.error?.message).toMatch(re);
    }
    const lines = stderr.mock.calls.map(([line]) => String(line));
    expect(lines.some((l) => /ERROR +worker: rejected a ComputeBatch of 3 tasks \(stimulus bad-batch\): /.test(l) && re.test(l))).toBe(true);
    const ok = await sched.waitFor(() => sched.finished().find((f) => f.key === 'ok-1'));
    expect(decodeValue(ok.value)).toBe(2);
    // none of the batch's tasks reached the state; the worker is still up and still takes work
    for (const k of ['bad-0', 'bad-1', 'bad-2']) expect(worker.workerState.tasks.has(k)).toBe(false);
    expect(worker.status).toBe('running');
    sched.send(worker.address, computeBatchCmd('good', 'add', [[2, 2], [3, 3]]));
    await sched.waitFor(() => sched.finished().filter((f) => f.key.startsWith('good-')).length === 2);
  });

  it('rejects a ComputeTask without a spec: logs it and runs the rest of the message', async () => {
    const stderr = vi.spyOn(process.stderr, 'write');
    cleanup.push(() => stderr.mockRestore());
    const { sched, worker } = await setup();
    const bad = computeCmd('x-1', 'add', [1, 2]);
    const value = (bad.kind as { value: { spec?: unknown; stimulusId: string } }).value;
    delete value.spec;
    value.stimulusId = 'no-spec';
    sched.send(worker.address, bad, computeCmd('ok-2', 'add', [2, 2]));
    const ok = await sched.waitFor(() => sched.finished().find((f) => f.key === 'ok-2'));
    expect(decodeValue(ok.value)).toBe(4);
    const lines = stderr.mock.calls.map(([line]) => String(line));
    expect(lines.some((l) => /ERROR +worker: rejected a ComputeTask \(stimulus no-spec\): ComputeTask without a spec/.test(l))).toBe(true);
    expect(worker.status).toBe('running');
  });

  it('pushes many no-op tasks through ComputeBatch and TasksFinished, each finished exactly once', async () => {
    const { sched, worker } = await setup({ nthreads: 2, validate: false }, { batches: true });
    const n = 20_000;
    const noop = (x: number) => x;
    const t0 = performance.now();
    const batch = 1000;
    for (let i = 0; i < n; i += batch) {
      const args: number[][] = [];
      for (let j = i; j < i + batch; j++) args.push([j]);
      sched.send(worker.address, computeBatchCmd(`noop${i / batch}`, noop, args, { sendSource: i === 0 }));
    }
    await sched.waitFor(() => sched.finished().length >= n, 60_000);
    const rate = n / ((performance.now() - t0) / 1000);
    console.log(`worker shell (ComputeBatch/TasksFinished): ${Math.round(rate)} tasks/s`);
    expect(sched.of('taskErred')).toEqual([]);
    const keys = sched.finished().map((m) => m.key);
    expect(keys).toHaveLength(n);
    expect(new Set(keys).size).toBe(n);
    // results leave in runs: far fewer messages than tasks
    expect(sched.of('tasksFinished').length + sched.of('taskFinished').length).toBeLessThan(n / 10);
  });
});

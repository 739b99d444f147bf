import { describe, expect, it, vi } from 'vitest';
import { existsSync, readdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeValue, makeRef } from '@skein/common';
import { isSpilled } from '../src/state/types.js';
import { PeerClients, fetchData } from '../src/server/fetch.js';
import { computeCmd, workerHarness } from './harness.js';

const MB = 1e6;

/** The bytes the `pattern` fixture makes. */
function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 255;
  return b;
}

/** A task that checks an input against pattern(n, seed) in the thread. */
const check = (b: Uint8Array, seed: number) => {
  for (let i = 0; i < b.length; i++) if (b[i] !== ((i * 31 + seed) & 255)) return `bad byte at ${i}`;
  return b.length;
};

const { cleanup, setup } = workerHarness();

describe('Worker memory: spilling', () => {
  it('spills least recently used results past the target and reads them back', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'skein-spill-test-'));
    cleanup.push(() => rmSync(parent, { recursive: true, force: true }));
    const { sched, worker } = await setup({
      memoryLimit: '100MB',
      memoryTargetFraction: 0.6,
      localDirectory: parent,
      readRss: () => 0, // only the target (managed memory) applies here
    });
    const dir = worker.localDirectory;
    expect(dir.startsWith(join(parent, 'skein-worker-'))).toBe(true);
    expect(readdirSync(dir)).toEqual([]);
    const n = 20 * MB;
    const keys = ['p0', 'p1', 'p2', 'p3', 'p4'];
    for (const [i, key] of keys.entries()) sched.send(worker.address, computeCmd(key, 'pattern', [n, i]));
    await sched.waitFor(() => sched.of('taskFinished').length >= 5);
    const st = worker.workerState;
    await sched.waitFor(() => st.managedBytes <= 60 * MB && st.spilledBytes > 0);
    expect(st.managedBytes + st.spilledBytes).toBe(5 * n);
    // the oldest results went to disk, one file each
    const spilled = keys.filter((k) => isSpilled(st.data.get(k)));
    expect(spilled).toEqual(['p0', 'p1']);
    expect(readdirSync(dir)).toHaveLength(2);
    // spilled bytes count toward the next full GC, like released ones
    expect(worker.releasedMemory.pending).toBe(2 * n);
    for (const f of readdirSync(dir)) expect(f).toMatch(/^[0-9a-f]{40}-\d+$/);
    // the scheduler hears about it
    const hb = await sched.waitFor(() => sched.of('heartbeat').find((h) => h.spilledBytes === 2 * n));
    expect(hb.paused).toBe(false);
    expect(hb.managedBytes).toBe(3 * n);

    // GetData streams spilled values from their files (chunked) and in-memory ones as usual
    const peers = new PeerClients();
    cleanup.push(() => peers.close());
    const got = await fetchData(peers.get(worker.address), worker.address, ['p0', 'p3', 'p1'], 'test');
    expect(got.missing).toEqual([]);
    expect(got.data.get('p0')!.data.equals(pattern(n, 0))).toBe(true);
    expect(got.data.get('p1')!.data.equals(pattern(n, 1))).toBe(true);
    expect(got.data.get('p3')!.data.equals(pattern(n, 3))).toBe(true);
    expect(isSpilled(st.data.get('p0'))).toBe(true); // serving does not unspill

    // a task that needs a spilled input gets the right bytes; the input comes back into memory
    sched.send(worker.address, computeCmd('check-p0', check, [makeRef('p0'), 0], { deps: ['p0'] }));
    const fin = await sched.waitFor(() => sched.of('taskFinished').find((m) => m.key === 'check-p0'));
    expect(decodeValue(fin.value)).toBe(n);
    expect(isSpilled(st.data.get('p0'))).toBe(false);
    // ... and the least recently used others are spilled to stay below the target (p0 plus the
    // small result of check-p0 push it just past 60 MB: p2 and p3 go)
    await sched.waitFor(() => st.managedBytes <= 60 * MB && readdirSync(dir).length === 3);
    expect(keys.filter((k) => isSpilled(st.data.get(k)))).toEqual(['p1', 'p2', 'p3']);
    sched.send(worker.address, computeCmd('check-p1', check, [makeRef('p1'), 1], { deps: ['p1'] }));
    const fin1 = await sched.waitFor(() => sched.of('taskFinished').find((m) => m.key === 'check-p1'));
    expect(decodeValue(fin1.value)).toBe(n);

    // freeing a spilled key deletes its file
    const p2file = (st.data.get('p2') as { file: string }).file;
    sched.send(worker.address, { kind: { $case: 'freeKeys', value: { keys: ['p2'], stimulusId: 'free' } } });
    await sched.waitFor(() => !st.data.has('p2') && !readdirSync(dir).includes(p2file));

    await worker.close();
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(parent)).toBe(true); // only the worker's own directory goes
  });

  it('spills everything it can while process memory stays above spill', async () => {
    const { sched, worker } = await setup({
      memoryLimit: '1GB',
      memoryTargetFraction: false,
      memoryPauseFraction: false,
      readRss: () => 900 * MB,
      memoryMonitorMs: 10,
    });
    for (let i = 0; i < 3; i++) sched.send(worker.address, computeCmd(`b${i}`, 'pattern', [MB, i]));
    await sched.waitFor(() => sched.of('taskFinished').length >= 3);
    const st = worker.workerState;
    await sched.waitFor(() => st.spilledBytes === 3 * MB);
    expect(st.managedBytes).toBe(0);
    expect(readdirSync(worker.localDirectory)).toHaveLength(3);
  });

  it('does nothing without a memory limit, and removes its directory on retire', async () => {
    const { sched, worker } = await setup({ memoryLimit: 0, readRss: () => 1e15, memoryMonitorMs: 10 });
    sched.send(worker.address, computeCmd('b', 'pattern', [MB, 1]));
    await sched.waitFor(() => sched.of('taskFinished').length >= 1);
    await new Promise((r) => setTimeout(r, 100));
    expect(worker.workerState.spilledBytes).toBe(0);
    expect(worker.workerState.paused).toBe(false);
    const dir = worker.localDirectory;
    expect(existsSync(dir)).toBe(true);
    await worker.retire();
    expect(existsSync(dir)).toBe(false);
  });
});

describe('Worker memory: pause', () => {
  it('pauses past the pause threshold: running tasks finish, queued ones wait until memory falls', async () => {
    let rss = 0;
    const warn = vi.spyOn(process.stderr, 'write');
    cleanup.push(() => warn.mockRestore());
    const { sched, worker } = await setup({
      memoryLimit: '1GB',
      memoryTargetFraction: false,
      memorySpillFraction: false,
      memoryPauseFraction: 0.5,
      readRss: () => rss,
      memoryMonitorMs: 10,
    });
    const st = worker.workerState;
    const sleep = (ms: number) => new Promise((r) => setTimeout(() => r(ms), ms));
    sched.send(worker.address, computeCmd('slow', sleep, [300]));
    await sched.waitFor(() => st.executing.has('slow'));
    rss = 600 * MB;
    await sched.waitFor(() => st.paused);
    const hb = await sched.waitFor(() => sched.of('heartbeat').find((h) => h.paused));
    expect(hb.paused).toBe(true);
    expect(warn.mock.calls.some(([line]) => /WARN +worker: paused: process memory .* is 60% of the limit/.test(String(line)))).toBe(true);
    sched.send(worker.address, computeCmd('q1', 'add', [1, 2]), computeCmd('q2', 'add', [3, 4]));
    // the running task finishes; the queued ones do not start
    await sched.waitFor(() => sched.of('taskFinished').find((m) => m.key === 'slow'));
    await new Promise((r) => setTimeout(r, 200));
    expect(sched.of('taskFinished').map((m) => m.key)).toEqual(['slow']);
    expect(st.readyLength).toBe(2);
    expect(st.executing.size).toBe(0);
    // memory falls: resume
    rss = 100 * MB;
    await sched.waitFor(() => sched.of('taskFinished').length >= 3);
    expect(st.paused).toBe(false);
    await sched.waitFor(() => sched.of('heartbeat').at(-1)?.paused === false);
    expect(warn.mock.calls.some(([line]) => /WARN +worker: resumed: process memory/.test(String(line)))).toBe(true);
  });
});

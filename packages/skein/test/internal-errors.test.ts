import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Client, InternalError } from '@skein/client';
import type { SchedulerEvent } from '@skein/core-scheduler';
import { LocalCluster } from '../src/index.js';
import { until } from './helpers.js';

// The failure policy for a throw inside a state machine's handle (packages/protocol/README.md,
// "Internal errors"), exercised with injected faults.
describe('internal errors', () => {
  it("a worker whose state machine throws closes, its nanny restarts it, and a 2,000-task map still returns every result", async () => {
    const dir = mkdtempSync(join(tmpdir(), 'skein-fault-'));
    try {
      // Every worker gets the fault; the first to reach its 300th ExecuteSuccess claims the file and throws.
      await using cluster = await LocalCluster.start({
        nWorkers: 2,
        memoryLimit: '1GB',
        env: { SKEIN_TEST_FAULT: 'ExecuteSuccess:300', SKEIN_TEST_FAULT_ONCE: join(dir, 'fired') },
      });
      await using client = await Client.connect(cluster);
      const pids = new Map([...cluster.workers].map(([name, w]) => [name, w.pid]));
      const xs = Array.from({ length: 2000 }, (_, i) => i);
      const futures = client.map(
        async (x: number) => {
          await new Promise((r) => setTimeout(r, 1));
          return x * 3;
        },
        xs,
      );
      expect(await client.gather(futures)).toEqual(xs.map((x) => x * 3));
      // The scheduler removed the worker with the reason it sent (WorkerClosing) and rescheduled its tasks.
      const reasons = [...cluster.scheduler.state.tasks.values()].map((ts) => ts.lastDeathReason);
      expect(reasons.some((r) => /hit an internal error while handling ExecuteSuccess/.test(r))).toBe(true);

      // Exactly one worker failed: it logged why, exited with the internal-error code, and its nanny restarted it.
      const logs = cluster.logs();
      const failed = [...cluster.workers.keys()].filter((name) => /hit an internal error/.test(logs[name]!.join('\n')));
      expect(failed).toHaveLength(1);
      const name = failed[0]!;
      const log = logs[name]!.join('\n');
      expect(log).toMatch(/injected fault \(SKEIN_TEST_FAULT=ExecuteSuccess:300\) on ExecuteSuccess/);
      expect(log).toMatch(/closed on an internal error \(exit code 5; its log says which\); restarting it/);
      const handle = cluster.workers.get(name)!;
      await until(async () => {
        const workers = (await client.schedulerInfo()).workers;
        return workers.length === 2 && handle.pid !== pids.get(name) && workers.some((w) => w.pid === handle.pid);
      }, 30_000, 'the nanny to restart the failed worker');
      // The restarted worker (its fault already claimed) and the other one keep computing.
      expect(await client.gather(client.map((x: number) => x + 1, [1, 2, 3]))).toEqual([2, 3, 4]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a scheduler event that throws fails the futures it touched with an InternalError naming its stimulus id; other clients and later submissions compute', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 1, processes: false, memoryLimit: '1GB' });
    await using a = await Client.connect(cluster);
    await using b = await Client.connect(cluster);
    const state = cluster.scheduler.state;
    // b's work in flight while the fault hits a's graph.
    const slow = b.map(
      async (x: number) => {
        await new Promise((r) => setTimeout(r, 20));
        return -x;
      },
      [1, 2, 3, 4],
    );
    let failedEvent: SchedulerEvent | undefined;
    state.faultHook = (e, point) => {
      if (failedEvent || point !== 'drained' || e.type !== 'GraphUpdated' || !e.tasks.some((t) => t.key === 'doomed-1')) return;
      failedEvent = e;
      throw new Error('injected scheduler fault');
    };
    const input = a.submitWith({ key: 'doomed-1' }, (x: number) => x * 2, 21);
    const doomed = a.submitWith({ key: 'doomed-2' }, (x: number) => x + 1, input);
    const err = await doomed.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(InternalError);
    const stimulusId = failedEvent!.stimulusId;
    expect((err as InternalError).message).toContain(`stimulus ${stimulusId}`);
    expect((err as InternalError).message).toMatch(/injected scheduler fault/);
    expect((err as InternalError).stimulusId).toBe(stimulusId);
    expect((err as InternalError).details['story']).toEqual(expect.arrayContaining([expect.objectContaining({ stimulusId })]));
    await expect(input.result()).rejects.toBeInstanceOf(InternalError);
    state.validateState();

    expect(await b.gather(slow)).toEqual([-1, -2, -3, -4]);
    expect(await a.submit((x: number) => x * 2, 21).result()).toBe(42);
    expect(await b.submit((x: number) => x + 1, 1).result()).toBe(2);
    state.validateState();
  });
});

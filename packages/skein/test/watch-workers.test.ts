import { describe, expect, it } from 'vitest';
import { SchedulerAdmin, type WorkerChange } from '@skein/cluster';
import { LocalCluster } from '../src/index.js';

/** Collects what a watch reports; `next(pred)` waits for the first matching change. */
function recorder() {
  const changes: WorkerChange[] = [];
  const waiters: Array<() => void> = [];
  return {
    changes,
    push(c: WorkerChange) {
      changes.push(c);
      for (const w of waiters.splice(0)) w();
    },
    next(pred: (c: WorkerChange) => boolean, timeoutMs = 15_000): Promise<WorkerChange> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching change within ${timeoutMs} ms; saw ${JSON.stringify(changes)}`)), timeoutMs);
        const check = () => {
          const found = changes.find(pred);
          if (found) {
            clearTimeout(timer);
            resolve(found);
          } else waiters.push(check);
        };
        check();
      });
    },
  };
}

// Level 3: the WatchWorkers stream and the admin client that the cluster base uses instead of a
// client session.
describe('WatchWorkers and SchedulerAdmin', () => {
  it('streams a snapshot, then workers added, retiring, removed (expected or not), with their names', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 1, nanny: false, memoryLimit: '1GB' });
    const admin = new SchedulerAdmin(cluster.schedulerAddress);
    try {
      const rec = recorder();
      let snapshot: WorkerChange[] = [];
      const ended: Array<Error | undefined> = [];
      const watch = admin.watchWorkers({ onSnapshot: (ws) => (snapshot = ws), onChange: rec.push, onEnd: (e) => ended.push(e) });
      await watch.ready;
      expect(snapshot.map((c) => [c.kind, c.name, c.status])).toEqual([['added', 'local-0', 'running']]);
      expect(snapshot[0]!.address).toBe(cluster.workers.get('local-0')!.address);

      await cluster.scale(2);
      await cluster.waitForWorkers(2, { timeoutMs: 30_000 });
      const added = await rec.next((c) => c.kind === 'added');
      expect(added).toMatchObject({ name: 'local-1', status: 'running', address: cluster.workers.get('local-1')!.address });
      expect(added.pid).toBe(cluster.workers.get('local-1')!.pid);
      expect((await admin.workers()).map((w) => w.name).sort()).toEqual(['local-0', 'local-1']);

      // A retire: status retiring, then removed as expected.
      await cluster.retireWorkers(['local-1']);
      const retiring = await rec.next((c) => c.kind === 'status' && c.name === 'local-1');
      expect(retiring.status).toBe('retiring');
      const left = await rec.next((c) => c.kind === 'removed' && c.name === 'local-1');
      expect(left.expected).toBe(true);

      // A worker killed: removed, not expected, with the scheduler's reason.
      const victim = cluster.workers.get('local-0')! as unknown as { kill(signal?: NodeJS.Signals): void };
      victim.kill('SIGKILL');
      const lost = await rec.next((c) => c.kind === 'removed' && c.name === 'local-0');
      expect(lost.expected).toBe(false);
      expect(lost.reason).not.toBe('');

      // The admin is no client of the scheduler.
      expect(cluster.scheduler.info().clients).toBe(0);
      watch.close();
      expect(ended).toEqual([undefined]);
    } finally {
      admin.close();
    }
  });

  it('a watch ends with an error when the scheduler closes', async () => {
    const cluster = await LocalCluster.start({ nWorkers: 0 });
    const admin = new SchedulerAdmin(cluster.schedulerAddress);
    try {
      let resolveEnd!: (e: Error | undefined) => void;
      const end = new Promise<Error | undefined>((r) => (resolveEnd = r));
      const watch = admin.watchWorkers({ onChange: () => undefined, onEnd: resolveEnd });
      await watch.ready;
      await cluster.close();
      const err = await end;
      expect(err).toBeInstanceOf(Error);
      expect((err as { code?: string }).code).toBe('unavailable');
    } finally {
      admin.close();
      await cluster.close();
    }
  });

  it('a scheduler that cannot be reached fails the calls with a message naming it', async () => {
    const admin = new SchedulerAdmin('tcp://127.0.0.1:1', { callTimeoutMs: 2_000 });
    try {
      await expect(admin.workers()).rejects.toThrow(/Listing the workers at the scheduler tcp:\/\/127\.0\.0\.1:1/);
    } finally {
      admin.close();
    }
  });
});

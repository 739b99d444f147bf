import { afterEach, describe, expect, it } from 'vitest';
import { SkeinError } from '@skein/common';
import { Cluster, WorkerStartTimeoutError, type ClusterBackend, type SchedulerControl, type SchedulerHandle, type WorkerChange, type WorkerHandle, type WorkerWatchHandlers } from '../src/index.js';

// Level 2 without sockets: a fake backend whose "processes" are objects, and a fake scheduler
// that records what the base asks of it.
class FakeProcess implements WorkerHandle {
  closed = false;
  readonly exited: Promise<number | null>;
  #exit!: (code: number | null) => void;
  readonly lines: string[] = [];
  constructor(
    readonly name: string,
    readonly address: string,
  ) {
    this.exited = new Promise((r) => (this.#exit = r));
  }
  logs(): string[] {
    return this.lines.slice();
  }
  async close(): Promise<void> {
    this.closed = true;
    this.#exit(0);
  }
  crash(): void {
    this.#exit(137);
  }
}

class FakeScheduler implements SchedulerControl {
  readonly registered = new Map<string, FakeProcess>();
  readonly retired: string[][] = [];
  recommendation = { target: 0, workersToClose: [] as string[], reason: 'none' };
  load = new Map<string, { processing: number; managedBytes: number }>();
  async retireWorkers(workers: string[]): Promise<string[]> {
    this.retired.push(workers);
    for (const w of workers) this.registered.delete(w);
    return workers;
  }
  async adaptiveTarget(): Promise<{ target: number; workersToClose: string[]; current: number; reason: string }> {
    return { ...this.recommendation, current: this.registered.size };
  }
  async workers() {
    return [...this.registered.values()].map((w) => ({ name: w.name, address: w.address, ...(this.load.get(w.name) ?? { processing: 0, managedBytes: 0 }) }));
  }
  async close(): Promise<void> {}
}

/** Starts that stay pending (a job in a batch queue) until their signal aborts them. */
function fakeBackend(opts: { failNames?: Set<string>; startDelayMs?: number; pendingForever?: boolean } = {}) {
  const scheduler = new FakeScheduler();
  const started: FakeProcess[] = [];
  let port = 9000;
  let concurrent = 0;
  let maxConcurrentReconciles = 0;
  const backend: ClusterBackend<FakeProcess, SchedulerHandle> & {
    scheduler: FakeScheduler;
    started: FakeProcess[];
    closed: boolean;
    requests: string[];
    aborted: string[];
  } = {
    scheduler,
    started,
    closed: false,
    requests: [],
    aborted: [],
    async startScheduler() {
      return new FakeProcess('scheduler', 'tcp://127.0.0.1:8786');
    },
    async startWorker(name, schedulerAddress, options) {
      expect(schedulerAddress).toBe('tcp://127.0.0.1:8786');
      backend.requests.push(name);
      if (opts.pendingForever) {
        options?.report('Priority (3 jobs ahead in the queue)');
        await new Promise<void>((_, reject) => {
          const timer = setTimeout(() => reject(new Error('still pending after 30 s')), 30_000);
          options?.signal.addEventListener('abort', () => {
            clearTimeout(timer);
            backend.aborted.push(name);
            reject(new SkeinError('cancelled', `start of ${name} cancelled`));
          });
        });
      }
      concurrent++;
      maxConcurrentReconciles = Math.max(maxConcurrentReconciles, concurrent);
      await new Promise((r) => setTimeout(r, opts.startDelayMs ?? 1));
      concurrent--;
      if (opts.failNames?.has(name)) throw new SkeinError('unavailable', `cannot start ${name}`);
      const p = new FakeProcess(name, `tcp://127.0.0.1:${port++}`);
      started.push(p);
      scheduler.registered.set(name, p);
      return p;
    },
    async connect() {
      return scheduler;
    },
    async close() {
      backend.closed = true;
    },
  };
  return backend;
}

async function until(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

let cluster: Cluster<FakeProcess> | undefined;
afterEach(async () => {
  await cluster?.close();
  cluster = undefined;
});

describe('Cluster base with a fake backend', () => {
  it('starts the scheduler and the initial workers, then scales up and down', async () => {
    const backend = fakeBackend();
    cluster = await new Cluster(backend, { nWorkers: 2 }).start();
    expect(cluster.status).toBe('running');
    expect(cluster.schedulerAddress).toBe('tcp://127.0.0.1:8786');
    expect([...cluster.workers.keys()]).toEqual(['worker-0', 'worker-1']);
    await cluster.scale(4);
    await cluster.waitForWorkers(4);
    expect(cluster.workers.size).toBe(4);
    // worker-1 is busy, worker-2 holds data: drop the idle, empty ones first.
    backend.scheduler.load.set('worker-1', { processing: 3, managedBytes: 0 });
    backend.scheduler.load.set('worker-2', { processing: 0, managedBytes: 1000 });
    await cluster.scale(2);
    expect([...cluster.workers.keys()].sort()).toEqual(['worker-1', 'worker-2']);
    expect(backend.scheduler.retired.map((r) => [...r].sort())).toEqual([['worker-0', 'worker-3']]);
    expect(backend.started.filter((p) => p.closed).map((p) => p.name).sort()).toEqual(['worker-0', 'worker-3']);
  });

  it('serializes concurrent scale calls: the last one wins', async () => {
    const backend = fakeBackend({ startDelayMs: 20 });
    cluster = await new Cluster(backend).start();
    await Promise.all([cluster.scale(3), cluster.scale(1), cluster.scale(2)]);
    await cluster.waitForWorkers(2);
    await until(() => cluster!.pendingWorkers.length === 0);
    expect(cluster.workers.size).toBe(2);
    expect(cluster.requested).toBe(2);
    // The starts no longer wanted were closed as soon as they came up.
    expect(backend.started.filter((p) => !p.closed)).toHaveLength(2);
  });

  it('replaces a worker that dies while wanted, not one that was retired', async () => {
    const backend = fakeBackend();
    cluster = await new Cluster(backend, { nWorkers: 2 }).start();
    cluster.workers.get('worker-0')!.crash();
    await until(() => backend.started.length === 3 && cluster!.workers.size === 2);
    expect(cluster.workers.get('worker-0')).toBe(backend.started[2]);
    expect(cluster.logs()['cluster']!.join('\n')).toMatch(/worker-0 exited unexpectedly \(code 137\)/);
    await cluster.scale(1);
    await new Promise((r) => setTimeout(r, 20));
    expect(backend.started).toHaveLength(3);
    // A worker that leaves with exit 0 (retired through the scheduler by someone else) is not replaced.
    const [only] = cluster.workers.values();
    await only!.close();
    await until(() => cluster!.workers.size === 0);
    expect(cluster.requested).toBe(0);
    expect(backend.started).toHaveLength(3);
  });

  it('stops refilling a worker slot that keeps crashing', async () => {
    const backend = fakeBackend();
    cluster = await new Cluster(backend, { nWorkers: 1 }).start();
    for (let i = 1; i <= 5; i++) {
      cluster.workers.get('worker-0')!.crash();
      await until(() => backend.started.length === i + 1 && cluster!.workers.size === 1);
    }
    cluster.workers.get('worker-0')!.crash();
    await until(() => cluster!.workers.size === 0);
    await new Promise((r) => setTimeout(r, 20));
    expect(backend.started).toHaveLength(6);
    expect(cluster.requested).toBe(0);
    expect(cluster.logs()['cluster']!.join('\n')).toMatch(/not replacing it again/);
  });

  it('reports a worker that fails to start, and forgets it', async () => {
    const backend = fakeBackend({ failNames: new Set(['worker-1']) });
    cluster = await new Cluster(backend).start();
    await cluster.scale(2);
    await expect(cluster.waitForWorkers(2)).rejects.toThrow(/a worker failed to start: cannot start worker-1/);
    expect([...cluster.workers.keys()]).toEqual(['worker-0']);
    expect(cluster.requested).toBe(1);
    expect(cluster.logs()['cluster']!.join('\n')).toMatch(/worker worker-1 failed to start: cannot start worker-1/);
  });

  it('workers pending for 30 s block neither scale nor close: they are counted, cancelled when unwanted', async () => {
    const backend = fakeBackend({ pendingForever: true });
    const c = await new Cluster(backend).start();
    let t0 = Date.now();
    await c.scale(3);
    expect(Date.now() - t0).toBeLessThan(500);
    expect(c.pendingWorkers).toEqual(['worker-0', 'worker-1', 'worker-2']);
    expect(c.workerCounts).toEqual({ planned: 3, requested: 3, observed: 0 });
    const err = await c.waitForWorkers(3, { timeoutMs: 50 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'TimeoutError', code: 'deadline_exceeded', details: { pending: ['worker-0', 'worker-1', 'worker-2'] } });
    expect((err as Error).message).toMatch(/Only 0 of 3 workers .* registered within 50 ms; still starting: worker-0 \(requested [\d.]+ s ago\)/);
    t0 = Date.now();
    await c.scale(1); // the pending starts are dropped first, and cancelled
    expect(Date.now() - t0).toBeLessThan(500);
    await until(() => c.pendingWorkers.length === 1);
    expect(backend.aborted.sort()).toEqual(['worker-1', 'worker-2']);
    t0 = Date.now();
    await c.close();
    expect(Date.now() - t0).toBeLessThan(500);
    expect(backend.aborted.sort()).toEqual(['worker-0', 'worker-1', 'worker-2']);
    expect(c.pendingWorkers).toEqual([]);
  });

  it('hands out a job for every requested worker at once; a start that times out says the backend\'s reason', async () => {
    const backend = fakeBackend({ pendingForever: true });
    cluster = await new Cluster(backend, { workerStartTimeoutMs: 100 }).start();
    await cluster.scale(1);
    const [job] = cluster.jobs();
    expect(job!.name).toBe('worker-0');
    expect(job!.status()).toMatchObject({ state: 'pending', reason: 'Priority (3 jobs ahead in the queue)' });
    expect(await job!.logs()).toEqual([]);
    const err = await cluster.waitForWorkers(1).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(WorkerStartTimeoutError);
    expect(err).toMatchObject({ code: 'deadline_exceeded', workerName: 'worker-0', reason: 'Priority (3 jobs ahead in the queue)' });
    expect((err as Error).message).toMatch(/Worker worker-0 did not start within 100 ms \(last reported: Priority \(3 jobs ahead in the queue\)\)/);
    expect(job!.status().state).toBe('failed');
    expect(backend.aborted).toEqual(['worker-0']);
    expect(cluster.workerCounts).toEqual({ planned: 0, requested: 0, observed: 0 });
  });

  it('job handles follow a worker from running to retired, and cancel() retires it', async () => {
    const backend = fakeBackend();
    cluster = await new Cluster(backend, { nWorkers: 2 }).start();
    const jobs = new Map(cluster.jobs().map((j) => [j.name, j]));
    expect([...jobs.values()].map((j) => j.status().state)).toEqual(['running', 'running']);
    backend.started[0]!.lines.push('hello from worker-0');
    expect(await jobs.get('worker-0')!.logs()).toEqual(['hello from worker-0']);
    await jobs.get('worker-1')!.cancel();
    expect(jobs.get('worker-1')!.status()).toMatchObject({ state: 'finished', reason: 'retired' });
    expect(cluster.requested).toBe(1);
    cluster.workers.get('worker-0')!.crash();
    await until(() => backend.started.length === 3);
    await cluster.waitForWorkers(1);
    expect(jobs.get('worker-0')!.status().state).toBe('running'); // its replacement
  });

  it('adapt counts pending workers: a burst with every start pending asks for each worker once', async () => {
    const backend = fakeBackend({ pendingForever: true });
    cluster = await new Cluster(backend).start();
    backend.scheduler.recommendation = { target: 4, workersToClose: [], reason: 'burst' };
    const adaptive = cluster.adapt({ maximum: 10, intervalMs: 5 });
    await until(() => adaptive.history.length >= 20);
    expect(backend.requests).toEqual(['worker-0', 'worker-1', 'worker-2', 'worker-3']);
    expect(adaptive.history.filter((h) => h.decision.type === 'up')).toHaveLength(1);
    expect(cluster.workerCounts).toEqual({ planned: 4, requested: 4, observed: 0 });
    await adaptive.stop();
  });

  it('learns registration from the scheduler (WatchWorkers), not from the start', async () => {
    const backend = fakeBackend();
    let watcher: WorkerWatchHandlers | undefined;
    const watching: SchedulerControl = {
      ...backend.scheduler,
      retireWorkers: (w) => backend.scheduler.retireWorkers(w),
      adaptiveTarget: () => backend.scheduler.adaptiveTarget(),
      workers: () => backend.scheduler.workers(),
      close: async () => undefined,
      watchWorkers(handlers) {
        watcher = handlers;
        handlers.onSnapshot?.([]);
        return { ready: Promise.resolve(), close: () => handlers.onEnd?.(undefined) };
      },
    };
    backend.connect = async () => watching;
    cluster = await new Cluster(backend).start();
    await cluster.scale(1);
    await until(() => cluster!.workers.size === 1);
    let ready = false;
    const waiting = cluster.waitForWorkers(1).then(() => (ready = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(ready).toBe(false); // started, but the scheduler has not said it registered
    expect(cluster.workerCounts).toEqual({ planned: 1, requested: 1, observed: 0 });
    const added: WorkerChange = {
      kind: 'added', address: cluster.workers.get('worker-0')!.address, name: 'worker-0', status: 'running',
      reason: '', expected: false, nannyAddress: '', pid: 1, timeMs: Date.now(),
    };
    watcher!.onChange(added);
    await waiting;
    expect(cluster.workerCounts.observed).toBe(1);
    watcher!.onChange({ ...added, kind: 'removed', reason: 'connection lost' });
    expect(cluster.workerCounts.observed).toBe(0);
    expect(cluster.logs()['cluster']!.join('\n')).toMatch(/the scheduler lost worker worker-0 \(connection lost\)/);
  });

  it('one handle may carry several workers (a batch job with processes > 1): counts are in workers, whole handles are requested and retired', async () => {
    const backend = fakeBackend();
    let watcher: WorkerWatchHandlers | undefined;
    const change = (kind: WorkerChange['kind'], name: string, address: string): WorkerChange => ({
      kind, address, name, status: 'running', reason: '', expected: false, nannyAddress: '', pid: 1, timeMs: Date.now(),
    });
    const watching: SchedulerControl = {
      retireWorkers: (w) => backend.scheduler.retireWorkers(w),
      adaptiveTarget: () => backend.scheduler.adaptiveTarget(),
      workers: () => backend.scheduler.workers(),
      close: async () => undefined,
      watchWorkers(handlers) {
        watcher = handlers;
        handlers.onSnapshot?.([]);
        return { ready: Promise.resolve(), close: () => handlers.onEnd?.(undefined) };
      },
    };
    const multi: ClusterBackend<FakeProcess, SchedulerHandle> = {
      startScheduler: () => backend.startScheduler(),
      workersPerHandle: 2,
      async startWorker(name, address, options) {
        expect(options?.workerNames).toEqual([`${name}-0`, `${name}-1`]);
        const job = await backend.startWorker(name, address, options);
        // The job's two processes register under the names the base gave them.
        backend.scheduler.registered.delete(name);
        for (const [i, w] of options!.workerNames.entries()) {
          const p = new FakeProcess(w, `${job.address}${i}`);
          backend.scheduler.registered.set(w, p);
          watcher?.onChange(change('added', w, p.address));
        }
        return job;
      },
      connect: async () => watching,
    };
    cluster = await new Cluster(multi).start();
    await cluster.scale(4);
    expect(backend.requests).toEqual(['worker-0', 'worker-1']); // 2 handles for 4 workers
    expect(cluster.workerCounts).toMatchObject({ planned: 4, requested: 4 });
    expect(cluster.workerStatus().pending.map((p) => [p.name, p.job])).toEqual([
      ['worker-0-0', 'worker-0'], ['worker-0-1', 'worker-0'], ['worker-1-0', 'worker-1'], ['worker-1-1', 'worker-1'],
    ]);
    await cluster.waitForWorkers(4);
    expect(cluster.workerCounts).toEqual({ planned: 4, requested: 4, observed: 4 });
    expect(cluster.requested).toBe(4);
    expect(cluster.workerStatus().running.map((r) => r.name)).toEqual(['worker-0-0', 'worker-0-1', 'worker-1-0', 'worker-1-1']);
    // 3 workers still need both handles: nothing is retired.
    await cluster.scale(3);
    expect(backend.scheduler.retired).toEqual([]);
    expect(cluster.workerCounts.planned).toBe(4);
    // Down to 2: the idle handle goes, both its workers retired through the scheduler first.
    backend.scheduler.load.set('worker-0-0', { processing: 2, managedBytes: 0 });
    await cluster.scale(2);
    expect(backend.scheduler.retired).toEqual([['worker-1-0', 'worker-1-1']]);
    expect(backend.started.filter((p) => p.closed).map((p) => p.name)).toEqual(['worker-1']);
    expect(cluster.workerCounts).toEqual({ planned: 2, requested: 2, observed: 2 });
    // Retiring one worker of a handle retires its handle: its workers stop together.
    await cluster.scale(4);
    await cluster.waitForWorkers(4);
    await cluster.retireWorkers(['worker-2-1']);
    expect(backend.scheduler.retired.at(-1)).toEqual(['worker-2-0', 'worker-2-1']);
    expect([...cluster.workers.keys()]).toEqual(['worker-0']);
    expect(cluster.requested).toBe(2);
    // adapt retires a handle only once the scheduler names all of its workers.
    const addressOf = (w: string) => backend.scheduler.registered.get(w)!.address;
    backend.scheduler.recommendation = { target: 0, workersToClose: [addressOf('worker-0-1')], reason: 'idle' };
    const adaptive = cluster.adapt({ minimum: 0, maximum: 4, intervalMs: 5, waitCount: 2, maxRetireFraction: 1 });
    await until(() => adaptive.history.filter((h) => h.decision.type === 'down').length >= 3);
    expect(cluster.workers.size).toBe(1);
    backend.scheduler.recommendation = { target: 0, workersToClose: [addressOf('worker-0-1'), addressOf('worker-0-0')], reason: 'idle' };
    await until(() => cluster!.workers.size === 0);
    expect(backend.scheduler.retired.at(-1)?.slice().sort()).toEqual(['worker-0-0', 'worker-0-1']);
    await adaptive.stop();
  });

  it('handles of several workers pending for 30 s: counted in workers, listed per worker, cancelled at once by scale and close', async () => {
    const backend = fakeBackend({ pendingForever: true });
    const multi: ClusterBackend<FakeProcess, SchedulerHandle> = {
      startScheduler: () => backend.startScheduler(),
      workersPerHandle: 3,
      startWorker: (name, address, options) => backend.startWorker(name, address, options),
      connect: () => backend.connect!(''),
    };
    cluster = await new Cluster(multi).start();
    await cluster.scale(5); // 2 handles of 3
    expect(backend.requests).toEqual(['worker-0', 'worker-1']);
    expect(cluster.workerCounts).toEqual({ planned: 6, requested: 6, observed: 0 });
    const st = cluster.workerStatus();
    expect(st.pending.map((p) => p.name)).toEqual(['worker-0-0', 'worker-0-1', 'worker-0-2', 'worker-1-0', 'worker-1-1', 'worker-1-2']);
    expect(st.pending.every((p) => p.reason === 'Priority (3 jobs ahead in the queue)')).toBe(true);
    expect(cluster.jobs().map((j) => [j.name, j.workerNames, j.status().state])).toEqual([
      ['worker-0', ['worker-0-0', 'worker-0-1', 'worker-0-2'], 'pending'],
      ['worker-1', ['worker-1-0', 'worker-1-1', 'worker-1-2'], 'pending'],
    ]);
    const t0 = Date.now();
    await cluster.scale(3); // the later handle's start is cancelled
    await until(() => backend.aborted.length === 1);
    expect(backend.aborted).toEqual(['worker-1']);
    expect(cluster.workerCounts).toEqual({ planned: 3, requested: 3, observed: 0 });
    await cluster.close();
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(backend.aborted).toEqual(['worker-1', 'worker-0']);
    cluster = undefined;
  });

  it('closes everything once, in order, and refuses to scale afterwards', async () => {
    const backend = fakeBackend();
    const c = await new Cluster(backend, { nWorkers: 2 }).start();
    await Promise.all([c.close(), c.close()]);
    expect(c.status).toBe('closed');
    expect(backend.started.every((p) => p.closed)).toBe(true);
    expect(backend.closed).toBe(true);
    await expect(c.scale(3)).rejects.toThrow(/closed/);
  });

  it('adapts: up at once, down after waitCount rounds, only the workers the scheduler names', async () => {
    const backend = fakeBackend();
    cluster = await new Cluster(backend, { nWorkers: 1 }).start();
    backend.scheduler.recommendation = { target: 4, workersToClose: [], reason: 'cpu' };
    const adaptive = cluster.adapt({ minimum: 1, maximum: 3, intervalMs: 10, waitCount: 3, maxRetireFraction: 1 });
    await until(() => cluster!.workers.size === 3);
    const addressOf = (n: string) => cluster!.workers.get(n)!.address;
    backend.scheduler.recommendation = { target: 1, workersToClose: [addressOf('worker-2'), addressOf('worker-0')], reason: 'idle' };
    await until(() => cluster!.workers.size === 1);
    expect([...cluster.workers.keys()]).toEqual(['worker-1']);
    expect(backend.scheduler.retired.map((r) => [...r].sort())).toEqual([['worker-0', 'worker-2']]);
    const downs = adaptive.history.filter((h) => h.decision.type === 'down');
    expect(downs).toHaveLength(1);
    const beforeDown = adaptive.history.slice(0, adaptive.history.indexOf(downs[0]!)).filter((h) => h.recommended === 1);
    expect(beforeDown.length).toBeGreaterThanOrEqual(2); // waited for agreeing rounds
    await adaptive.stop();
    expect(cluster.adaptive).toBeUndefined();
  });

  it('adapts down by at most half the workers per round by default (maxRetireFraction 0.5)', async () => {
    const backend = fakeBackend();
    cluster = await new Cluster(backend, { nWorkers: 1 }).start();
    backend.scheduler.recommendation = { target: 4, workersToClose: [], reason: 'cpu' };
    const adaptive = cluster.adapt({ minimum: 1, maximum: 3, intervalMs: 10, waitCount: 1 });
    await until(() => cluster!.workers.size === 3);
    const addressOf = (n: string) => cluster!.workers.get(n)?.address ?? '';
    backend.scheduler.recommendation = { target: 1, workersToClose: [addressOf('worker-2'), addressOf('worker-0')], reason: 'idle' };
    await until(() => cluster!.workers.size === 1);
    // 3 workers: one retired per round (floor(3 * 0.5)), then the other.
    expect(backend.scheduler.retired.map((r) => [...r])).toEqual([['worker-2'], ['worker-0']]);
    await adaptive.stop();
  });

  it('scale() stops adaptive scaling', async () => {
    const backend = fakeBackend();
    cluster = await new Cluster(backend).start();
    backend.scheduler.recommendation = { target: 2, workersToClose: [], reason: 'cpu' };
    const adaptive = cluster.adapt({ maximum: 5, intervalMs: 10 });
    await until(() => cluster!.workers.size === 2);
    await cluster.scale(0);
    expect(adaptive.running).toBe(false);
    backend.scheduler.recommendation = { target: 5, workersToClose: [], reason: 'cpu' };
    await new Promise((r) => setTimeout(r, 50));
    expect(cluster.workers.size).toBe(0);
  });
});

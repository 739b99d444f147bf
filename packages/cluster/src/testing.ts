/**
 * @module @skein/cluster/testing
 * The deployer conformance suite: the behaviour every deployer built on the `Cluster` base must
 * show against a real scheduler (start, scale up and down, pending workers visible, a killed worker
 * replaced, adapt under a burst and back, a worker that cannot start reported, nothing left behind
 * by `close()`). Framework-free: each check is a name and an async `run`, so a test file wires them
 * to its runner.
 *
 * @example
 * import { deployerConformance } from '@skein/cluster/testing';
 * for (const check of deployerConformance(myDeployer)) it(check.name, check.run, check.timeoutMs);
 */
import { WorkerStartTimeoutError, type Cluster } from './cluster.js';
import { SchedulerAdmin } from './admin.js';
import type { WorkerHandle } from './types.js';

/** What the suite needs to know about a deployer. */
export interface DeployerUnderTest<C extends Cluster<WorkerHandle> = Cluster<WorkerHandle>> {
  /** Starts a cluster of this deployer with `nWorkers` workers (resolves once they run). */
  start(nWorkers: number): Promise<C>;
  /** Kills one worker's process abruptly, as a crash would (SIGKILL). */
  kill(cluster: C, name: string): Promise<void> | void;
  /** What of this cluster is still alive (processes, jobs, files), described; [] when nothing is. Called after close(). */
  leftovers(cluster: C): Promise<string[]> | string[];
  /** Loads the cluster with about `tasks` tasks of `taskMs` each; resolves when they are done. */
  burst(cluster: C, tasks: number, taskMs: number): Promise<void>;
  /** Starts a cluster whose workers cannot start (a bad module, a missing binary...), if the deployer can. */
  startBroken?(): Promise<C>;
  /**
   * Starts a cluster (no workers) whose workers start but never become ready (a process that hangs
   * before registering, a job that stays queued), with `workerStartTimeoutMs: timeoutMs`, if the
   * deployer can. The suite asks for one worker and expects a `WorkerStartTimeoutError` carrying
   * the reason the backend last reported (not the base's own 'requested').
   */
  startNeverReady?(timeoutMs: number): Promise<C>;
  /** How long one worker may take to start here (default 30 s). */
  startTimeoutMs?: number;
}

export interface ConformanceCheck {
  name: string;
  run(): Promise<void>;
  /** A deadline for the runner (ms). */
  timeoutMs: number;
}

function check(cond: boolean, what: string): void {
  if (!cond) throw new Error(`deployer conformance: ${what}`);
}

async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`deployer conformance: timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function registered(admin: SchedulerAdmin): Promise<Map<string, string>> {
  return new Map((await admin.workers()).map((w) => [w.name, w.address]));
}

/** Runs `fn` on a fresh cluster and its admin, closes both, then checks that nothing is left behind. */
async function withCluster<C extends Cluster<WorkerHandle>>(
  d: DeployerUnderTest<C>,
  nWorkers: number,
  fn: (cluster: C, admin: SchedulerAdmin) => Promise<void>,
): Promise<void> {
  const cluster = await d.start(nWorkers);
  const admin = new SchedulerAdmin(cluster.schedulerAddress, { security: cluster.security });
  try {
    await fn(cluster, admin);
  } finally {
    admin.close();
    await cluster.close();
  }
  check(cluster.status === 'closed', `close() leaves the cluster closed, got ${cluster.status}`);
  const left = await d.leftovers(cluster);
  check(left.length === 0, `close() leaves nothing behind, found: ${left.join('; ')}`);
}

/** The checks, in a sensible order (each starts and closes its own cluster). */
export function deployerConformance<C extends Cluster<WorkerHandle>>(d: DeployerUnderTest<C>): ConformanceCheck[] {
  const startMs = d.startTimeoutMs ?? 30_000;
  const checks: ConformanceCheck[] = [
    {
      name: 'starts, shows pending workers, scales up and down, and close() leaves nothing behind',
      timeoutMs: 4 * startMs,
      run: () =>
        withCluster(d, 1, async (cluster, admin) => {
          check(cluster.workers.size === 1, `start(1) runs 1 worker, got ${cluster.workers.size}`);
          const [first] = cluster.workers.keys();
          check((await registered(admin)).has(first!), `the scheduler has ${first} registered under the name the base gave it`);
          await cluster.scale(3);
          const counts = cluster.workerCounts;
          check(counts.planned === 3 && counts.requested === 3, `scale(3) plans and requests 3 workers at once, got ${JSON.stringify(counts)}`);
          const st = cluster.workerStatus();
          check(
            st.pending.length >= 1 && st.pending.length + st.running.length === 3,
            `scale(3) shows the workers not running yet as pending in cluster.workerStatus() at once, got ${JSON.stringify(st)}`,
          );
          for (const p of st.pending) check(p.reason !== '', `a pending worker in cluster.workerStatus() says why it is pending (${p.name})`);
          check(st.status === cluster.status && st.planned === 3, `cluster.workerStatus() carries the lifecycle and the counts, got ${JSON.stringify(st)}`);
          const live = cluster.jobs().filter((j) => ['pending', 'running'].includes(j.status().state));
          check(live.length === 3, `scale(3) hands out a job for each of the 3 workers at once, got ${live.map((j) => `${j.name}: ${j.status().state}`).join(', ')}`);
          for (const j of live) {
            const s = j.status();
            check(s.state === 'running' || s.reason !== '', `a pending job says why it is pending (${j.name})`);
          }
          await cluster.waitForWorkers(3, { timeoutMs: 2 * startMs });
          const names = await registered(admin);
          check([...cluster.workers.keys()].every((n) => names.has(n)) && names.size === 3, `3 workers registered, got ${[...names.keys()].join(', ')}`);
          check(cluster.pendingWorkers.length === 0, `no worker pending once they run, got ${cluster.pendingWorkers.join(', ')}`);
          const after = cluster.workerStatus();
          check(
            after.pending.length === 0 && after.running.length === 3 && after.running.every((r) => r.registered),
            `cluster.workerStatus() shows 3 registered workers and none pending once they run, got ${JSON.stringify(after)}`,
          );
          await cluster.scale(1);
          check(cluster.workers.size === 1, `scale(1) leaves 1 worker, got ${cluster.workers.size}`);
          const retired = cluster.jobs().filter((j) => j.status().state === 'finished');
          check(retired.length === 2, `the 2 retired workers' jobs are finished, got ${cluster.jobs().map((j) => `${j.name}: ${j.status().state}`).join(', ')}`);
          await until(async () => (await registered(admin)).size === 1, startMs, 'the scheduler to have 1 worker after scale(1)');
        }),
    },
    {
      name: 'a killed worker comes back under its name',
      timeoutMs: 3 * startMs,
      run: () =>
        withCluster(d, 1, async (cluster, admin) => {
          const [name] = cluster.workers.keys();
          const before = (await registered(admin)).get(name!);
          await d.kill(cluster, name!);
          await until(
            async () => {
              const now = (await registered(admin)).get(name!);
              return now !== undefined && now !== before;
            },
            2 * startMs,
            `${name} to register again after it was killed`,
          );
          await cluster.waitForWorkers(1, { timeoutMs: startMs });
        }),
    },
    {
      name: 'adapts: grows under a burst, shrinks back when idle',
      timeoutMs: 6 * startMs,
      run: () =>
        withCluster(d, 1, async (cluster, admin) => {
          const adaptive = cluster.adapt({ minimum: 1, maximum: 3, intervalMs: 200, waitCount: 3, targetDurationMs: 400 });
          let peak = 0;
          const sample = setInterval(() => (peak = Math.max(peak, cluster.workers.size)), 50);
          try {
            await d.burst(cluster, 40, 300);
            await until(() => peak > 1, 2 * startMs, 'adapt to grow the cluster under the burst');
            await until(() => cluster.workers.size === 1, 3 * startMs, 'adapt to shrink the cluster back to 1 when idle');
            await until(async () => (await registered(admin)).size === 1, startMs, 'the scheduler to have 1 worker after adapting down');
          } finally {
            clearInterval(sample);
            await adaptive.stop();
          }
        }),
    },
  ];
  if (d.startBroken) {
    const startBroken = d.startBroken.bind(d);
    checks.push({
      name: 'a worker that cannot start is reported with its reason, and nothing is left behind',
      timeoutMs: 2 * startMs,
      run: async () => {
        let cluster: C | undefined;
        let error: unknown;
        try {
          cluster = await startBroken();
        } catch (err) {
          error = err;
        }
        if (cluster) {
          // The deployer started the scheduler alone: ask for a worker and wait for it.
          await cluster.scale(1);
          error = await cluster.waitForWorkers(1, { timeoutMs: startMs }).then(
            () => undefined,
            (err: unknown) => err,
          );
          await cluster.close();
          const left = await d.leftovers(cluster);
          check(left.length === 0, `close() leaves nothing behind, found: ${left.join('; ')}`);
        }
        check(error instanceof Error && error.message.length > 0, `a worker that cannot start is an error with a reason, got ${String(error)}`);
      },
    });
  }
  if (d.startNeverReady) {
    const startNeverReady = d.startNeverReady.bind(d);
    checks.push({
      name: 'a worker that never starts times out with the backend\'s reason, and nothing is left behind',
      timeoutMs: 3 * startMs,
      run: async () => {
        const timeoutMs = Math.min(3_000, startMs);
        const cluster = await startNeverReady(timeoutMs);
        let error: unknown;
        let reported = '';
        try {
          await cluster.scale(1);
          const [name] = cluster.pendingWorkers;
          check(name !== undefined, `scale(1) leaves the worker pending, got ${JSON.stringify(cluster.workerStatus())}`);
          // The backend's report, as the status shows it while the worker is pending.
          await until(
            () => {
              const p = cluster.workerStatus().pending.find((w) => w.name === name);
              if (p && p.reason !== 'requested') reported = p.reason;
              return reported !== '' || p === undefined;
            },
            startMs,
            `the backend to report why ${name} is pending`,
          );
          error = await cluster.waitForWorkers(1, { timeoutMs: startMs + timeoutMs }).then(
            () => undefined,
            (err: unknown) => err,
          );
          check(error instanceof WorkerStartTimeoutError, `a worker that never starts is a WorkerStartTimeoutError, got ${String(error)}`);
          const e = error as WorkerStartTimeoutError;
          check(e.workerName === name && e.timeoutMs === timeoutMs, `the error names ${name} and ${timeoutMs} ms, got ${e.workerName}, ${e.timeoutMs}`);
          check(e.reason !== '' && e.reason !== 'requested', `the error carries the backend's reason, got '${e.reason}'`);
          check(e.message.includes(e.reason), `the error's message says the reason, got ${e.message}`);
          const job = cluster.jobs().find((j) => j.name === name);
          check(job?.status().state === 'failed', `the timed-out worker's job is failed, got ${job?.status().state}`);
          check(cluster.workerStatus().pending.length === 0 && cluster.requested === 0, `the timed-out worker is no longer wanted, got ${JSON.stringify(cluster.workerStatus())}`);
        } finally {
          await cluster.close();
        }
        const left = await d.leftovers(cluster);
        check(left.length === 0, `close() leaves nothing behind after a start that timed out, found: ${left.join('; ')}`);
      },
    });
  }
  return checks;
}

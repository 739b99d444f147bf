import { InvalidArgumentError, Lifecycle, Security, SkeinError, TimeoutError, toSkeinError, type LifecycleStatus } from '@skein/common';
import { compileAdaptiveOptions, decideAdaptive, type AdaptiveDecision, type AdaptiveOptions, type CompiledAdaptiveOptions } from './adaptive.js';
import { adminControl } from './control.js';
import type { WorkerWatchSubscription } from './admin.js';
import type { ClusterBackend, SchedulerControl, SchedulerHandle, WorkerHandle, WorkerJob, WorkerJobStatus } from './types.js';

/** A worker slot that crashed this many times is not refilled again (a crash loop). */
const MAX_REPLACEMENTS = 5;

/** Options of the Cluster base. */
export interface ClusterOptions {
  /** Workers to start with (default 0). */
  nWorkers?: number;
  /** Worker names are `<namePrefix>-<n>` (default 'worker'). */
  namePrefix?: string;
  /** What to call the cluster in messages (default 'Cluster'). */
  name?: string;
  /**
   * Give up on a worker that has not started this long after it was requested (ms; default: wait
   * as long as the backend does): its start is cancelled and `waitForWorkers` rejects with a
   * `WorkerStartTimeoutError` carrying the backend's last reason.
   */
  workerStartTimeoutMs?: number;
}

interface CompiledClusterOptions {
  nWorkers: number;
  namePrefix: string;
  name: string;
  workerStartTimeoutMs: number;
}

/** A worker that did not start within `workerStartTimeoutMs`; `reason` is the backend's last word on it. */
export class WorkerStartTimeoutError extends TimeoutError {
  constructor(
    readonly workerName: string,
    readonly timeoutMs: number,
    readonly reason: string,
  ) {
    super(
      `Worker ${workerName} did not start within ${timeoutMs} ms` +
        (reason ? ` (last reported: ${reason})` : '') +
        '; its start was cancelled. Raise workerStartTimeoutMs, or see why the resource manager does not run it.',
      { details: { worker: workerName, timeoutMs, reason } },
    );
  }
}

function compileClusterOptions(o: ClusterOptions): CompiledClusterOptions {
  const nWorkers = o.nWorkers ?? 0;
  if (!Number.isInteger(nWorkers) || nWorkers < 0) throw new InvalidArgumentError(`nWorkers must be a whole number ≥ 0, got ${nWorkers}.`);
  const workerStartTimeoutMs = o.workerStartTimeoutMs ?? Infinity;
  if (!(workerStartTimeoutMs > 0)) throw new InvalidArgumentError(`workerStartTimeoutMs must be a number of ms > 0, got ${workerStartTimeoutMs}.`);
  return { nWorkers, namePrefix: o.namePrefix ?? 'worker', name: o.name ?? 'Cluster', workerStartTimeoutMs };
}

/** `cluster.workerStatus()`: the lifecycle and where each worker is. */
export interface ClusterWorkerStatus {
  status: LifecycleStatus;
  planned: number;
  requested: number;
  observed: number;
  /**
   * Workers requested from the backend and not running yet, oldest request first: the worker's
   * name, its handle's (`job`: the same unless the backend's `workersPerHandle` is more than 1),
   * the backend's last reason, when it was requested (ms since the epoch).
   */
  pending: Array<{ name: string; job: string; reason: string; requestedMs: number }>;
  /** Running workers; `registered` once the scheduler reports them (always true when the base cannot watch). */
  running: Array<{ name: string; job: string; registered: boolean }>;
}

/** One round of adaptive scaling, as recorded in `Adaptive.history`. */
export interface AdaptiveRecord {
  timeMs: number;
  /** The scheduler's recommendation before clamping. */
  recommended: number;
  reason: string;
  current: number;
  decision: AdaptiveDecision;
}

/** What an Adaptive needs from its cluster. */
interface AdaptiveHost {
  requested(): number;
  owns(name: string): boolean;
  control(): Promise<SchedulerControl>;
  scaleTo(n: number): Promise<void>;
  retire(names: string[]): Promise<void>;
  log(message: string): void;
  closing(): boolean;
}

/**
 * Adaptive scaling of one cluster (Dask's Adaptive): every `intervalMs` asks the scheduler how
 * many workers the load calls for, scales up at once and retires the idle workers the scheduler
 * names after `waitCount` consecutive rounds. Made by `cluster.adapt()`; `stop()` ends it.
 */
export class Adaptive {
  /** The last rounds, oldest first (at most 100). */
  readonly history: AdaptiveRecord[] = [];
  #closeCounts = new Map<string, number>();
  #timer: NodeJS.Timeout | undefined;
  #tick: Promise<void> | undefined;
  #stopped = false;

  /** @internal use `cluster.adapt()` */
  constructor(
    private readonly host: AdaptiveHost,
    readonly options: CompiledAdaptiveOptions,
  ) {
    this.#schedule(0);
  }

  get running(): boolean {
    return !this.#stopped;
  }

  /** Stops adapting; resolves when a round in progress has finished. Idempotent. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    await this.#tick;
  }

  #schedule(delayMs: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => {
      this.#tick = this.#round()
        .catch((err: unknown) => {
          if (!this.host.closing()) this.host.log(`adaptive: ${toSkeinError(err).message}`);
        })
        .finally(() => this.#schedule(this.options.intervalMs));
    }, delayMs);
    this.#timer.unref?.();
  }

  async #round(): Promise<void> {
    if (this.#stopped || this.host.closing()) return;
    const o = this.options;
    const control = await this.host.control();
    const rec = await control.adaptiveTarget(o.targetDurationMs);
    let names: string[] = [];
    if (rec.workersToClose.length > 0) {
      const byAddress = new Map((await control.workers()).map((w) => [w.address, w.name]));
      names = rec.workersToClose.map((a) => byAddress.get(a) ?? a).filter((n) => this.host.owns(n));
    }
    if (this.#stopped) return;
    const current = this.host.requested();
    const { decision, closeCounts } = decideAdaptive({
      target: rec.target,
      current,
      workersToClose: names,
      minimum: o.minimum,
      maximum: o.maximum,
      waitCount: o.waitCount,
      closeCounts: this.#closeCounts,
      maxRetireFraction: o.maxRetireFraction,
    });
    this.#closeCounts = closeCounts;
    this.history.push({ timeMs: Date.now(), recommended: rec.target, reason: rec.reason, current, decision });
    if (this.history.length > 100) this.history.shift();
    if (decision.type === 'up') {
      this.host.log(`adaptive: scaling up from ${current} to ${decision.target} workers (${rec.reason})`);
      await this.host.scaleTo(decision.target);
    } else if (decision.type === 'down') {
      this.host.log(`adaptive: retiring ${decision.retire.join(', ')} (${rec.reason})`);
      await this.host.retire(decision.retire);
    }
  }
}

/**
 * The base of every Skein cluster (Dask's SpecCluster): a deployer's `ClusterBackend` starts one
 * scheduler and single workers; the base keeps a set of wanted workers and reconciles the running
 * ones against it in one serialized loop. It starts missing workers, retires unwanted ones
 * gracefully (their unique results move to peers first), replaces a worker that dies while it is
 * still wanted, and owns `scale`, `adapt` and the shutdown order.
 *
 * @example
 * const cluster = await new Cluster(myBackend, { nWorkers: 2 }).start();
 * await cluster.scale(4);
 * const adaptive = cluster.adapt({ minimum: 1, maximum: 8 });
 * await cluster.close();
 */
export class Cluster<W extends WorkerHandle = WorkerHandle, S extends SchedulerHandle = SchedulerHandle> {
  /**
   * Running handles by name (one worker each, unless the backend's `workersPerHandle` is more:
   * then a handle is a job carrying that many workers, `<handle name>-0` ...).
   */
  readonly workers = new Map<string, W>();
  readonly #backend: ClusterBackend<W, S>;
  readonly #opts: CompiledClusterOptions;
  readonly #lifecycle: Lifecycle;
  readonly #wanted = new Set<string>();
  readonly #events: string[] = [];
  #scheduler: S | undefined;
  #control: Promise<SchedulerControl> | undefined;
  #queue: Promise<unknown> = Promise.resolve();
  #adaptive: Adaptive | undefined;
  #counter = 0;
  readonly #deaths = new Map<string, number>();
  /** Starts in flight (requested, not yet running), by name: aborted when no longer wanted or at close. */
  readonly #starting = new Map<string, { abort: AbortController; since: number; settled: Promise<void> }>();
  /** Every requested worker's state, by name (the latest request of a name; ended ones are kept, at most 200). */
  readonly #jobs = new Map<string, WorkerJobStatus>();
  /** Our workers the scheduler reports registered (WatchWorkers), name → address. */
  readonly #observed = new Map<string, string>();
  /** The WatchWorkers stream, once its snapshot arrived (undefined: not watching, handles count instead). */
  #watch: WorkerWatchSubscription | undefined;
  #lastStartError: unknown;
  /** Called whenever the counts change (waitForWorkers). */
  readonly #waiters = new Set<() => void>();
  /** Workers per handle (the backend's `workersPerHandle`). */
  readonly #k: number;

  constructor(backend: ClusterBackend<W, S>, options: ClusterOptions = {}) {
    this.#backend = backend;
    this.#opts = compileClusterOptions(options);
    const k = backend.workersPerHandle ?? 1;
    if (!Number.isInteger(k) || k < 1) throw new InvalidArgumentError(`The backend's workersPerHandle must be a whole number ≥ 1, got ${k}.`);
    this.#k = k;
    this.#lifecycle = new Lifecycle(this.#opts.name);
  }

  /** Starts the scheduler, then the initial workers. Refuses a second start; closes everything on failure. */
  async start(): Promise<this> {
    this.#lifecycle.beginStart();
    try {
      this.#scheduler = await this.#backend.startScheduler();
      this.#log(`scheduler at ${this.#scheduler.address}`);
      void this.#scheduler.exited.then((code) => {
        if (!this.#lifecycle.closing) this.#log(`the scheduler exited unexpectedly (code ${code})`);
      });
      await this.#openWatch();
      await this.#scaleTo(this.#opts.nWorkers);
      await this.waitForWorkers(this.#opts.nWorkers);
    } catch (err) {
      this.#lifecycle.status = 'failed';
      await this.close().catch(() => undefined);
      throw err;
    }
    this.#lifecycle.started();
    return this;
  }

  /** Where clients connect: `tcp://host:port` (`tls://` with TLS). */
  get schedulerAddress(): string {
    return this.#scheduler?.address ?? '';
  }

  /** The cluster's credentials (`Security.insecure()` when it has none): `Client.connect(cluster)` uses them. */
  get security(): Security {
    return this.#backend.security ?? Security.insecure();
  }

  /** The scheduler's handle (undefined before start). */
  protected get schedulerHandle(): S | undefined {
    return this.#scheduler;
  }

  /** The dashboard URL ('' while the scheduler serves none). */
  get dashboardLink(): string {
    return this.#scheduler?.dashboardLink ?? '';
  }

  /** The cluster's lifecycle: 'starting', 'running', 'closing', 'closed', 'failed' (see `workerStatus()` for its workers). */
  get status(): LifecycleStatus {
    return this.#lifecycle.status;
  }

  /**
   * The cluster's state with its workers, at once: the lifecycle, the counts, every pending worker
   * with the backend's reason (Slurm's pending reason, "connecting over SSH"...) and since when it
   * was requested, and the running ones (registered or not yet seen by the scheduler).
   */
  workerStatus(): ClusterWorkerStatus {
    const pending = [...this.#starting]
      .filter(([job]) => this.#jobs.get(job)?.state === 'pending')
      .flatMap(([job, s]) => this.#workerNames(job).map((name) => ({ name, job, reason: this.#jobs.get(job)?.reason ?? '', requestedMs: s.since })));
    const running = [...this.workers.keys()].flatMap((job) =>
      this.#workerNames(job).map((name) => ({ name, job, registered: !this.#watch || this.#observed.has(name) })),
    );
    return { status: this.#lifecycle.status, ...this.workerCounts, pending, running };
  }

  /** How many workers the cluster wants now (running or about to start). */
  get requested(): number {
    return this.#wanted.size * this.#k;
  }

  /** Workers requested from the backend that do not run yet, oldest request first. */
  get pendingWorkers(): string[] {
    return [...this.#starting.keys()];
  }

  /**
   * A handle on every worker requested (pending, running, or ended recently), at once: `status()`
   * with the backend's reason, `logs()`, `cancel()`.
   */
  jobs(): WorkerJob[] {
    return [...this.#jobs.keys()].map((name) => this.#jobOf(name));
  }

  #jobOf(name: string): WorkerJob {
    return {
      name,
      workerNames: this.#workerNames(name),
      status: () => ({ ...(this.#jobs.get(name) ?? { state: 'finished', reason: 'forgotten', sinceMs: 0 }) }),
      logs: async () => this.workers.get(name)?.logs() ?? [],
      cancel: () => this.#retire([name]),
    };
  }

  #setJob(name: string, state: WorkerJobStatus['state'], reason: string): void {
    this.#jobs.delete(name); // re-inserted last: the map stays in order of the latest change
    this.#jobs.set(name, { state, reason, sinceMs: Date.now() });
    if (this.#jobs.size > 200) {
      for (const [n, j] of this.#jobs) {
        if (this.#jobs.size <= 200) break;
        if (j.state === 'finished' || j.state === 'failed') this.#jobs.delete(n);
      }
    }
  }

  /**
   * Dask's three counts: `planned` the workers the cluster wants, `requested` those asked of the
   * backend (starting or running), `observed` those the scheduler reports registered (from
   * WatchWorkers; the running handles when the scheduler cannot be watched).
   */
  get workerCounts(): { planned: number; requested: number; observed: number } {
    return { planned: this.requested, requested: (this.#starting.size + this.workers.size) * this.#k, observed: this.#readyCount() };
  }

  /**
   * Resolves once at least `n` of the cluster's workers run and the scheduler has them registered.
   * Rejects with a `TimeoutError` after `timeoutMs` (naming the workers still starting), and at
   * once when the cluster wants fewer than `n` (say after a start failed: its error is the cause)
   * or closes.
   */
  waitForWorkers(n: number, options: { timeoutMs?: number } = {}): Promise<void> {
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`waitForWorkers(n) needs a whole number ≥ 0, got ${n}.`);
    const timeoutMs = options.timeoutMs ?? Infinity;
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const finish = (err?: unknown) => {
        this.#waiters.delete(check);
        clearTimeout(timer);
        if (err === undefined) resolve();
        else reject(err);
      };
      const check = () => {
        if (this.#readyCount() >= n) return finish();
        if (this.#lifecycle.closing) return finish(new SkeinError('failed_precondition', `The ${this.#opts.name} closed while waiting for ${n} workers.`));
        if (this.requested < n) {
          const last = this.#lastStartError;
          if (last instanceof WorkerStartTimeoutError) return finish(last);
          if (last !== undefined) {
            const e = toSkeinError(last);
            return finish(new SkeinError(e.code, `Waiting for ${n} workers, but a worker failed to start: ${e.message}`, { cause: last }));
          }
          return finish(new SkeinError('failed_precondition', `Waiting for ${n} workers, but the ${this.#opts.name} wants only ${this.requested}; call scale(${n}) first.`));
        }
      };
      if (Number.isFinite(timeoutMs)) {
        timer = setTimeout(() => {
          const now = Date.now();
          const pending = [...this.#starting].map(([name, s]) => `${name} (requested ${((now - s.since) / 1000).toFixed(1)} s ago)`);
          finish(
            new TimeoutError(
              `Only ${this.#readyCount()} of ${n} workers of the ${this.#opts.name} registered within ${timeoutMs} ms` +
                (pending.length > 0 ? `; still starting: ${pending.join(', ')}` : '') +
                '. See cluster.logs() for their output.',
              { details: { pending: [...this.#starting.keys()] } },
            ),
          );
        }, timeoutMs);
      }
      this.#waiters.add(check);
      check();
    });
  }

  /** The adaptive scaling in force, if any. */
  get adaptive(): Adaptive | undefined {
    return this.#adaptive?.running ? this.#adaptive : undefined;
  }

  /** Recent output of every process, by name: 'cluster' (the base's own events), 'scheduler', then each worker. */
  logs(): Record<string, string[]> {
    // Worker names are user data: the record is built from entries (own properties), so a worker
    // named `__proto__` or `constructor` is listed like any other.
    const out: Array<[string, string[]]> = [['cluster', this.#events.slice()]];
    if (this.#scheduler) out.push(['scheduler', this.#scheduler.logs()]);
    for (const [name, w] of this.workers) out.push([name, w.logs()]);
    return Object.fromEntries(out);
  }

  /**
   * Wants `n` workers: requests the missing ones and retires the extra ones. Resolves once every
   * start is requested (not once the workers run: `waitForWorkers(n)` waits for that) and the
   * extra workers are retired, gracefully: idle ones holding the least data first, their unique
   * results moved to peers; a worker still starting is cancelled first. Stops adaptive scaling,
   * as the cluster's size is now fixed.
   */
  async scale(n: number): Promise<void> {
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`scale(n) needs a whole number ≥ 0, got ${n}.`);
    this.#ensureUsable('scale');
    await this.#adaptive?.stop();
    await this.#scaleTo(n);
  }

  /**
   * Scales with the load (Dask's `cluster.adapt()`): between `minimum` and `maximum` workers,
   * up at once, down only after `waitCount` rounds that agree. Replaces an earlier `adapt()`.
   */
  adapt(options: AdaptiveOptions = {}): Adaptive {
    const opts = compileAdaptiveOptions(options);
    this.#ensureUsable('adapt');
    void this.#adaptive?.stop();
    this.#adaptive = new Adaptive(
      {
        requested: () => this.requested,
        owns: (name) => this.#owns(name),
        control: () => this.#controlOf(),
        scaleTo: (n) => this.#scaleTo(n),
        // A handle's workers stop together: only handles whose every worker the scheduler named.
        retire: (names) => this.#retire(this.#wholeJobs(names)),
        log: (m) => this.#log(m),
        closing: () => this.#lifecycle.closing,
      },
      opts,
    );
    return this.#adaptive;
  }

  /**
   * Retires these workers gracefully and stops their processes. A name may be a handle's or one of
   * its workers' (with `workersPerHandle > 1`): the whole handle is retired, its workers stop together.
   */
  async retireWorkers(names: string[]): Promise<void> {
    this.#ensureUsable('retire workers');
    await this.#retire(names);
  }

  /** Stops adaptive scaling, the scheduler and every worker. Idempotent. */
  close(): Promise<void> {
    return this.#lifecycle.close([
      ['stop adaptive scaling', () => this.#adaptive?.stop()],
      ['wait for scaling in progress', () => this.#queue],
      [
        'cancel starts in progress',
        () => {
          for (const s of this.#starting.values()) s.abort.abort();
          return Promise.all([...this.#starting.values()].map((s) => s.settled));
        },
      ],
      ['stop watching the workers', () => this.#watch?.close()],
      ['wake waiters', () => this.#notify()],
      [
        'disconnect from the scheduler',
        async () => {
          const control = await this.#control?.catch(() => undefined);
          await control?.close();
        },
      ],
      ['close the scheduler', () => this.#scheduler?.close()],
      ['stop workers', () => Promise.all([...this.workers.values()].map((w) => w.close()))],
      ['release the backend', () => this.#backend.close?.()],
    ]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---------------------------------------------------------------- internals

  #ensureUsable(what: string): void {
    if (this.#lifecycle.closing) throw new SkeinError('failed_precondition', `Cannot ${what}: the ${this.#opts.name} is ${this.#lifecycle.status}.`);
    if (!this.#scheduler) throw new SkeinError('failed_precondition', `Cannot ${what}: the ${this.#opts.name} is not started; call start() first.`);
  }

  #log(message: string): void {
    this.#events.push(`${new Date().toISOString()} ${message}`);
    if (this.#events.length > 500) this.#events.shift();
  }

  #notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Running workers the scheduler has registered (every running one while not watching). */
  #readyCount(): number {
    if (!this.#watch) return this.workers.size * this.#k;
    let n = 0;
    for (const job of this.workers.keys()) for (const name of this.#workerNames(job)) if (this.#observed.has(name)) n++;
    return n;
  }

  /** The names the workers of handle `job` register under. */
  #workerNames(job: string): string[] {
    return this.#k === 1 ? [job] : Array.from({ length: this.#k }, (_, i) => `${job}-${i}`);
  }

  /** The handle a worker name (or a handle name) belongs to, if it is one of ours. */
  #jobOfName(name: string): string | undefined {
    if (this.#wanted.has(name) || this.workers.has(name) || this.#starting.has(name)) return name;
    if (this.#k === 1) return undefined;
    const cut = name.lastIndexOf('-');
    const job = name.slice(0, cut);
    const i = Number(name.slice(cut + 1));
    if (cut < 0 || !Number.isInteger(i) || i < 0 || i >= this.#k || `${job}-${i}` !== name) return undefined;
    return this.#wanted.has(job) || this.workers.has(job) || this.#starting.has(job) ? job : undefined;
  }

  /** Is this worker (or handle) name one the cluster wants? */
  #owns(name: string): boolean {
    const job = this.#jobOfName(name);
    return job !== undefined && this.#wanted.has(job);
  }

  /** The handles all of whose workers are named (a handle's workers stop together). */
  #wholeJobs(names: string[]): string[] {
    const named = new Set(names);
    const jobs = new Set<string>();
    for (const n of names) {
      const job = this.#jobOfName(n);
      if (job !== undefined && (job === n || this.#workerNames(job).every((w) => named.has(w)))) jobs.add(job);
    }
    return [...jobs];
  }

  /** Follows the scheduler's workers (WatchWorkers), when the control can; else handles count as registered. */
  async #openWatch(): Promise<void> {
    let control: SchedulerControl;
    try {
      control = await this.#controlOf();
    } catch (err) {
      this.#log(`cannot reach the scheduler to watch its workers (${toSkeinError(err).message}); counting started workers instead`);
      return;
    }
    if (!control.watchWorkers) return;
    const sub = control.watchWorkers({
      onSnapshot: (workers) => {
        for (const w of workers) this.#observed.set(w.name, w.address);
        this.#notify();
      },
      onChange: (c) => {
        if (c.kind === 'added') {
          this.#observed.set(c.name, c.address);
          if (this.#owns(c.name)) this.#log(`worker ${c.name} registered at ${c.address}`);
        } else if (c.kind === 'removed') {
          if (this.#observed.get(c.name) === c.address) this.#observed.delete(c.name);
          if (this.#owns(c.name) && !c.expected) this.#log(`the scheduler lost worker ${c.name} (${c.reason})`);
        }
        this.#notify();
      },
      onEnd: (error) => {
        if (this.#watch === sub) this.#watch = undefined;
        if (error && !this.#lifecycle.closing) this.#log(`stopped watching the workers: ${error.message}`);
        this.#notify();
      },
    });
    try {
      await sub.ready;
      this.#watch = sub;
    } catch (err) {
      sub.close();
      this.#log(`cannot watch the scheduler's workers (${toSkeinError(err).message}); counting started workers instead`);
    }
  }

  /** Runs `fn` after every earlier reconcile step: one loop, never two at once. */
  #enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #controlOf(): Promise<SchedulerControl> {
    if (!this.#control) {
      const address = this.schedulerAddress;
      this.#control = this.#backend.connect ? this.#backend.connect(address) : adminControl(address, this.#backend.security);
      this.#control.catch(() => {
        this.#control = undefined; // try again next time
      });
    }
    return this.#control;
  }

  /** Wants `n` workers: `ceil(n / workersPerHandle)` handles. */
  #scaleTo(n: number): Promise<void> {
    const jobs = Math.ceil(n / this.#k);
    return this.#enqueue(async () => {
      if (jobs > this.#wanted.size) {
        while (this.#wanted.size < jobs) this.#wanted.add(`${this.#opts.namePrefix}-${this.#counter++}`);
      } else if (jobs < this.#wanted.size) {
        for (const name of await this.#chooseToDrop(this.#wanted.size - jobs)) this.#wanted.delete(name);
      }
      await this.#reconcile();
    });
  }

  /** Stops these handles (or the handles of these workers: a handle's workers stop together). */
  #retire(names: string[]): Promise<void> {
    return this.#enqueue(async () => {
      for (const name of names) {
        const job = this.#jobOfName(name);
        if (job !== undefined) this.#wanted.delete(job);
      }
      await this.#reconcile();
    });
  }

  /**
   * Which `k` wanted workers to drop: not running yet first, the latest requests first (the oldest
   * request is the nearest to running: first in a batch queue), then idle ones with the least data,
   * newest first.
   */
  async #chooseToDrop(k: number): Promise<string[]> {
    const wanted = [...this.#wanted];
    const notRunning = wanted.filter((n) => !this.workers.has(n)).reverse();
    const running = wanted.filter((n) => this.workers.has(n)).reverse();
    let load = new Map<string, [number, number]>();
    try {
      const workers = await (await this.#controlOf()).workers();
      load = new Map(workers.map((w) => [w.name, [w.processing, w.managedBytes]]));
    } catch (err) {
      this.#log(`could not ask the scheduler which workers are idle: ${toSkeinError(err).message}`);
    }
    const cost = (job: string): [number, number] => {
      const c: [number, number] = [0, 0];
      for (const w of this.#workerNames(job)) {
        const [p, b] = load.get(w) ?? [0, 0];
        c[0] += p;
        c[1] += b;
      }
      return c;
    };
    running.sort((a, b) => cost(a)[0] - cost(b)[0] || cost(a)[1] - cost(b)[1]);
    return [...notRunning, ...running].slice(0, k);
  }

  /**
   * Makes the workers match the wanted ones: cancels unwanted starts, retires the unwanted running
   * workers, requests the missing ones. Never waits for a start: a worker that takes an hour to
   * start (a batch job in a queue) blocks no `scale`, `adapt` or `close`.
   */
  async #reconcile(): Promise<void> {
    for (const [name, s] of this.#starting) if (!this.#wanted.has(name)) s.abort.abort();
    const toStop = [...this.workers.keys()].filter((n) => !this.#wanted.has(n));
    if (toStop.length > 0) await this.#stopWorkers(toStop);
    if (this.#lifecycle.closing) return;
    for (const name of this.#wanted) if (!this.workers.has(name) && !this.#starting.has(name)) this.#launch(name);
    this.#notify();
  }

  /** Requests one worker from the backend and tracks the start until it runs, fails or is cancelled. */
  #launch(name: string): void {
    const abort = new AbortController();
    let reason = 'requested';
    this.#setJob(name, 'pending', reason);
    const report = (why: string) => {
      if (abort.signal.aborted || this.#jobs.get(name)?.state !== 'pending') return;
      reason = why;
      this.#setJob(name, 'pending', why);
    };
    const timeoutMs = this.#opts.workerStartTimeoutMs;
    const timer = Number.isFinite(timeoutMs)
      ? setTimeout(() => {
          const err = new WorkerStartTimeoutError(name, timeoutMs, reason);
          this.#wanted.delete(name);
          this.#lastStartError = err;
          this.#setJob(name, 'failed', err.message);
          this.#log(err.message);
          abort.abort();
          this.#notify();
        }, timeoutMs)
      : undefined;
    timer?.unref?.();
    let started: Promise<W>;
    try {
      started = Promise.resolve(this.#backend.startWorker(name, this.schedulerAddress, { signal: abort.signal, report, workerNames: this.#workerNames(name) }));
    } catch (err) {
      started = Promise.reject(err);
    }
    const settled = started.then(
      async (handle) => {
        clearTimeout(timer);
        this.#starting.delete(name);
        if (this.#lifecycle.closing || !this.#wanted.has(name) || abort.signal.aborted) {
          // Not wanted any more (scaled down or closing while it started): it must not linger.
          if (this.#jobs.get(name)?.state === 'pending') this.#setJob(name, 'finished', 'cancelled: no longer wanted');
          await handle.close().catch(() => undefined);
          this.#notify();
          return;
        }
        this.workers.set(name, handle);
        this.#setJob(name, 'running', '');
        this.#watchExit(name, handle);
        this.#log(`worker ${name} at ${handle.address}`);
        this.#notify();
      },
      (err: unknown) => {
        clearTimeout(timer);
        this.#starting.delete(name);
        if (!abort.signal.aborted && !this.#lifecycle.closing) {
          this.#wanted.delete(name);
          this.#lastStartError = err;
          this.#setJob(name, 'failed', toSkeinError(err).message);
          this.#log(`worker ${name} failed to start: ${toSkeinError(err).message}`);
        } else if (this.#jobs.get(name)?.state === 'pending') {
          this.#setJob(name, 'finished', 'cancelled: no longer wanted');
        }
        this.#notify();
      },
    );
    this.#starting.set(name, { abort, since: Date.now(), settled });
  }

  async #stopWorkers(names: string[]): Promise<void> {
    const handles = names.map((n) => this.workers.get(n)).filter((h): h is W => h !== undefined);
    try {
      const retired = await (await this.#controlOf()).retireWorkers(names.flatMap((n) => this.#workerNames(n)));
      this.#log(`retired ${retired.join(', ') || '(none)'}`);
    } catch (err) {
      this.#log(`could not retire ${names.join(', ')} gracefully (${toSkeinError(err).message}); stopping them`);
    }
    await Promise.allSettled(handles.map((h) => h.close()));
    for (const n of names) {
      if (this.workers.delete(n)) this.#setJob(n, 'finished', 'retired');
    }
  }

  /** Replaces a worker that crashes (non-zero exit or signal) while it is still wanted. */
  #watchExit(name: string, handle: W): void {
    void handle.exited.then((code) => {
      if (this.workers.get(name) !== handle) return;
      this.workers.delete(name);
      if (this.#lifecycle.closing) this.#setJob(name, 'finished', 'closed');
      else if (!this.#wanted.has(name)) this.#setJob(name, 'finished', 'retired');
      else this.#setJob(name, code === 0 ? 'finished' : 'failed', code === 0 ? 'exited (code 0)' : `exited unexpectedly (code ${code})`);
      this.#notify();
      if (this.#lifecycle.closing || !this.#wanted.has(name)) return;
      if (code === 0) {
        // Exit 0 is a deliberate leave (retired or closed through the scheduler): not replaced.
        this.#wanted.delete(name);
        this.#log(`worker ${name} left (exit 0); the cluster now wants ${this.#wanted.size}`);
        this.#notify();
        return;
      }
      const deaths = (this.#deaths.get(name) ?? 0) + 1;
      this.#deaths.set(name, deaths);
      if (deaths > MAX_REPLACEMENTS) {
        this.#wanted.delete(name);
        this.#log(`worker ${name} exited unexpectedly (code ${code}) for the ${deaths}th time; not replacing it again (see its logs)`);
        this.#notify();
        return;
      }
      this.#log(`worker ${name} exited unexpectedly (code ${code}); starting a new one`);
      this.#enqueue(() => this.#reconcile()).catch((err: unknown) => {
        this.#log(`could not replace worker ${name}: ${toSkeinError(err).message}`);
      });
    });
  }
}

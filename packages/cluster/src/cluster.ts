import { InvalidArgumentError, Lifecycle, SkeinError, toSkeinError, type LifecycleStatus } from '@skein/common';
import { compileAdaptiveOptions, decideAdaptive, type AdaptiveDecision, type AdaptiveOptions, type CompiledAdaptiveOptions } from './adaptive.js';
import { adminControl } from './control.js';
import type { ClusterBackend, SchedulerControl, SchedulerHandle, WorkerHandle } from './types.js';

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
}

interface CompiledClusterOptions {
  nWorkers: number;
  namePrefix: string;
  name: string;
}

function compileClusterOptions(o: ClusterOptions): CompiledClusterOptions {
  const nWorkers = o.nWorkers ?? 0;
  if (!Number.isInteger(nWorkers) || nWorkers < 0) throw new InvalidArgumentError(`nWorkers must be a whole number ≥ 0, got ${nWorkers}.`);
  return { nWorkers, namePrefix: o.namePrefix ?? 'worker', name: o.name ?? 'Cluster' };
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
  /** Running workers by name (registered with the scheduler). */
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

  constructor(backend: ClusterBackend<W, S>, options: ClusterOptions = {}) {
    this.#backend = backend;
    this.#opts = compileClusterOptions(options);
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
      await this.#scaleTo(this.#opts.nWorkers);
    } catch (err) {
      this.#lifecycle.status = 'failed';
      await this.close().catch(() => undefined);
      throw err;
    }
    this.#lifecycle.started();
    return this;
  }

  /** Where clients connect: `tcp://host:port`. */
  get schedulerAddress(): string {
    return this.#scheduler?.address ?? '';
  }

  /** The scheduler's handle (undefined before start). */
  protected get schedulerHandle(): S | undefined {
    return this.#scheduler;
  }

  /** The dashboard URL ('' while the scheduler serves none). */
  get dashboardLink(): string {
    return this.#scheduler?.dashboardLink ?? '';
  }

  get status(): LifecycleStatus {
    return this.#lifecycle.status;
  }

  /** How many workers the cluster wants now (running or about to start). */
  get requested(): number {
    return this.#wanted.size;
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
   * Starts or stops workers until `n` run (resolves when they have). Stopping retires workers
   * gracefully: idle ones holding the least data first, their unique results moved to peers.
   * Stops adaptive scaling, as the cluster's size is now fixed.
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
        requested: () => this.#wanted.size,
        owns: (name) => this.#wanted.has(name),
        control: () => this.#controlOf(),
        scaleTo: (n) => this.#scaleTo(n),
        retire: (names) => this.#retire(names),
        log: (m) => this.#log(m),
        closing: () => this.#lifecycle.closing,
      },
      opts,
    );
    return this.#adaptive;
  }

  /** Retires these workers (names) gracefully and stops their processes. */
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

  /** Runs `fn` after every earlier reconcile step: one loop, never two at once. */
  #enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  #controlOf(): Promise<SchedulerControl> {
    if (!this.#control) {
      const address = this.schedulerAddress;
      this.#control = this.#backend.connect ? this.#backend.connect(address) : adminControl(address);
      this.#control.catch(() => {
        this.#control = undefined; // try again next time
      });
    }
    return this.#control;
  }

  #scaleTo(n: number): Promise<void> {
    return this.#enqueue(async () => {
      if (n > this.#wanted.size) {
        while (this.#wanted.size < n) this.#wanted.add(`${this.#opts.namePrefix}-${this.#counter++}`);
      } else if (n < this.#wanted.size) {
        for (const name of await this.#chooseToDrop(this.#wanted.size - n)) this.#wanted.delete(name);
      }
      await this.#reconcile();
    });
  }

  #retire(names: string[]): Promise<void> {
    return this.#enqueue(async () => {
      for (const name of names) this.#wanted.delete(name);
      await this.#reconcile();
    });
  }

  /** Which `k` wanted workers to drop: not started yet first, then idle ones with the least data, newest first. */
  async #chooseToDrop(k: number): Promise<string[]> {
    const wanted = [...this.#wanted];
    const notRunning = wanted.filter((n) => !this.workers.has(n));
    const running = wanted.filter((n) => this.workers.has(n)).reverse();
    let load = new Map<string, [number, number]>();
    try {
      const workers = await (await this.#controlOf()).workers();
      load = new Map(workers.map((w) => [w.name, [w.processing, w.managedBytes]]));
    } catch (err) {
      this.#log(`could not ask the scheduler which workers are idle: ${toSkeinError(err).message}`);
    }
    const cost = (n: string): [number, number] => load.get(n) ?? [0, 0];
    running.sort((a, b) => cost(a)[0] - cost(b)[0] || cost(a)[1] - cost(b)[1]);
    return [...notRunning, ...running].slice(0, k);
  }

  /** Makes the running workers match the wanted ones: retire the unwanted, start the missing. */
  async #reconcile(): Promise<void> {
    const toStop = [...this.workers.keys()].filter((n) => !this.#wanted.has(n));
    if (toStop.length > 0) await this.#stopWorkers(toStop);
    if (this.#lifecycle.closing) return;
    const toStart = [...this.#wanted].filter((n) => !this.workers.has(n));
    if (toStart.length === 0) return;
    const address = this.schedulerAddress;
    const results = await Promise.allSettled(toStart.map((name) => this.#backend.startWorker(name, address)));
    const errors: unknown[] = [];
    results.forEach((r, i) => {
      const name = toStart[i]!;
      if (r.status === 'fulfilled') {
        this.workers.set(name, r.value);
        this.#watch(name, r.value);
        this.#log(`worker ${name} at ${r.value.address}`);
      } else {
        this.#wanted.delete(name);
        errors.push(r.reason);
        this.#log(`worker ${name} failed to start: ${toSkeinError(r.reason).message}`);
      }
    });
    if (errors.length > 0) throw errors[0];
  }

  async #stopWorkers(names: string[]): Promise<void> {
    const handles = names.map((n) => this.workers.get(n)).filter((h): h is W => h !== undefined);
    try {
      const retired = await (await this.#controlOf()).retireWorkers(names);
      this.#log(`retired ${retired.join(', ') || '(none)'}`);
    } catch (err) {
      this.#log(`could not retire ${names.join(', ')} gracefully (${toSkeinError(err).message}); stopping them`);
    }
    await Promise.allSettled(handles.map((h) => h.close()));
    for (const n of names) this.workers.delete(n);
  }

  /** Replaces a worker that crashes (non-zero exit or signal) while it is still wanted. */
  #watch(name: string, handle: W): void {
    void handle.exited.then((code) => {
      if (this.workers.get(name) !== handle) return;
      this.workers.delete(name);
      if (this.#lifecycle.closing || !this.#wanted.has(name)) return;
      if (code === 0) {
        // Exit 0 is a deliberate leave (retired or closed through the scheduler): not replaced.
        this.#wanted.delete(name);
        this.#log(`worker ${name} left (exit 0); the cluster now wants ${this.#wanted.size}`);
        return;
      }
      const deaths = (this.#deaths.get(name) ?? 0) + 1;
      this.#deaths.set(name, deaths);
      if (deaths > MAX_REPLACEMENTS) {
        this.#wanted.delete(name);
        this.#log(`worker ${name} exited unexpectedly (code ${code}) for the ${deaths}th time; not replacing it again (see its logs)`);
        return;
      }
      this.#log(`worker ${name} exited unexpectedly (code ${code}); starting a new one`);
      this.#enqueue(() => this.#reconcile()).catch((err: unknown) => {
        this.#log(`could not replace worker ${name}: ${toSkeinError(err).message}`);
      });
    });
  }
}

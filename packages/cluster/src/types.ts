import type { Security } from '@skein/common';
import type { WorkerWatchHandlers, WorkerWatchSubscription } from './admin.js';

/** One process a deployer started: the scheduler or one worker (with its nanny). */
export interface ProcessHandle {
  /** Its name: `scheduler`, or the worker name the base chose (unique in the cluster). */
  readonly name: string;
  /** Where it listens: `tcp://host:port`. */
  readonly address: string;
  /** Stops the process (gracefully first, then by force). Idempotent. */
  close(): Promise<void>;
  /** Its recent output lines (stdout and stderr), oldest first. */
  logs(): string[];
  /** Resolves when the process has stopped, with its exit code (null when killed by a signal). */
  readonly exited: Promise<number | null>;
}

/** The scheduler a deployer started. */
export interface SchedulerHandle extends ProcessHandle {
  /** The dashboard URL, '' when the scheduler serves none. */
  readonly dashboardLink?: string;
}

/** One worker a deployer started: resolved once it has registered with the scheduler. */
export type WorkerHandle = ProcessHandle;

/**
 * What the base asks of the scheduler: a few unary calls and the worker watch. The default
 * implementation is a `SchedulerAdmin` (no client session); tests pass a fake.
 */
export interface SchedulerControl {
  /** Retires these workers (names or addresses): their unique results move to peers, then they close. */
  retireWorkers(workers: string[]): Promise<string[]>;
  /** The scheduler's recommendation for adaptive scaling. */
  adaptiveTarget(targetDurationMs: number): Promise<{ target: number; workersToClose: string[]; current: number; reason: string }>;
  /** The registered workers. */
  workers(): Promise<Array<{ name: string; address: string; processing: number; managedBytes: number }>>;
  /** Follows the workers as they register and leave (WatchWorkers); optional for fakes. */
  watchWorkers?(handlers: WorkerWatchHandlers): WorkerWatchSubscription;
  close(): Promise<void>;
}

/**
 * What a deployer implements (Dask's SpecCluster worker/scheduler classes, as one interface):
 * start one scheduler, start one worker. The base owns everything else: how many workers run,
 * replacing dead ones, retiring workers gracefully, adaptive scaling, shutdown order.
 */
export interface ClusterBackend<W extends WorkerHandle = WorkerHandle, S extends SchedulerHandle = SchedulerHandle> {
  /** Starts the scheduler; resolves once it accepts connections. */
  startScheduler(): Promise<S>;
  /**
   * Starts one worker named `name` for the scheduler at `schedulerAddress`; resolves once it runs
   * (has registered). The base never waits for it: it may take as long as the resource manager
   * needs. `signal` aborts when the worker is no longer wanted or the cluster closes: the backend
   * then cancels the start (kills the process, cancels the job) and rejects soon; `close()` waits
   * for that.
   */
  startWorker(name: string, schedulerAddress: string, options?: StartWorkerOptions): Promise<W>;
  /**
   * How many workers one `startWorker` starts (default 1): a batch job with `processes > 1`. The
   * base then counts workers, not handles: `scale(n)` requests `ceil(n / workersPerHandle)`
   * handles, named `<prefix>-<n>`, each carrying the workers `<handle name>-0` ... (in
   * `StartWorkerOptions.workerNames`: the backend must register them under these names). Its
   * workers are retired and stopped together.
   */
  readonly workersPerHandle?: number;
  /** How the base talks to the scheduler (default: a `SchedulerAdmin` for `schedulerAddress`, with `security`). */
  connect?(schedulerAddress: string): Promise<SchedulerControl>;
  /** The cluster's credentials (TLS, token): the base's admin channel and `Client.connect(cluster)` use them. */
  readonly security?: Security;
  /** Releases what the backend holds besides the processes (SSH connections ...), after they stopped. */
  close?(): Promise<void>;
}

/** What the base passes to `startWorker`. */
export interface StartWorkerOptions {
  /** Aborts when the worker is no longer wanted, its start timed out, or the cluster closes. */
  signal: AbortSignal;
  /**
   * Tells the base why the worker is not running yet, in the resource manager's words (Slurm's
   * pending reason, a pod's waiting reason, "connecting over SSH"): shown by `cluster.jobs()` and
   * in the error of a start that times out.
   */
  report(reason: string): void;
  /**
   * The names the handle's workers must register under: `[name]` when the backend starts one
   * worker per handle, else `workersPerHandle` names (`<name>-0`, `<name>-1`, ...).
   */
  workerNames: string[];
}

/** Where one requested worker is: its start asked of the backend, then running, then over. */
export type WorkerJobState = 'pending' | 'running' | 'finished' | 'failed';

export interface WorkerJobStatus {
  state: WorkerJobState;
  /** The backend's last word on it (pending), or why it ended (finished, failed); '' when running. */
  reason: string;
  /** When it entered this state (ms since the epoch). */
  sinceMs: number;
}

/** The cluster's handle on one requested worker, from the moment it is requested (`cluster.jobs()`). */
export interface WorkerJob {
  readonly name: string;
  /** The workers it carries, as they register: `[name]`, or `<name>-0`... when the backend's `workersPerHandle` is more than 1. */
  readonly workerNames: readonly string[];
  status(): WorkerJobStatus;
  /** Its output so far ([] while it has not started). */
  logs(): Promise<string[]>;
  /** Stops it: cancels a pending start, retires a running worker. The cluster then wants one worker fewer. */
  cancel(): Promise<void>;
}

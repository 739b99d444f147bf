import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Cluster, workerFlags, type ClusterBackend, type SchedulerHandle, type StartWorkerOptions, type WorkerLaunchSpec } from '@skein/cluster';
import { Scheduler, type SchedulerOptions } from '@skein/core-scheduler';
import { Worker } from '@skein/core-worker';
import { workerCommand } from '@skein/core-worker/command';
import { packagesRoot } from '@skein/core-worker/environment';
import { Nanny } from '@skein/nanny';
import {
  InvalidArgumentError,
  LOCAL_CLIENT_SESSION,
  Security,
  SkeinError,
  cpuCount,
  createLogger,
  parseMemoryLimit,
  parseReadyLine,
  skeinDefaults,
  toSkeinError,
  withoutSecurityEnv,
  childCredentials,
  type LogLevel,
  type PrivateFiles,
} from '@skein/common';

export interface LocalClusterOptions {
  /** Number of workers (default: one per core). */
  nWorkers?: number;
  /** Threads per worker (default 1). */
  threadsPerWorker?: number;
  /** Run workers as child processes (default true) or inside this process. */
  processes?: boolean;
  /** Supervise each worker process with a nanny (default true with processes). */
  nanny?: boolean;
  /** Memory limit per worker: 'auto' (machine memory / nWorkers), a fraction, or a size like '2GB'. */
  memoryLimit?: string | number;
  /** Host to bind to (default 127.0.0.1). */
  host?: string;
  /** Scheduler port (default 0: any free port). */
  schedulerPort?: number;
  /** Modules of registered functions every worker loads. */
  modules?: string[];
  /**
   * Preload modules (Dask's --preload) of the scheduler, of every worker, and of every nanny: each
   * module's exported setup(ctx) runs at start (a module that cannot be loaded fails it; a throw in setup is logged), teardown(ctx) at close.
   */
  preload?: { scheduler?: string[]; worker?: string[]; nanny?: string[] };
  /** Resources every worker offers, e.g. { GPU: 1 }. */
  resources?: Record<string, number>;
  /** Extra environment variables for worker processes. */
  env?: Record<string, string>;
  /** How long to wait for workers to register (ms, default 60 s). */
  startTimeoutMs?: number;
  /**
   * Give up on a worker not running this long after it was requested (ms; default: none, a start
   * then fails after `startTimeoutMs`): its start is cancelled and `waitForWorkers` rejects with a
   * `WorkerStartTimeoutError` carrying the last thing the worker printed.
   */
  workerStartTimeoutMs?: number;
  /** Scheduler's worker saturation (tasks per thread before root tasks queue). */
  workerSaturation?: number;
  /** Scheduler's no-workers timeout (ms; see SchedulerOptions.noWorkersTimeoutMs). Default: none. */
  noWorkersTimeoutMs?: number | null;
  /**
   * Check the scheduler's and every worker's state invariants after every event (slow; for tests).
   * Default SKEIN_VALIDATE=1.
   */
  validate?: boolean;
  /** The scheduler's input limits (see SchedulerOptions): message size, key length, keys per update. */
  limits?: Pick<SchedulerOptions, 'maxMessageBytes' | 'maxKeyLength' | 'maxKeysPerUpdate'>;
  /**
   * TLS and/or a token on every link: a Security, or `true` for `Security.temporary()` (a
   * throwaway CA and a certificate per role, in memory). Worker processes get their credentials
   * as files in a private temporary directory (0700, files 0600) removed when they stop; the
   * scheduler's addresses are then `tls://` and its dashboard HTTPS. `Client.connect(cluster)`
   * uses `cluster.security`. Default: none (plaintext, fine on loopback).
   */
  security?: Security | boolean;
}

interface CompiledLocalClusterOptions {
  nWorkers: number;
  threadsPerWorker: number;
  processes: boolean;
  nanny: boolean;
  memoryLimit: number;
  host: string;
  schedulerPort: number;
  modules: string[];
  preload: { scheduler: string[]; worker: string[]; nanny: string[] };
  resources: Record<string, number>;
  /** Added to the environment of worker processes: `env` over a default SKEIN_LOG_LEVEL. */
  workerEnv: Record<string, string>;
  startTimeoutMs: number;
  workerStartTimeoutMs: number | undefined;
  workerSaturation: number | undefined;
  noWorkersTimeoutMs: number | null | undefined;
  validate: boolean;
  limits: Pick<SchedulerOptions, 'maxMessageBytes' | 'maxKeyLength' | 'maxKeysPerUpdate'>;
  security: Security;
}

function compile(o: LocalClusterOptions): CompiledLocalClusterOptions {
  const nWorkers = o.nWorkers ?? cpuCount();
  if (!Number.isInteger(nWorkers) || nWorkers < 0) {
    throw new InvalidArgumentError(`LocalCluster nWorkers must be a whole number ≥ 0, got ${nWorkers}.`);
  }
  const threadsPerWorker = o.threadsPerWorker ?? 1;
  if (!Number.isInteger(threadsPerWorker) || threadsPerWorker < 1) {
    throw new InvalidArgumentError(`LocalCluster threadsPerWorker must be a whole number ≥ 1, got ${threadsPerWorker}.`);
  }
  return {
    nWorkers,
    threadsPerWorker,
    processes: o.processes ?? true,
    nanny: (o.processes ?? true) && (o.nanny ?? true),
    memoryLimit: parseMemoryLimit(o.memoryLimit ?? 'auto', Math.max(1, nWorkers)),
    host: o.host ?? '127.0.0.1',
    schedulerPort: o.schedulerPort ?? 0,
    modules: o.modules ?? [],
    preload: { scheduler: o.preload?.scheduler ?? [], worker: o.preload?.worker ?? [], nanny: o.preload?.nanny ?? [] },
    resources: o.resources ?? {},
    workerEnv: { SKEIN_LOG_LEVEL: process.env['SKEIN_LOG_LEVEL'] ?? 'warn', ...o.env },
    startTimeoutMs: o.startTimeoutMs ?? 60_000,
    workerStartTimeoutMs: o.workerStartTimeoutMs,
    workerSaturation: o.workerSaturation,
    noWorkersTimeoutMs: o.noWorkersTimeoutMs,
    validate: o.validate ?? skeinDefaults().validate,
    limits: { ...o.limits },
    security: o.security === true ? Security.temporary() : o.security ? o.security : Security.insecure(),
  };
}

/** One worker of a LocalCluster: a worker process (with or without a nanny) or an in-process Worker. */
export interface LocalWorkerHandle {
  name: string;
  /** The worker's address; a worker restarted by its nanny gets a new one. */
  address: string;
  /** The worker's process id (this process's for in-process workers); new after a nanny restart. */
  pid: number;
  close(): Promise<void>;
  /** Its recent log lines (stderr of the worker process and its nanny's messages), oldest first. */
  logs(): string[];
  /** Resolves when the worker has stopped for good, with its exit code (0 for in-process workers). */
  readonly exited: Promise<number | null>;
}

/** The last lines of a worker's output. */
class LogTail {
  private readonly lines: string[] = [];
  constructor(private readonly max = 200) {}

  readonly push = (line: string): void => {
    this.lines.push(line);
    if (this.lines.length > this.max) this.lines.shift();
  };

  last(n = this.max): string[] {
    return this.lines.slice(-n);
  }
}

/** The launch spec of a LocalCluster worker process (its flags come from `workerFlags`, as every deployer's do). */
function workerSpec(name: string, schedulerAddress: string, o: CompiledLocalClusterOptions): WorkerLaunchSpec {
  return {
    scheduler: schedulerAddress,
    name,
    host: o.host,
    port: 0,
    nthreads: o.threadsPerWorker,
    memoryLimit: o.memoryLimit,
    resources: o.resources,
    modules: o.modules,
    preload: o.preload.worker,
    nanny: o.nanny,
    env: o.workerEnv,
    validate: o.validate,
  };
}

/**
 * A worker process supervised by a Nanny object in this process, as in Dask's LocalCluster: no
 * nanny process per worker, so a worker starts as fast as a bare one and a small machine runs one
 * Node runtime less per worker. The nanny samples the worker's memory, kills it past the limit,
 * restarts it after a crash, and serves NannyService so the scheduler can restart or kill it. The
 * handle lives as long as the nanny: it exits when the nanny stops for good (the worker retired,
 * lost the scheduler, or was killed through the scheduler).
 */
class NannyWorker implements LocalWorkerHandle {
  readonly exited: Promise<number | null>;

  private constructor(
    readonly name: string,
    private readonly nanny: Nanny,
    private readonly tail: LogTail,
  ) {
    this.exited = nanny.done.then((stop) => stop.code);
  }

  /** Starts the nanny and its worker; resolves once the worker has registered. */
  static async start(name: string, schedulerAddress: string, o: CompiledLocalClusterOptions, options?: StartWorkerOptions): Promise<NannyWorker> {
    const tail = new LogTail();
    options?.report('starting the worker process under a nanny, waiting for it to register');
    try {
      const nanny = await Nanny.start({
        scheduler: schedulerAddress,
        // The nanny passes the memory limit itself (and watches it).
        workerArgs: workerFlags(workerSpec(name, schedulerAddress, o), false),
        memoryLimit: o.memoryLimit,
        host: o.host,
        port: 0,
        startTimeoutMs: o.startTimeoutMs,
        env: o.workerEnv,
        security: o.security,
        preload: o.preload.nanny,
        onWorkerStderr: tail.push,
        // A start the cluster no longer wants (scaled down, timed out, closing) kills the worker at once.
        ...(options ? { signal: options.signal } : {}),
        // The nanny's messages (memory kills, restarts) belong to this worker's logs, not to the
        // user's terminal: the cluster's process may be a notebook or a service of its own.
        logger: createLogger(`nanny ${name}`, o.workerEnv['SKEIN_LOG_LEVEL'] as LogLevel, tail.push),
      });
      return new NannyWorker(name, nanny, tail);
    } catch (err) {
      const e = toSkeinError(err);
      throw new SkeinError(e.code, `Worker ${name} did not start: ${e.message}`, { cause: err });
    }
  }

  get address(): string {
    return this.nanny.workerAddress;
  }

  get pid(): number {
    return this.nanny.workerPid;
  }

  logs(): string[] {
    return this.tail.last();
  }

  close(): Promise<void> {
    return this.nanny.close();
  }
}

/** A worker process without a nanny (`nanny: false`): nothing restarts it. */
class ProcessWorker implements LocalWorkerHandle {
  address = '';
  readonly exited: Promise<number | null>;
  private readonly tail = new LogTail();
  constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    report?: (reason: string) => void,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    createInterface({ input: child.stderr! }).on('line', (line) => {
      this.tail.push(line);
      // Until it registers, its last words are why it is not running yet.
      if (!this.address && line.trim()) report?.(`worker process ${this.pid} not registered yet; it last printed: ${line.trim()}`);
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  logs(): string[] {
    return this.tail.last();
  }

  waitRegistered(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new SkeinError('deadline_exceeded', `Worker ${this.name} did not register within ${timeoutMs} ms. Its log:\n${this.tail.last(20).join('\n')}`));
      }, timeoutMs);
      const lines = createInterface({ input: this.child.stdout! });
      lines.on('line', (line) => {
        // The worker's JSON ready line (--ready-json), never its banners for people.
        const ready = parseReadyLine(line);
        if (ready?.role === 'worker' && !this.address) {
          this.address = ready.address;
          clearTimeout(timer);
          resolve();
        }
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new SkeinError('unavailable', `Worker ${this.name} exited with code ${code} before registering. Its log:\n${this.tail.last(20).join('\n')}`));
      });
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    this.child.kill(signal);
  }
}

class InProcessWorker implements LocalWorkerHandle {
  readonly exited: Promise<number | null>;
  private resolveExit!: (code: number) => void;
  constructor(
    readonly name: string,
    readonly worker: Worker,
  ) {
    this.exited = new Promise((r) => (this.resolveExit = r));
  }
  get address(): string {
    return this.worker.address;
  }
  get pid(): number {
    return process.pid;
  }
  logs(): string[] {
    return [];
  }
  async close(): Promise<void> {
    await this.worker.close();
    this.resolveExit(0);
  }
}

/** The scheduler of a LocalCluster, in this process. */
class InProcessScheduler implements SchedulerHandle {
  readonly name = 'scheduler';
  readonly exited: Promise<number | null>;
  private resolveExit!: (code: number) => void;
  constructor(readonly scheduler: Scheduler) {
    this.exited = new Promise((r) => (this.resolveExit = r));
  }
  get address(): string {
    return this.scheduler.address;
  }
  get dashboardLink(): string {
    return this.scheduler.dashboardLink;
  }
  logs(): string[] {
    return [];
  }
  async close(): Promise<void> {
    await this.scheduler.close();
    this.resolveExit(0);
  }
}

/**
 * Starts LocalCluster's scheduler in this process and its workers as processes, each supervised by a
 * nanny in this process (or without one), or as Worker objects in this process.
 */
class LocalBackend implements ClusterBackend<LocalWorkerHandle, InProcessScheduler> {
  scheduler: Scheduler | undefined;
  /** The worker certificate as files, for worker processes without a nanny (written on first use). */
  #credentials: { args: string[]; files?: PrivateFiles } | undefined;
  constructor(private readonly o: CompiledLocalClusterOptions) {}

  get security(): Security {
    return this.o.security;
  }

  /**
   * The worker processes have stopped: their credential files go, and so does the cluster's package
   * directory on this host (NpmInstall, uploads), which only this cluster's workers used.
   */
  async close(): Promise<void> {
    this.removeCredentials();
    if (this.scheduler) rmSync(packagesRoot(this.scheduler.address, undefined, { ...process.env, ...this.o.workerEnv }), { recursive: true, force: true });
  }

  /** The credential flags of a worker process without a nanny (a nanny writes its worker's itself). */
  credentialArgs(): string[] {
    this.#credentials ??= childCredentials(this.o.security, 'worker', 'skein-local-');
    return this.#credentials.args;
  }

  /** Removes the credential files (the cluster has closed: no worker process needs them any more). */
  removeCredentials(): void {
    this.#credentials?.files?.remove();
  }

  async startScheduler(): Promise<InProcessScheduler> {
    this.scheduler = await Scheduler.start({
      host: this.o.host,
      port: this.o.schedulerPort,
      workerSaturation: this.o.workerSaturation,
      noWorkersTimeoutMs: this.o.noWorkersTimeoutMs,
      validate: this.o.validate,
      ...this.o.limits,
      security: this.o.security,
      preload: this.o.preload.scheduler,
    });
    return new InProcessScheduler(this.scheduler);
  }

  async startWorker(name: string, schedulerAddress: string, options?: StartWorkerOptions): Promise<LocalWorkerHandle> {
    const o = this.o;
    if (o.processes && o.nanny) return NannyWorker.start(name, schedulerAddress, o, options);
    if (o.processes) {
      // skein-worker itself (its bundle), not `skein worker`: one process, no dispatch.
      const spec = workerSpec(name, schedulerAddress, o);
      const args = [workerCommand(), schedulerAddress, ...workerFlags(spec), ...this.credentialArgs()];
      // Its credentials are the cluster's (flags), not whatever SKEIN_TLS_* / SKEIN_AUTH_* this process has.
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...withoutSecurityEnv(process.env), ...spec.env } });
      const pw = new ProcessWorker(name, child, options?.report);
      options?.report(`worker process ${pw.pid} started, waiting for it to register`);
      // A start the cluster no longer wants (scaled down, closing) is killed: it fails at once.
      options?.signal.addEventListener('abort', () => pw.kill(), { once: true });
      try {
        await pw.waitRegistered(o.startTimeoutMs);
      } catch (err) {
        pw.kill();
        throw err;
      }
      return pw;
    }
    const worker = await Worker.start({
      scheduler: schedulerAddress,
      host: o.host,
      port: 0,
      nthreads: o.threadsPerWorker,
      memoryLimit: o.memoryLimit,
      name,
      modules: o.modules,
      preload: o.preload.worker,
      resources: o.resources,
      validate: o.validate,
      security: o.security,
    });
    return new InProcessWorker(name, worker);
  }
}

/**
 * A scheduler in this process and workers on this machine: one worker process per core with one
 * thread each by default, as in Dask. Built on the `Cluster` base of `@skein/cluster`, so it
 * scales (`scale(n)`) and adapts to the load (`adapt({ minimum, maximum })`).
 *
 * @example
 * await using cluster = await LocalCluster.start();
 * await using client = await Client.connect(cluster);
 * cluster.adapt({ minimum: 1, maximum: 8 });
 */
export class LocalCluster extends Cluster<LocalWorkerHandle, InProcessScheduler> {
  readonly options: CompiledLocalClusterOptions;
  readonly #backend: LocalBackend;

  private constructor(options: CompiledLocalClusterOptions, backend: LocalBackend) {
    super(backend, {
      nWorkers: options.nWorkers,
      namePrefix: 'local',
      name: 'LocalCluster',
      ...(options.workerStartTimeoutMs !== undefined ? { workerStartTimeoutMs: options.workerStartTimeoutMs } : {}),
    });
    this.options = options;
    this.#backend = backend;
  }

  static async start(options: LocalClusterOptions = {}): Promise<LocalCluster> {
    const opts = compile(options);
    return new LocalCluster(opts, new LocalBackend(opts)).start();
  }

  /** The scheduler, running in this process. */
  get scheduler(): Scheduler {
    const s = this.#backend.scheduler;
    if (!s) throw new SkeinError('failed_precondition', 'The LocalCluster has no scheduler yet; use LocalCluster.start().');
    return s;
  }

  /** The dashboard URL ('' while the scheduler serves none). */
  override get dashboardLink(): string {
    return this.schedulerHandle?.dashboardLink ?? '';
  }

  /**
   * For Client.connect(cluster): a client session with the scheduler in this process, without a
   * socket (ClientOptions.inProcess). Clients in other processes connect to `schedulerAddress`.
   */
  [LOCAL_CLIENT_SESSION](): ReturnType<Scheduler['openLocalClientSession']> {
    return this.scheduler.openLocalClientSession();
  }
}

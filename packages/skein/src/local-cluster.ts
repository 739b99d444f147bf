import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Cluster, type ClusterBackend, type SchedulerHandle } from '@skein/cluster';
import { Scheduler } from '@skein/core-scheduler';
import { Worker } from '@skein/core-worker';
import { InvalidArgumentError, SkeinError, cpuCount, packageBin, parseMemoryLimit } from '@skein/common';

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
  /** Resources every worker offers, e.g. { GPU: 1 }. */
  resources?: Record<string, number>;
  /** Extra environment variables for worker processes. */
  env?: Record<string, string>;
  /** How long to wait for workers to register (ms, default 60 s). */
  startTimeoutMs?: number;
  /** Scheduler's worker saturation (tasks per thread before root tasks queue). */
  workerSaturation?: number;
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
  resources: Record<string, number>;
  env: Record<string, string>;
  startTimeoutMs: number;
  workerSaturation: number | undefined;
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
    resources: o.resources ?? {},
    env: o.env ?? {},
    startTimeoutMs: o.startTimeoutMs ?? 60_000,
    workerSaturation: o.workerSaturation,
  };
}

/** One worker of a LocalCluster: a child process or an in-process Worker. */
export interface LocalWorkerHandle {
  name: string;
  address: string;
  pid: number;
  close(): Promise<void>;
  /** Its recent log lines (stderr of a worker process), oldest first. */
  logs(): string[];
  /** Resolves when the worker has stopped, with its exit code (0 for in-process workers). */
  readonly exited: Promise<number | null>;
}

function binPath(pkgName: string, binName: string): string {
  return packageBin(pkgName, binName, import.meta.url);
}

class ProcessWorker implements LocalWorkerHandle {
  address = '';
  readonly exited: Promise<number | null>;
  private readonly lines: string[] = [];
  constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    const keep = (line: string) => {
      this.lines.push(line);
      if (this.lines.length > 200) this.lines.shift();
    };
    createInterface({ input: child.stderr! }).on('line', keep);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  logs(): string[] {
    return this.lines.slice();
  }

  waitRegistered(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new SkeinError('deadline_exceeded', `Worker ${this.name} did not register within ${timeoutMs} ms. Its log:\n${this.lines.slice(-20).join('\n')}`));
      }, timeoutMs);
      const lines = createInterface({ input: this.child.stdout! });
      lines.on('line', (line) => {
        const start = /^Start worker at:\s+(\S+)/.exec(line);
        if (start) this.address = start[1]!;
        if (/^Registered to:/.test(line)) {
          clearTimeout(timer);
          resolve();
        }
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new SkeinError('unavailable', `Worker ${this.name} exited with code ${code} before registering. Its log:\n${this.lines.slice(-20).join('\n')}`));
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

/** Starts LocalCluster's scheduler in this process and its workers as processes (or in this process). */
class LocalBackend implements ClusterBackend<LocalWorkerHandle, InProcessScheduler> {
  scheduler: Scheduler | undefined;
  constructor(private readonly o: CompiledLocalClusterOptions) {}

  async startScheduler(): Promise<InProcessScheduler> {
    this.scheduler = await Scheduler.start({
      host: this.o.host,
      port: this.o.schedulerPort,
      workerSaturation: this.o.workerSaturation,
    });
    return new InProcessScheduler(this.scheduler);
  }

  async startWorker(name: string, schedulerAddress: string): Promise<LocalWorkerHandle> {
    const o = this.o;
    if (o.processes) {
      const args = [
        o.nanny ? binPath('@skein/nanny', 'skein-nanny') : binPath('@skein/core-worker', 'skein-worker'),
        schedulerAddress,
        '--host', o.host,
        '--port', '0',
        '--nthreads', String(o.threadsPerWorker),
        '--memory-limit', String(o.memoryLimit),
        '--name', name,
      ];
      for (const m of o.modules) args.push('--module', m);
      const res = Object.entries(o.resources).map(([k, v]) => `${k}=${v}`).join(',');
      if (res) args.push('--resources', res);
      const child = spawn(process.execPath, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, SKEIN_LOG_LEVEL: process.env['SKEIN_LOG_LEVEL'] ?? 'warn', ...o.env },
      });
      const pw = new ProcessWorker(name, child);
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
      resources: o.resources,
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
    super(backend, { nWorkers: options.nWorkers, namePrefix: 'local', name: 'LocalCluster' });
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
}

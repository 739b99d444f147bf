import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { Scheduler } from '@skein/core-scheduler';
import { Worker } from '@skein/core-worker';
import { InvalidArgumentError, Lifecycle, SkeinError, cpuCount, parseMemoryLimit, type LifecycleStatus } from '@skein/common';

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
  /** Resolves when the worker has stopped, with its exit code (0 for in-process workers). */
  readonly exited: Promise<number | null>;
}

function binPath(pkgName: string, binName: string): string {
  const require = createRequire(import.meta.url);
  const pkgPath = require.resolve(`${pkgName}/package.json`);
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { bin?: Record<string, string> };
  const bin = pkg.bin?.[binName];
  if (!bin) throw new SkeinError('not_found', `${pkgName} has no ${binName} command; reinstall it.`);
  return join(dirname(pkgPath), bin);
}

class ProcessWorker implements LocalWorkerHandle {
  address = '';
  readonly exited: Promise<number | null>;
  private readonly logs: string[] = [];
  constructor(
    readonly name: string,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    const keep = (line: string) => {
      this.logs.push(line);
      if (this.logs.length > 200) this.logs.shift();
    };
    createInterface({ input: child.stderr! }).on('line', keep);
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  recentLogs(): string[] {
    return this.logs.slice();
  }

  waitRegistered(timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new SkeinError('deadline_exceeded', `Worker ${this.name} did not register within ${timeoutMs} ms. Its log:\n${this.logs.slice(-20).join('\n')}`));
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
        reject(new SkeinError('unavailable', `Worker ${this.name} exited with code ${code} before registering. Its log:\n${this.logs.slice(-20).join('\n')}`));
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
  async close(): Promise<void> {
    await this.worker.close();
    this.resolveExit(0);
  }
}

/**
 * A scheduler in this process and workers on this machine: one worker process per core with one
 * thread each by default, as in Dask.
 *
 * @example
 * await using cluster = await LocalCluster.start();
 * await using client = await Client.connect(cluster);
 */
export class LocalCluster {
  readonly workers = new Map<string, LocalWorkerHandle>();
  private readonly lifecycle = new Lifecycle('LocalCluster');
  private counter = 0;

  private constructor(
    readonly scheduler: Scheduler,
    readonly options: CompiledLocalClusterOptions,
  ) {}

  static async start(options: LocalClusterOptions = {}): Promise<LocalCluster> {
    const opts = compile(options);
    const scheduler = await Scheduler.start({
      host: opts.host,
      port: opts.schedulerPort,
      workerSaturation: opts.workerSaturation,
    });
    const cluster = new LocalCluster(scheduler, opts);
    cluster.lifecycle.beginStart();
    try {
      await cluster.scale(opts.nWorkers);
    } catch (err) {
      await cluster.close().catch(() => undefined);
      throw err;
    }
    cluster.lifecycle.started();
    return cluster;
  }

  /** Where clients connect: `tcp://127.0.0.1:PORT`. */
  get schedulerAddress(): string {
    return this.scheduler.address;
  }

  /** The dashboard URL ('' while the cluster has none). */
  get dashboardLink(): string {
    return '';
  }

  get status(): LifecycleStatus {
    return this.lifecycle.status;
  }

  /** Starts or stops workers until `n` run. Stopping retires workers gracefully. */
  async scale(n: number): Promise<void> {
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`scale(n) needs a whole number ≥ 0, got ${n}.`);
    const current = [...this.workers.values()];
    if (n > current.length) {
      const started = Array.from({ length: n - current.length }, () => this.startWorker());
      await Promise.all(started);
    } else if (n < current.length) {
      const victims = current.slice(n);
      await this.scheduler.retire(victims.map((w) => w.address), 0);
      await Promise.all(victims.map((w) => w.close()));
      for (const w of victims) this.workers.delete(w.name);
    }
  }

  private async startWorker(): Promise<LocalWorkerHandle> {
    const name = `local-${this.counter++}`;
    const o = this.options;
    let handle: LocalWorkerHandle;
    if (o.processes) {
      const args = [
        o.nanny ? binPath('@skein/nanny', 'skein-nanny') : binPath('@skein/core-worker', 'skein-worker'),
        this.scheduler.address,
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
      this.workers.set(name, pw);
      try {
        await pw.waitRegistered(o.startTimeoutMs);
      } catch (err) {
        pw.kill();
        this.workers.delete(name);
        throw err;
      }
      handle = pw;
    } else {
      const worker = await Worker.start({
        scheduler: this.scheduler.address,
        host: o.host,
        port: 0,
        nthreads: o.threadsPerWorker,
        memoryLimit: o.memoryLimit,
        name,
        modules: o.modules,
        resources: o.resources,
      });
      handle = new InProcessWorker(name, worker);
      this.workers.set(name, handle);
    }
    return handle;
  }

  close(): Promise<void> {
    return this.lifecycle.close([
      ['close scheduler', () => this.scheduler.close()],
      ['stop workers', () => Promise.all([...this.workers.values()].map((w) => w.close()))],
    ]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

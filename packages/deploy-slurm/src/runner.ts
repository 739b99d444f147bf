import { spawn } from 'node:child_process';
import { existsSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { SchedulerAdmin, schedulerLaunch, workerLaunch } from '@skein/cluster';
import { InvalidArgumentError, SkeinError, TimeoutError, waitForSchedulerFile, type Security } from '@skein/common';
import { writeLaunchFiles } from './job-queue.js';
import { defaultSkeinCommand, shellQuote } from './process.js';

/** What one task of the allocation does: rank 0 the scheduler, rank 1 the user's code, the rest workers. */
export type RunnerRole = 'scheduler' | 'client' | 'worker';

export interface SlurmRunnerOptions {
  /**
   * The rendezvous file on a file system every task shares; `{jobId}` is replaced by the job id
   * (default `scheduler-{jobId}.json` in the current directory).
   */
  schedulerFile?: string;
  /** How Skein is started in the tasks (default: the `skein` package next to this one, else `skein`). */
  skeinCommand?: string;
  schedulerOptions?: { port?: number; interface?: string; dashboardAddress?: string | null; extraArgs?: string[] };
  workerOptions?: {
    /** Task threads per worker (default: SLURM_CPUS_PER_TASK, else 1). */
    nthreads?: number;
    memoryLimit?: string;
    interface?: string;
    modules?: string[];
    resources?: Record<string, number>;
    nanny?: boolean;
    /** How long a worker waits for a lost (or not yet started) scheduler, ms (default 60 s). */
    deathTimeoutMs?: number;
    extraArgs?: string[];
  };
  /**
   * TLS credentials and/or a token for every task. Each task writes its own role's files (0600, in
   * a 0700 directory `.skein-credentials-<jobId>/<role>` next to the scheduler file; removed when
   * the task's process ends) and names them by flags. Every task must build the
   * same Security (`Security.fromFiles(...)` or `Security.fromEnv()`): a `Security.temporary()`
   * made in each task would be a different CA in each.
   */
  security?: Security;
  /** How long the client task waits for the scheduler file (default 60 s). */
  timeoutMs?: number;
  /** The environment to read SLURM_PROCID, SLURM_NTASKS, SLURM_JOB_ID from (default process.env). */
  env?: NodeJS.ProcessEnv;
}

function intFrom(env: NodeJS.ProcessEnv, names: string[]): number | undefined {
  for (const n of names) {
    const v = env[n];
    if (v !== undefined && /^\d+$/.test(v)) return Number(v);
  }
  return undefined;
}

/**
 * A whole Skein cluster inside one Slurm allocation (dask-jobqueue's SLURMRunner): every task of
 * `srun -n N node app.js` calls `SlurmRunner.start()`. Rank 0 runs the scheduler, which writes the
 * scheduler file on the shared directory; ranks 2 ... N-1 run workers (named `<jobId>-<rank>`) that
 * find it there; in those tasks `start()` never returns (the process exits with its role's code).
 * In rank 1 it resolves once the scheduler is up: the rest of app.js is the client. `close()`
 * retires the workers and stops the scheduler, so every task exits 0 and srun ends.
 *
 * @example
 * // srun -n 4 node app.js
 * import { SlurmRunner } from '@skein/deploy-slurm';
 * import { Client } from '@skein/client';
 * await using runner = await SlurmRunner.start({ schedulerFile: '/shared/scheduler-{jobId}.json' });
 * await using client = await Client.connect(runner);
 * await runner.waitForWorkers();            // the 2 workers
 * console.log(await client.gather(client.map((x: number) => x * 2, [1, 2, 3])));
 */
export class SlurmRunner {
  #admin: SchedulerAdmin | undefined;
  #closing: Promise<void> | undefined;

  private constructor(
    readonly rank: number,
    readonly size: number,
    readonly jobId: string,
    readonly schedulerFile: string,
    readonly schedulerAddress: string,
    readonly dashboardLink: string,
    /** The credentials (`Client.connect(runner)` uses them). */
    readonly security: Security | undefined,
  ) {}

  /** The number of workers the allocation runs (tasks minus the scheduler and the client). */
  get nWorkers(): number {
    return this.size - 2;
  }

  /** The names of its workers, `<jobId>-<rank>` for ranks 2 ... */
  get workerNames(): string[] {
    return Array.from({ length: this.nWorkers }, (_, i) => `${this.jobId}-${i + 2}`);
  }

  /** Which role a task has, from its rank (exported for tests). */
  static roleOf(rank: number): RunnerRole {
    return rank === 0 ? 'scheduler' : rank === 1 ? 'client' : 'worker';
  }

  /**
   * Runs this task's role. Rank 1 (the client) gets the runner once the scheduler is up; the other
   * ranks never return: they run the scheduler or a worker and exit the process with its code.
   */
  static async start(options: SlurmRunnerOptions = {}): Promise<SlurmRunner> {
    const env = options.env ?? process.env;
    const rank = intFrom(env, ['SLURM_PROCID']);
    const size = intFrom(env, ['SLURM_NTASKS', 'SLURM_NPROCS']);
    const jobId = env['SLURM_JOB_ID'] ?? env['SLURM_JOBID'];
    if (rank === undefined || size === undefined || !jobId) {
      throw new InvalidArgumentError('SlurmRunner runs inside srun: SLURM_PROCID, SLURM_NTASKS and SLURM_JOB_ID must be set. Start the program with `srun -n 4 node app.js` (in an allocation: salloc or sbatch).');
    }
    if (size < 3) {
      throw new InvalidArgumentError(`SlurmRunner needs at least 3 tasks (the scheduler, the client and one worker); srun started ${size}. Run it with srun -n 3 or more.`);
    }
    const schedulerFile = resolve((options.schedulerFile ?? 'scheduler-{jobId}.json').replaceAll('{jobId}', jobId));
    const skein = options.skeinCommand ?? defaultSkeinCommand();
    const role = SlurmRunner.roleOf(rank);
    const security = options.security;
    const credentialsRoot = join(dirname(schedulerFile), `.skein-credentials-${jobId}`);
    const credentials = (who: string) => (security ? { security, credentialsDir: join(credentialsRoot, who) } : {});
    if (role === 'scheduler') {
      rmSync(stopFile(schedulerFile), { force: true });
      const s = options.schedulerOptions ?? {};
      const { argv, files } = schedulerLaunch({
        port: s.port ?? 0,
        ...(s.interface !== undefined ? { interface: s.interface } : {}),
        dashboardAddress: s.dashboardAddress === undefined ? ':8787' : s.dashboardAddress,
        schedulerFile,
        readyJson: false,
        ...credentials('scheduler'),
        extraArgs: s.extraArgs ?? [],
      });
      writeLaunchFiles(files, credentials('scheduler').credentialsDir ?? '');
      const code = await runScheduler(skein, argv, schedulerFile);
      removeCredentials(credentialsRoot, 'scheduler');
      return exitWith(code);
    }
    if (role === 'worker') {
      const w = options.workerOptions ?? {};
      const nthreads = w.nthreads ?? intFrom(env, ['SLURM_CPUS_PER_TASK']) ?? 1;
      const { argv, files } = workerLaunch({
        schedulerFile,
        name: `${jobId}-${rank}`,
        nthreads,
        ...(w.memoryLimit !== undefined ? { memoryLimit: w.memoryLimit } : {}),
        ...(w.interface !== undefined ? { interface: w.interface } : {}),
        modules: w.modules ?? [],
        resources: w.resources ?? {},
        nanny: w.nanny ?? true,
        deathTimeoutMs: w.deathTimeoutMs ?? 60_000,
        readyJson: false,
        ...credentials(`worker-${rank}`),
        extraArgs: w.extraArgs ?? [],
      });
      writeLaunchFiles(files, credentials(`worker-${rank}`).credentialsDir ?? '');
      const code = await runChild(skein, argv);
      removeCredentials(credentialsRoot, `worker-${rank}`);
      return exitWith(code);
    }
    const contents = await waitForSchedulerFile(schedulerFile, options.timeoutMs ?? 60_000, { intervalMs: 100 });
    const runner = new SlurmRunner(rank, size, jobId, schedulerFile, contents.address, contents.dashboard, security);
    // If the user's code ends without close() (it threw), the scheduler task still stops.
    process.once('exit', () => runner.#signalStop());
    return runner;
  }

  #adminOf(): SchedulerAdmin {
    this.#admin ??= new SchedulerAdmin(this.schedulerAddress, this.security ? { security: this.security } : {});
    return this.#admin;
  }

  /** Resolves once `n` workers (default: all of the allocation's) have registered. */
  async waitForWorkers(n = this.nWorkers, timeoutMs = 60_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const count = (await this.#adminOf().workers()).length;
      if (count >= n) return;
      if (Date.now() > end) throw new TimeoutError(`Only ${count} of ${n} workers registered with the scheduler ${this.schedulerAddress} within ${timeoutMs} ms; see the srun output of ranks 2 and up.`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  #signalStop(): void {
    try {
      writeFileSync(stopFile(this.schedulerFile), `${process.pid}\n`);
    } catch {
      // the shared directory is gone: srun ends the step anyway
    }
  }

  /** Retires every worker (their tasks exit 0), then stops the scheduler (its task exits 0). Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      try {
        const workers = (await this.#adminOf().workers()).map((w) => w.name);
        if (workers.length > 0) await this.#adminOf().retireWorkers(workers);
      } catch (err) {
        // The scheduler is gone already: nothing to retire.
        if (!(err instanceof SkeinError)) throw err;
      } finally {
        this.#admin?.close();
        this.#signalStop();
      }
    })();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** The file the client task writes when the cluster should stop. */
function stopFile(schedulerFile: string): string {
  return `${schedulerFile}.stop`;
}

/** Runs `<skein> <argv>` with this task's stdio; forwards SIGTERM/SIGINT; resolves with its exit code. */
function runChild(skein: string, argv: readonly string[], onStart?: (stop: () => void) => void): Promise<number> {
  const child = spawn('/bin/sh', ['-c', `exec ${skein} ${argv.map(shellQuote).join(' ')}`], { stdio: ['ignore', 'inherit', 'inherit'] });
  const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
  const term = forward('SIGTERM');
  const int = forward('SIGINT');
  process.on('SIGTERM', term);
  process.on('SIGINT', int);
  onStart?.(() => child.kill('SIGTERM'));
  return new Promise((resolvePromise) => {
    child.once('exit', (code, signal) => {
      process.off('SIGTERM', term);
      process.off('SIGINT', int);
      resolvePromise(code ?? (signal ? 128 + (signal === 'SIGKILL' ? 9 : 15) : 1));
    });
  });
}

/** The scheduler task: runs the scheduler until the client task asks it to stop (the stop file). */
async function runScheduler(skein: string, argv: readonly string[], schedulerFile: string): Promise<number> {
  let timer: NodeJS.Timeout | undefined;
  const done = runChild(skein, argv, (stop) => {
    const look = () => {
      if (readStop(schedulerFile)) return stop();
      timer = setTimeout(look, 200);
    };
    look();
  });
  const code = await done;
  clearTimeout(timer);
  rmSync(stopFile(schedulerFile), { force: true });
  return code;
}

/**
 * A task's credential files go once its process has ended (a nanny reads them again for each
 * worker it restarts, so not before); the last task out removes their common directory.
 */
function removeCredentials(root: string, who: string): void {
  rmSync(join(root, who), { recursive: true, force: true });
  try {
    rmdirSync(root);
  } catch {
    // another task's files are still there (or none were written)
  }
}

function readStop(schedulerFile: string): boolean {
  return existsSync(stopFile(schedulerFile));
}

function exitWith(code: number): never {
  process.exit(code);
}

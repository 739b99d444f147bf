import { randomUUID } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import {
  Cluster,
  SchedulerAdmin,
  schedulerLaunch,
  workerFlags,
  workerLaunch,
  type AdaptiveOptions,
  type Adaptive,
  type ClusterBackend,
  type ProcessHandle,
  type StartWorkerOptions,
} from '@skein/cluster';
import { InvalidArgumentError, Security, SkeinError, toSkeinError, type LaunchFile } from '@skein/common';
import { JobEndedError, JobSubmitError } from './errors.js';
import { LocalScheduler, defaultSkeinCommand, runCommand, shellQuote } from './process.js';
import { parseMemory, parseWalltime, workerMemory } from './units.js';

/** The scheduler's flags (it runs on this host, as a child process). */
export interface JobQueueSchedulerOptions {
  /** Address to listen on (default: every interface; workers reach it by this host's address). */
  host?: string;
  /** Port (default 0: any free one). */
  port?: number;
  /** Listen on and advertise this NIC (default: the cluster's `interface`, when no `host` is given). */
  interface?: string;
  /** ':PORT' or 'HOST:PORT' of the dashboard; null for none (default ':8787', a busy port falls back to a free one). */
  dashboardAddress?: string | null;
  /** More `skein scheduler` flags. */
  extraArgs?: string[];
}

/**
 * Writes a launch's credential files (`Launch.files` of `workerLaunch` / `schedulerLaunch`) into
 * their directory: the directory mode 0700, each file mode 0600, so only this user can read them.
 */
export function writeLaunchFiles(files: readonly LaunchFile[], dir: string): void {
  if (files.length === 0) return;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  for (const f of files) {
    writeFileSync(f.path, f.contents, { mode: 0o600 });
    chmodSync(f.path, 0o600); // a file that existed keeps its mode on write
  }
}

/** What every job-queue cluster takes (dask-jobqueue's job and cluster parameters). */
export interface JobQueueOptions {
  /** CPU cores of one job: all its worker threads together (threads per worker = cores / processes). */
  cores: number;
  /** Memory of one job, e.g. "128GB" (per worker: memory / processes). */
  memory: string | number;
  /** Workers per job (default 1). */
  processes?: number;
  /** The queue (Slurm partition, PBS/SGE/LSF queue). */
  queue?: string;
  /** Account (project) the jobs are charged to. */
  account?: string;
  /** Walltime of one job: "00:30:00", "1-00:00:00", or seconds. */
  walltime?: string | number;
  /** Network interface the workers (and, unless schedulerOptions say otherwise, the scheduler) use, e.g. "ib0". */
  interface?: string;
  /** The job name in the queue (default 'skein-worker'). */
  jobName?: string;
  /** More directives, each after the system's prefix (`#SBATCH`, `#PBS` ...): e.g. ['--exclusive']. */
  jobExtraDirectives?: string[];
  /** Generated directives that contain any of these strings are left out (not those of jobExtraDirectives). */
  jobDirectivesSkip?: string[];
  /** Shell lines before the workers start (`module load nodejs`, `source env.sh`). */
  jobScriptPrologue?: string[];
  /** Shell lines after the workers exit. */
  jobScriptEpilogue?: string[];
  /** Directory for spilled results on the compute node (`--local-directory`). */
  localDirectory?: string;
  /** Where the jobs' output files go (default: `<sharedDirectory>/<cluster id>/logs`). */
  logDirectory?: string;
  schedulerOptions?: JobQueueSchedulerOptions;
  /** More `skein worker` flags. */
  workerExtraArgs?: string[];
  /** Seconds a worker keeps trying to reach a lost scheduler before its job exits (default 60). */
  deathTimeout?: number;
  /** The script's first line (default '#!/usr/bin/env bash'). */
  shebang?: string;
  /** Environment variables exported in the job script. */
  env?: Record<string, string>;
  /** Workers to start with (default 0: call scale or adapt). */
  nWorkers?: number;
  /** Modules of registered functions the workers load (paths on the compute nodes). */
  modules?: string[];
  /** Abstract resources of each worker, e.g. { GPU: 1 }. */
  resources?: Record<string, number>;
  /** Run each worker under a nanny (default true). */
  nanny?: boolean;
  /**
   * How Skein is started, here (the scheduler) and in the jobs (the workers): a shell command
   * (default: the `skein` package next to this one, `node …/skein/dist/cli.js`, else `skein`).
   */
  skeinCommand?: string;
  /** A directory on the file system the compute nodes share: job scripts, logs, credentials (default: the current directory). */
  sharedDirectory?: string;
  /**
   * TLS credentials and/or a token for the scheduler and the jobs (`Security.temporary()`, or
   * `Security.fromFiles(...)`). Each job gets them as files readable only by this user, in
   * `<sharedDirectory>/.skein-jobqueue/<cluster id>/security` (0700; files 0600), named by flags:
   * never a key or token in the job script or on a command line. Connect with
   * `Client.connect(cluster)` (it uses `cluster.security`). `true`: `Security.temporary()` (a
   * throwaway CA made here; mutual TLS on every link, plaintext refused).
   */
  security?: Security | boolean;
  /** How often the queue is asked about the jobs (default 1000 ms). */
  pollIntervalMs?: number;
  /** Give up on a job whose workers have not registered this long after submission (default: wait). */
  workerStartTimeoutMs?: number;
  /** How long the scheduler may take to start (default 30 s). */
  schedulerStartTimeoutMs?: number;
}

/** Options compiled once: defaults applied, sizes and times parsed. */
export interface CompiledJobQueueOptions {
  cores: number;
  memoryBytes: number;
  processes: number;
  threadsPerProcess: number;
  memoryPerProcess: number;
  queue: string | undefined;
  account: string | undefined;
  walltimeSeconds: number | undefined;
  interface: string | undefined;
  jobName: string;
  jobExtraDirectives: string[];
  jobDirectivesSkip: string[];
  jobScriptPrologue: string[];
  jobScriptEpilogue: string[];
  localDirectory: string | undefined;
  logDirectory: string;
  scheduler: JobQueueSchedulerOptions;
  workerExtraArgs: string[];
  deathTimeoutMs: number;
  shebang: string;
  env: Record<string, string>;
  nWorkers: number;
  modules: string[];
  resources: Record<string, number>;
  nanny: boolean;
  skeinCommand: string;
  clusterDirectory: string;
  security: Security | undefined;
  pollIntervalMs: number;
  workerStartTimeoutMs: number | undefined;
  schedulerStartTimeoutMs: number;
}

function wholeNumber(v: unknown, what: string, min: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new InvalidArgumentError(`${what} must be a whole number ≥ ${min}, got ${String(v)}.`);
  return v;
}

function strings(v: unknown, what: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new InvalidArgumentError(`${what} must be a list of strings, got ${JSON.stringify(v)}.`);
  return v as string[];
}

export function compileJobQueueOptions(o: JobQueueOptions, cls: string): CompiledJobQueueOptions {
  if (!o || o.cores === undefined || o.memory === undefined) {
    throw new InvalidArgumentError(`${cls} needs the cores and memory of one job, e.g. new ${cls}({ cores: 8, memory: '24GB' }).`);
  }
  const cores = wholeNumber(o.cores, 'cores', 1);
  const memoryBytes = parseMemory(o.memory, 'memory');
  const processes = wholeNumber(o.processes ?? 1, 'processes', 1);
  if (processes > cores) throw new InvalidArgumentError(`processes (${processes}) must not exceed cores (${cores}): each worker needs at least one thread.`);
  const deathTimeout = o.deathTimeout ?? 60;
  if (!(typeof deathTimeout === 'number' && deathTimeout >= 0)) throw new InvalidArgumentError(`deathTimeout must be a number of seconds ≥ 0, got ${String(deathTimeout)}.`);
  const pollIntervalMs = o.pollIntervalMs ?? 1000;
  if (!(pollIntervalMs > 0)) throw new InvalidArgumentError(`pollIntervalMs must be > 0, got ${pollIntervalMs}.`);
  for (const [k, v] of Object.entries(o.env ?? {})) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) || typeof v !== 'string') throw new InvalidArgumentError(`env must map variable names to strings; ${JSON.stringify(k)} is not a valid entry.`);
  }
  const clusterDirectory = resolve(o.sharedDirectory ?? process.cwd(), `.skein-jobqueue`, randomUUID().slice(0, 8));
  if (o.security !== undefined && typeof o.security !== 'boolean' && !(o.security instanceof Security)) {
    throw new InvalidArgumentError(`security must be a Security (Security.temporary(), Security.fromFiles(...), Security.fromToken(...)) or true, got ${JSON.stringify(o.security)}.`);
  }
  const resources = o.resources ?? {};
  const modules = strings(o.modules, 'modules');
  // The launch spec checks resources now rather than at the first job.
  workerFlags({ resources });
  return {
    cores,
    memoryBytes,
    processes,
    threadsPerProcess: Math.floor(cores / processes),
    memoryPerProcess: Math.floor(memoryBytes / processes),
    queue: o.queue,
    account: o.account,
    walltimeSeconds: o.walltime === undefined ? undefined : parseWalltime(o.walltime),
    interface: o.interface,
    jobName: o.jobName ?? 'skein-worker',
    jobExtraDirectives: strings(o.jobExtraDirectives, 'jobExtraDirectives'),
    jobDirectivesSkip: strings(o.jobDirectivesSkip, 'jobDirectivesSkip'),
    jobScriptPrologue: strings(o.jobScriptPrologue, 'jobScriptPrologue'),
    jobScriptEpilogue: strings(o.jobScriptEpilogue, 'jobScriptEpilogue'),
    localDirectory: o.localDirectory,
    logDirectory: resolve(o.logDirectory ?? join(clusterDirectory, 'logs')),
    scheduler: { port: 0, ...o.schedulerOptions },
    workerExtraArgs: strings(o.workerExtraArgs, 'workerExtraArgs'),
    deathTimeoutMs: deathTimeout * 1000,
    shebang: o.shebang ?? '#!/usr/bin/env bash',
    env: { ...o.env },
    nWorkers: wholeNumber(o.nWorkers ?? 0, 'nWorkers', 0),
    modules,
    resources,
    nanny: o.nanny ?? true,
    skeinCommand: o.skeinCommand ?? defaultSkeinCommand(),
    clusterDirectory,
    security: o.security === true ? Security.temporary() : o.security || undefined,
    pollIntervalMs,
    workerStartTimeoutMs: o.workerStartTimeoutMs,
    schedulerStartTimeoutMs: o.schedulerStartTimeoutMs ?? 30_000,
  };
}

/** Where a job is, in the queue's words mapped onto four states. */
export interface JobState {
  state: 'pending' | 'running' | 'done' | 'failed';
  /** The system's own state name (PENDING, R, qw ...). */
  raw: string;
  /** Why it is pending (Slurm's reason: Resources, Priority ...), '' when the system gives none. */
  reason: string;
}

/**
 * One queue system (Slurm, PBS, SGE, LSF): its directives, and how to submit, cancel and ask about
 * jobs. A thin description; `JobQueueCluster` does the rest.
 */
export interface JobSystem {
  /** 'Slurm', 'PBS', 'SGE', 'LSF'. */
  readonly name: string;
  /** The directive prefix: '#SBATCH', '#PBS', '#$', '#BSUB'. */
  readonly directive: string;
  /** The generated directives (without the prefix), before jobDirectivesSkip and jobExtraDirectives. */
  header(o: CompiledJobQueueOptions): string[];
  /** The submit command for a script file (or given the script on stdin: `stdin: true`). */
  submit(scriptPath: string): { argv: string[]; stdin?: boolean };
  /** The job id in the submit command's output. */
  jobId(stdout: string): string | undefined;
  cancel(jobIds: string[]): string[];
  /** A command listing these jobs' states (one call for every job the cluster has). */
  status(jobIds: string[], user: string): string[];
  /** Parses the status command's output; jobs it does not list are gone (finished). */
  parseStatus(result: { code: number | null; stdout: string; stderr: string }): Map<string, JobState>;
  /** A failed submission, as a typed error with the system's own message. */
  submitError(command: string, code: number | null, message: string, o: CompiledJobQueueOptions): JobSubmitError;
  /** The output file of a job (the script's directives name it), for `logs()`. */
  outputFile(o: CompiledJobQueueOptions, jobId: string): string | undefined;
}

/** Where a cluster's credential files for `role` go (on the shared file system). */
export function credentialsDir(o: CompiledJobQueueOptions, role: 'scheduler' | 'worker'): string {
  return join(o.clusterDirectory, 'security', role);
}

/** The launch of each worker of a job (its credential files in `files`: the same for every worker). */
function workerLaunches(o: CompiledJobQueueOptions, scheduler: string, names: readonly string[]) {
  return names.map((name) =>
    workerLaunch({
      scheduler,
      name,
      nthreads: o.threadsPerProcess,
      memoryLimit: workerMemory(o.memoryPerProcess),
      resources: o.resources,
      modules: o.modules,
      ...(o.interface !== undefined ? { interface: o.interface } : {}),
      deathTimeoutMs: o.deathTimeoutMs,
      nanny: o.nanny,
      readyJson: false,
      ...(o.security ? { security: o.security, credentialsDir: credentialsDir(o, 'worker') } : {}),
      extraArgs: [...(o.localDirectory !== undefined ? ['--local-directory', o.localDirectory] : []), ...o.workerExtraArgs],
    }),
  );
}

/** The body of a job script: the worker commands (one per process; `&` and `wait` when several). */
function workerCommands(o: CompiledJobQueueOptions, scheduler: string, names: readonly string[]): string[] {
  const lines = workerLaunches(o, scheduler, names).map(({ argv }) => `${o.skeinCommand} ${argv.map(shellQuote).join(' ')}`);
  return lines.length === 1 ? lines : [...lines.map((l) => `${l} &`), 'wait'];
}

/** The complete batch script of one job. */
export function renderJobScript(system: JobSystem, o: CompiledJobQueueOptions, scheduler: string, names: readonly string[]): string {
  const header = system
    .header(o)
    .filter((line) => !o.jobDirectivesSkip.some((skip) => line.includes(skip)))
    .concat(o.jobExtraDirectives)
    .map((d) => `${system.directive} ${d}`);
  const env = Object.entries(o.env).map(([k, v]) => `export ${k}=${shellQuote(v)}`);
  const parts = [o.shebang, '', ...header, '', ...env, ...o.jobScriptPrologue, ...workerCommands(o, scheduler, names), ...o.jobScriptEpilogue];
  return parts.join('\n') + '\n';
}

/** One submitted job: the base's handle on its worker(s). */
export class JobHandle implements ProcessHandle {
  address = '';
  readonly exited: Promise<number | null>;
  #resolveExit!: (code: number | null) => void;
  #closing: Promise<void> | undefined;
  /** The latest state the queue reported. */
  state: JobState = { state: 'pending', raw: 'SUBMITTED', reason: '' };
  ended = false;

  constructor(
    readonly name: string,
    readonly jobId: string,
    readonly workerNames: readonly string[],
    private readonly backend: JobQueueBackend,
  ) {
    this.exited = new Promise((r) => (this.#resolveExit = r));
  }

  /** The job's output so far (its output file on the shared file system), last 500 lines. */
  logs(): string[] {
    const file = this.backend.system.outputFile(this.backend.o, this.jobId);
    if (!file) return [];
    try {
      return readFileSync(file, 'utf8').split('\n').filter(Boolean).slice(-500);
    } catch {
      return [];
    }
  }

  /** @internal the queue no longer runs it */
  end(code: number | null): void {
    if (this.ended) return;
    this.ended = true;
    this.#resolveExit(code);
  }

  /** Cancels the job (scancel / qdel / bkill) and waits until the queue has ended it. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.backend.cancel(this);
    return this.#closing;
  }
}

/** The ClusterBackend of every job-queue cluster: a local scheduler, one job per handle. */
export class JobQueueBackend implements ClusterBackend<JobHandle, LocalScheduler> {
  readonly workersPerHandle: number;
  /** Every job submitted and not seen ended, by job id. */
  readonly jobs = new Map<string, JobHandle>();
  /** Every job id it submitted, oldest first. */
  readonly submitted: string[] = [];
  readonly #user = userInfo().username;
  #admin: SchedulerAdmin | undefined;
  #poller: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  #waiters = new Set<() => void>();
  #registered = new Map<string, string>();
  #credentialsWritten = false;
  #counter = 0;
  #closed = false;
  lastPollError: string = '';

  /** The cluster's credentials (`cluster.security`; Client.connect(cluster) uses them). */
  get security(): Security | undefined {
    return this.o.security;
  }

  constructor(
    readonly system: JobSystem,
    readonly o: CompiledJobQueueOptions,
  ) {
    this.workersPerHandle = o.processes;
  }

  async startScheduler(): Promise<LocalScheduler> {
    const s = this.o.scheduler;
    const nic = s.interface ?? (s.host === undefined ? this.o.interface : undefined);
    mkdirSync(this.o.clusterDirectory, { recursive: true, mode: 0o700 });
    const { argv, env, files } = schedulerLaunch({
      ...(s.host !== undefined ? { host: s.host } : {}),
      ...(nic !== undefined ? { interface: nic } : {}),
      port: s.port ?? 0,
      dashboardAddress: s.dashboardAddress === undefined ? ':8787' : s.dashboardAddress,
      ...(this.o.security ? { security: this.o.security, credentialsDir: credentialsDir(this.o, 'scheduler') } : {}),
      extraArgs: s.extraArgs ?? [],
    });
    writeLaunchFiles(files, credentialsDir(this.o, 'scheduler'));
    const scheduler = await LocalScheduler.start(this.o.skeinCommand, argv, env, this.o.schedulerStartTimeoutMs);
    this.schedulerAddress = scheduler.address;
    return scheduler;
  }

  /** The script of a job carrying these workers (`writeCredentials`: also place the credential files, once). */
  script(schedulerAddress: string, names: readonly string[], writeCredentials = false): string {
    if (writeCredentials && !this.#credentialsWritten && this.o.security) {
      writeLaunchFiles(workerLaunches(this.o, schedulerAddress, names.slice(0, 1))[0]!.files, credentialsDir(this.o, 'worker'));
      this.#credentialsWritten = true;
    }
    return renderJobScript(this.system, this.o, schedulerAddress, names);
  }

  async startWorker(name: string, schedulerAddress: string, options?: StartWorkerOptions): Promise<JobHandle> {
    const report = options?.report ?? (() => undefined);
    const signal = options?.signal;
    const names = options?.workerNames ?? [name];
    const o = this.o;
    report(`submitting the job to ${this.system.name}`);
    const script = this.script(schedulerAddress, names, true);
    mkdirSync(join(o.clusterDirectory, 'jobs'), { recursive: true, mode: 0o700 });
    mkdirSync(o.logDirectory, { recursive: true });
    const path = join(o.clusterDirectory, 'jobs', `${name}-${this.#counter++}.sh`);
    writeFileSync(path, script, { mode: 0o700 });
    const { argv, stdin } = this.system.submit(path);
    const res = await runCommand(this.system.name, argv, stdin ? { input: script } : {});
    const command = argv.join(' ');
    if (res.code !== 0) throw this.system.submitError(command, res.code, (res.stderr.trim() || res.stdout.trim()).replace(/\s*\n\s*/g, '; '), o);
    const jobId = this.system.jobId(res.stdout);
    if (!jobId) throw new SkeinError('internal', `Could not find the job id in the output of ${command}: ${res.stdout.trim() || '(none)'}`);
    const job = new JobHandle(name, jobId, names, this);
    this.jobs.set(jobId, job);
    this.submitted.push(jobId);
    void job.exited.then(() => this.jobs.delete(jobId));
    report(`submitted as ${this.system.name} job ${jobId}, waiting in the queue`);
    this.#ensurePolling();
    return new Promise<JobHandle>((resolveStart, rejectStart) => {
      let told = '';
      const tell = (why: string) => {
        if (why !== told) report((told = why));
      };
      const settle = () => {
        this.#waiters.delete(check);
        signal?.removeEventListener('abort', check);
      };
      const check = () => {
        if (signal?.aborted) {
          settle();
          void job.close();
          rejectStart(new SkeinError('cancelled', `The start of ${name} (${this.system.name} job ${jobId}) was cancelled; the job is cancelled.`));
          return;
        }
        if (job.ended) {
          settle();
          rejectStart(new JobEndedError(this.system.name, jobId, job.state.raw, job.state.reason, job.logs().slice(-20).join('\n')));
          return;
        }
        const s = job.state;
        if (s.state === 'pending') tell(`pending in ${this.system.name} (job ${jobId}${s.reason && s.reason !== 'None' ? `: ${s.reason}` : ''})`);
        else if (s.state === 'running') {
          const registered = names.filter((n) => this.#registered.has(n));
          if (registered.length === names.length) {
            settle();
            job.address = this.#registered.get(names[0]!) ?? '';
            resolveStart(job);
            return;
          }
          tell(`running as ${this.system.name} job ${jobId}, waiting for its workers to register (${registered.length} of ${names.length})`);
        }
      };
      signal?.addEventListener('abort', check, { once: true });
      this.#waiters.add(check);
      check();
    });
  }

  #ensurePolling(): void {
    if (this.#poller || this.#closed) return;
    const tick = () => {
      this.#polling = this.#poll()
        .catch((err: unknown) => {
          this.lastPollError = toSkeinError(err).message;
        })
        .finally(() => {
          this.#polling = undefined;
          if (this.#closed || this.jobs.size === 0) {
            this.#poller = undefined;
            return;
          }
          this.#poller = setTimeout(tick, this.o.pollIntervalMs);
        });
    };
    this.#poller = setTimeout(tick, 0);
  }

  /** One round: the queue's states of every job, then (when one runs) the scheduler's registered workers. */
  async #poll(): Promise<void> {
    const ids = [...this.jobs.keys()];
    if (ids.length > 0) {
      const res = await runCommand(this.system.name, this.system.status(ids, this.#user), { timeoutMs: 30_000 });
      const states = this.system.parseStatus(res);
      for (const id of ids) {
        const job = this.jobs.get(id);
        if (!job) continue;
        const s = states.get(id);
        if (!s) {
          job.state = { ...job.state, state: job.state.state === 'pending' ? 'failed' : 'done', raw: job.state.raw === 'SUBMITTED' ? 'GONE' : job.state.raw };
          job.end(job.state.state === 'done' ? 0 : null);
          continue;
        }
        job.state = s;
        if (s.state === 'done') job.end(0);
        else if (s.state === 'failed') job.end(null);
      }
    }
    if ([...this.jobs.values()].some((j) => j.state.state === 'running') && this.#waiters.size > 0) {
      const admin = this.#adminOf();
      if (admin) {
        try {
          this.#registered = new Map((await admin.workers()).map((w) => [w.name, w.address]));
        } catch (err) {
          this.lastPollError = toSkeinError(err).message;
        }
      }
    }
    for (const w of [...this.#waiters]) w();
  }

  #adminOf(): SchedulerAdmin | undefined {
    if (!this.#admin && this.schedulerAddress) this.#admin = new SchedulerAdmin(this.schedulerAddress, { callTimeoutMs: 10_000, ...(this.o.security ? { security: this.o.security } : {}) });
    return this.#admin;
  }

  /** Set by the cluster once its scheduler runs. */
  schedulerAddress = '';

  /** Cancels a job and waits (30 s at most) until the queue no longer runs it. */
  async cancel(job: JobHandle): Promise<void> {
    if (!job.ended) {
      const argv = this.system.cancel([job.jobId]);
      const res = await runCommand(this.system.name, argv).catch((err: unknown) => ({ code: -1, stdout: '', stderr: toSkeinError(err).message }));
      if (res.code !== 0 && !job.ended) this.lastPollError = `${argv.join(' ')}: ${res.stderr.trim()}`;
      this.#ensurePolling();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([job.exited, new Promise((r) => (timer = setTimeout(r, 30_000)))]);
      clearTimeout(timer);
    }
  }

  /** Jobs still in the queue, by asking it (for tests and tools): id → state. */
  async queued(): Promise<Map<string, JobState>> {
    const ids = [...this.jobs.keys()];
    if (ids.length === 0) return new Map();
    return this.system.parseStatus(await runCommand(this.system.name, this.system.status(ids, this.#user)));
  }

  async close(): Promise<void> {
    // Every job it submitted is cancelled by now (the base closed every handle); any left (a start
    // cancelled while its submission ran) is cancelled here, in one command.
    const left = [...this.jobs.values()].filter((j) => !j.ended);
    if (left.length > 0) {
      await runCommand(this.system.name, this.system.cancel(left.map((j) => j.jobId))).catch(() => undefined);
      await Promise.all(left.map((j) => j.close()));
    }
    this.#closed = true;
    clearTimeout(this.#poller);
    await this.#polling;
    this.#admin?.close();
    rmSync(join(this.o.clusterDirectory, 'security'), { recursive: true, force: true });
    rmSync(join(this.o.clusterDirectory, 'jobs'), { recursive: true, force: true });
  }
}

/** `scale()` of a job-queue cluster: a number of workers, or `{ jobs }` (or `{ n }`). */
export type JobQueueScale = number | { jobs: number } | { n: number };

/** `adapt()` of a job-queue cluster: in workers (`minimum`, `maximum`) or in jobs (`minimumJobs`, `maximumJobs`). */
export interface JobQueueAdaptiveOptions extends AdaptiveOptions {
  minimumJobs?: number;
  maximumJobs?: number;
}

/**
 * The base of SLURMCluster, PBSCluster, SGECluster and LSFCluster (dask-jobqueue's
 * JobQueueCluster): the scheduler runs on this host (a `skein scheduler` child process), each
 * worker job is one batch job carrying `processes` workers. `scale`, `adapt`, retiring, replacing
 * a job that dies, and the shutdown order come from the `Cluster` base.
 */
export class JobQueueCluster extends Cluster<JobHandle, LocalScheduler> {
  readonly options: CompiledJobQueueOptions;
  readonly system: JobSystem;
  readonly #backend: JobQueueBackend;

  constructor(system: JobSystem, options: JobQueueOptions, cls = `${system.name}Cluster`) {
    const o = compileJobQueueOptions(options, cls);
    const backend = new JobQueueBackend(system, o);
    super(backend, {
      nWorkers: o.nWorkers,
      namePrefix: system.name.toLowerCase(),
      name: cls,
      ...(o.workerStartTimeoutMs !== undefined ? { workerStartTimeoutMs: o.workerStartTimeoutMs } : {}),
    });
    this.options = o;
    this.system = system;
    this.#backend = backend;
  }

  /**
   * The batch script of one job, exactly as it is submitted (the scheduler's address is a
   * placeholder before `start()`; `name` is the base's name of the job: its workers are `name`, or
   * `name-0` ... with processes > 1).
   */
  jobScript(name = `${this.system.name.toLowerCase()}-0`): string {
    const names = this.options.processes === 1 ? [name] : Array.from({ length: this.options.processes }, (_, i) => `${name}-${i}`);
    return this.#backend.script(this.schedulerAddress || 'tcp://<scheduler-address>:8786', names);
  }

  /** Wants `n` workers (`ceil(n / processes)` jobs), or `{ jobs }` jobs. */
  override scale(n: JobQueueScale): Promise<void> {
    if (typeof n === 'number') return super.scale(n);
    if ('jobs' in n) {
      if (!Number.isInteger(n.jobs) || n.jobs < 0) throw new InvalidArgumentError(`scale({ jobs }) needs a whole number ≥ 0, got ${n.jobs}.`);
      return super.scale(n.jobs * this.options.processes);
    }
    return super.scale(n.n);
  }

  /** Adaptive scaling in workers, or in jobs (`minimumJobs`, `maximumJobs`: times processes). */
  override adapt(options: JobQueueAdaptiveOptions = {}): Adaptive {
    const { minimumJobs, maximumJobs, ...rest } = options;
    const k = this.options.processes;
    return super.adapt({
      ...rest,
      ...(minimumJobs !== undefined ? { minimum: minimumJobs * k } : {}),
      ...(maximumJobs !== undefined ? { maximum: maximumJobs * k } : {}),
    });
  }

  /** The queue's job id of each job handle the cluster has submitted and not seen end: handle name → job id. */
  get jobIds(): Map<string, string> {
    return new Map([...this.#backend.jobs.values()].map((j) => [j.name, j.jobId]));
  }

  /** Every job id the cluster submitted, oldest first (ended ones too). */
  get submittedJobIds(): readonly string[] {
    return this.#backend.submitted;
  }

  /**
   * As the base's, but a job the queue refused rejects with the typed error itself
   * (`InvalidQueueError`, `ResourceRequestError` ... with the system's own message).
   */
  override waitForWorkers(n: number, options: { timeoutMs?: number } = {}): Promise<void> {
    return super.waitForWorkers(n, options).catch((err: unknown) => {
      const cause = err instanceof Error ? err.cause : undefined;
      throw cause instanceof JobSubmitError ? cause : err;
    });
  }

  /** The jobs still known to the queue (asks it): job id → state. */
  queuedJobs(): Promise<Map<string, JobState>> {
    return this.#backend.queued();
  }

  /** The directory of this cluster's scripts, logs and credentials on the shared file system. */
  get directory(): string {
    return this.options.clusterDirectory;
  }

  /** @internal the last problem the job poller met ('' when none) */
  get pollError(): string {
    return this.#backend.lastPollError;
  }

}

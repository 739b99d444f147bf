import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Metadata, type Server, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import {
  NannyServiceService,
  SchedulerServiceClient,
  type KillRequest,
  type KillResponse,
  type NannyServiceGetStatusRequest,
  type NannyServiceGetStatusResponse,
  type NannyServiceServer,
  type ResourceSample,
  type RestartRequest,
  type RestartResponse,
  type NannyServiceSetupPluginRequest,
  type NannyServiceSetupPluginResponse,
  type NannyServiceTeardownPluginRequest,
  type NannyServiceTeardownPluginResponse,
  type PluginSpec,
} from '@skein/protocol';
import {
  InvalidArgumentError,
  Lifecycle,
  PluginHost,
  runPreloads,
  fetchRegisteredPlugins,
  pluginResultToWire,
  SkeinError,
  Security,
  authorizeService,
  bindServer,
  childCredentials,
  type PrivateFiles,
  contactHost,
  createLogger,
  formatAddress,
  interfaceAddress,
  newServer,
  checkRange,
  strictService,
  DEFAULT_MAX_MESSAGE_BYTES,
  parseAddress,
  parseHost,
  parseMemoryLimit,
  parseReadyLine,
  shutdownServer,
  skeinDefaults,
  toGrpcStatus,
  type Logger,
  type RoleTable,
} from '@skein/common';
import { RestartPolicy, cpuPercent, memoryVerdict, workerDeathTimeoutMs } from './policy.js';
import { EXIT_INTERNAL_ERROR, EXIT_REMOVED, EXIT_SCHEDULER_LOST } from '@skein/core-worker/command';
import { packagesDirArg, packagesRoot } from '@skein/core-worker/environment';
import { spawnWorker } from './spawn.js';
import { sampleProcess } from './proc.js';

/** A nanny takes orders (Kill, Restart) only from its scheduler; its status is for the scheduler and clients. */
export const NANNY_ROLES: RoleTable<NannyServiceServer> = {
  restart: ['scheduler'],
  kill: ['scheduler'],
  getStatus: ['scheduler', 'client'],
  // The scheduler hands its nanny plugins (client.registerPlugin) to the nanny.
  setupPlugin: ['scheduler'],
  teardownPlugin: ['scheduler'],
};

/** What a nanny plugin's hooks (and a nanny preload module's setup/teardown) get as `ctx`. */
export interface NannyPluginContext {
  name: string;
  options: unknown;
  nanny: {
    address: string;
    schedulerAddress: string;
    /** The current worker's address ('' while none is registered); read when used. */
    readonly workerAddress: string;
    readonly workerName: string;
    /**
     * A worker process is running: its environment is fixed, restart it to change it. False while
     * the nanny starts (its plugins are set up before its first worker, whose environment they may set).
     */
    readonly workerRunning: boolean;
    /** A directory of this nanny's own, made on first use, removed when the nanny closes. */
    readonly localDirectory: string;
    /** The environment the nanny adds for the next worker process (its `env` option and setWorkerEnv). */
    readonly workerEnv: Readonly<Record<string, string>>;
    /** The cluster's package directory on this host, where its worker's tasks import from (its `--packages-dir`, else SKEIN_PACKAGES_DIR of the worker's environment, else the default). */
    readonly packagesRoot: string;
  };
  /**
   * Environment of every worker process the nanny starts from now on, on top of its `env` option
   * (undefined removes a variable set this way). The running worker keeps its own: restart it.
   */
  setWorkerEnv(vars: Record<string, string | undefined>): void;
  /** Kills the worker and starts a fresh one; resolves with its address ('' before the first worker starts: nothing to restart). */
  restartWorker(reason?: string): Promise<string>;
  log: Logger;
}

/** Exit codes of a worker (@skein/core-worker's EXIT_*): gave up on a lost scheduler (the nanny stops), removed by the scheduler, closed on an internal error (the nanny starts a fresh one). */
export { EXIT_SCHEDULER_LOST as WORKER_EXIT_SCHEDULER_LOST, EXIT_REMOVED as WORKER_EXIT_REMOVED, EXIT_INTERNAL_ERROR as WORKER_EXIT_INTERNAL_ERROR };

export interface NannyOptions {
  /** Scheduler address, tcp://HOST:PORT. */
  scheduler: string;
  /** Flags passed to `skein-worker` unchanged (e.g. ['--nthreads', '2', '--module', 'x.js']). */
  workerArgs?: string[];
  /** Memory limit of the worker: '4GB', '0.5', 'auto' (default) or 0 for none. */
  memoryLimit?: string | number;
  /** Kill the worker when its RSS passes this fraction of the memory limit (default 0.95; false: never). */
  terminateFraction?: number | false;
  /** Host and port of the nanny's own gRPC service (default: 0.0.0.0 / any free port). */
  host?: string;
  port?: number;
  interface?: string;
  /** How often to sample the worker's memory and CPU (ms, default 100). */
  monitorIntervalMs?: number;
  /** How long to wait for a worker to register (ms, default 60 s). */
  startTimeoutMs?: number;
  /**
   * After its worker dies, how long the nanny keeps starting new ones that cannot register (the
   * scheduler is gone, or each one fails at start) before it gives up and stops with exit code 1
   * (ms). Default: the worker's `--death-timeout` in `workerArgs`, else the workers' default
   * (SKEIN_DEATH_TIMEOUT_MS, 60 s).
   */
  deathTimeoutMs?: number;
  /** Environment of the worker process. */
  env?: Record<string, string>;
  /** Called with every line the worker prints on stdout. */
  onWorkerStdout?: (line: string) => void;
  /**
   * Called with the lines the worker prints on stderr (default: this process's stderr). A
   * worker's lines are held back until it registers: one that fails to start is reported by the
   * error of `start()` (or the restart's log line) instead.
   */
  onWorkerStderr?: (line: string) => void;
  /** Where the nanny's own messages go (default: this process's stderr). */
  logger?: Logger;
  /**
   * Aborts the start: the worker process is killed at once and `start()` rejects with a
   * `cancelled` error, instead of waiting up to `startTimeoutMs` (a deployer's start no longer wanted).
   */
  signal?: AbortSignal;
  /**
   * TLS credentials and/or a token for the nanny's links (default: none, plaintext; see Security).
   * The nanny serves with its `nanny` certificate; its worker gets the `worker` one, as files: the
   * ones these credentials were read from (Security.fromFiles), or, for credentials in memory
   * (Security.temporary()), files the nanny writes into a private temporary directory (0700, each
   * file 0600) and removes when it closes. Never a key in argv or the environment.
   */
  security?: Security;
  /**
   * Preload modules of the nanny (Dask's --preload-nanny): `setup(ctx)` runs at start, before the
   * worker is started (a module that cannot be loaded fails the start; a throw in setup is logged), `teardown(ctx)` at close; ctx as a nanny plugin's.
   */
  preload?: string[];
}

interface CompiledNannyOptions {
  scheduler: string;
  workerArgs: string[];
  memoryLimit: number;
  terminateFraction: number | false;
  host: string;
  port: number;
  monitorIntervalMs: number;
  startTimeoutMs: number;
  deathTimeoutMs: number;
  env: Record<string, string>;
  onWorkerStdout: (line: string) => void;
  onWorkerStderr: (line: string) => void;
  security: Security;
  preload: string[];
  logger: Logger;
}

function compile(o: NannyOptions): CompiledNannyOptions {
  parseAddress(o.scheduler);
  const deathTimeoutMs = o.deathTimeoutMs ?? workerDeathTimeoutMs(o.workerArgs ?? []) ?? skeinDefaults().deathTimeoutMs;
  if (!(deathTimeoutMs >= 0)) throw new InvalidArgumentError(`deathTimeoutMs must be a number of ms (0 or more), got ${deathTimeoutMs}.`);
  const tf = o.terminateFraction ?? 0.95;
  if (tf !== false && !(tf > 0 && tf <= 1)) {
    throw new InvalidArgumentError(`terminateFraction must be between 0 and 1 (or false), got ${tf}.`);
  }
  return {
    scheduler: o.scheduler,
    workerArgs: o.workerArgs ?? [],
    memoryLimit: parseMemoryLimit(o.memoryLimit ?? 'auto'),
    terminateFraction: tf,
    host: o.interface ? interfaceAddress(o.interface) : o.host === undefined ? '0.0.0.0' : parseHost(o.host, 'nanny host'),
    port: o.port ?? 0,
    monitorIntervalMs: o.monitorIntervalMs ?? 100,
    startTimeoutMs: o.startTimeoutMs ?? 60_000,
    deathTimeoutMs,
    env: o.env ?? {},
    onWorkerStdout: o.onWorkerStdout ?? (() => undefined),
    onWorkerStderr: o.onWorkerStderr ?? ((line) => process.stderr.write(`${line}\n`)),
    security: o.security ?? Security.insecure(),
    preload: o.preload ?? [],
    logger: o.logger ?? createLogger('nanny'),
  };
}

interface Incarnation {
  child: ChildProcess;
  startedAt: number;
  address: string;
  /** The name the worker registered with. */
  name: string;
  registered: Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Why we are stopping it ourselves, if we are. */
  stopping: string | null;
  stderrTail: string[];
  registered_: boolean;
}

export type NannyStatus = 'starting' | 'running' | 'restarting' | 'closing' | 'closed';

/**
 * Supervises one worker process: starts it, samples its memory and CPU, kills it past the
 * terminate threshold, starts a fresh one after a crash or a kill (with back-off), and serves
 * NannyService so the scheduler can restart or kill it.
 */
export class Nanny {
  private readonly server: Server;
  private readonly lifecycle = new Lifecycle('nanny');
  private readonly policy = new RestartPolicy();
  private readonly history: ResourceSample[] = [];
  private current: Incarnation | null = null;
  private monitor: NodeJS.Timeout | undefined;
  private boundPort = 0;
  private restarts = 0;
  private lastDeathReason = '';
  private sampling = false;
  private lastCpu: { s: number; t: number } | null = null;
  private status_: NannyStatus = 'starting';
  private exitResult: { code: number; reason: string } | null = null;
  /** Set while no worker is registered after one died: the nanny gives up when it fires. */
  private giveUp: NodeJS.Timeout | undefined;
  private lastStartError = '';
  private readonly log: Logger;
  /** The worker's credential flags, and the private files behind them when the nanny wrote them. */
  private credentials: { args: string[]; files?: PrivateFiles } | undefined;
  private resolveDone!: (result: { code: number; reason: string }) => void;
  /** Resolves when the nanny stops for good, with the exit code its CLI should use. */
  readonly done: Promise<{ code: number; reason: string }>;
  /** The nanny plugins applied here (client.registerPlugin) and the preload modules. */
  readonly plugins: PluginHost<NannyPluginContext>;
  /** Environment set by plugins (NannyPluginContext.setWorkerEnv) for the workers started next. */
  private readonly pluginEnv = new Map<string, string>();
  /** A start-time plugin has `restart: true`: a worker started before it (the CLI's early one) must be replaced. */
  private startRestart = false;
  private pluginDirectory: string | undefined;

  private constructor(readonly options: CompiledNannyOptions) {
    this.log = options.logger;
    this.server = newServer(DEFAULT_MAX_MESSAGE_BYTES.nanny);
    this.server.addService(strictService(NannyServiceService), authorizeService('NannyService', this.service(), options.security, NANNY_ROLES));
    this.done = new Promise((r) => (this.resolveDone = r));
    const directory = () => (this.pluginDirectory ??= mkdtempSync(join(tmpdir(), 'skein-nanny-')));
    const worker = () => this.current;
    const workerEnv = () => this.workerEnv();
    const { scheduler: schedulerAddress, workerArgs } = this.options;
    this.plugins = new PluginHost<NannyPluginContext>({
      kind: 'nanny',
      target: () => ({ target: this.address, targetName: this.workerName }),
      context: (name, options) => ({
        name,
        options,
        nanny: {
          address: this.address,
          schedulerAddress: this.options.scheduler,
          get workerAddress() {
            return worker()?.address ?? '';
          },
          get workerName() {
            return worker()?.name ?? '';
          },
          get workerRunning() {
            const c = worker()?.child;
            return c !== undefined && c.exitCode === null && c.signalCode === null;
          },
          get localDirectory() {
            return directory();
          },
          get workerEnv() {
            return workerEnv();
          },
          get packagesRoot() {
            return packagesRoot(schedulerAddress, packagesDirArg(workerArgs), { ...process.env, ...workerEnv() });
          },
        },
        setWorkerEnv: (vars) => {
          for (const [k, v] of Object.entries(vars)) {
            if (v === undefined) this.pluginEnv.delete(k);
            else this.pluginEnv.set(k, String(v));
          }
        },
        restartWorker: (reason) => (this.current ? this.restart(reason ?? `restart asked by nanny plugin ${name}`) : Promise.resolve('')),
        log: createLogger(`nanny plugin ${name}`),
      }),
      importer: (specifier) => import(specifier),
      log: this.log,
    });
  }

  /** Runs the preload modules, then applies the nanny plugins the scheduler has registered (before the first worker starts). */
  private async startPlugins(): Promise<void> {
    await runPreloads(this.plugins, this.options.preload, 'nanny');
    let specs: PluginSpec[];
    try {
      specs = await fetchRegisteredPlugins(this.options.security, this.options.scheduler, 'nanny', 10_000);
    } catch (err) {
      // The scheduler hands them over when the worker registers.
      this.log.debug(`could not fetch the registered nanny plugins (${(err as Error).message}); the scheduler sends them when the worker registers`);
      return;
    }
    for (const spec of specs) {
      await this.plugins.setup(spec);
      // A plugin asking for a restart (NpmInstall(restartWorkers)) changed what a worker sees at start.
      if (this.plugins.instance(spec.name)?.restart === true) this.startRestart = true;
    }
  }

  /** SetupPlugin from the scheduler; a plugin with `restart: true` restarts the worker once set up (Dask's NannyPlugin.restart). */
  private async setupPlugin(spec: PluginSpec) {
    const r = await this.plugins.setup(spec, async (plugin) => {
      if (plugin.restart === true && this.current && !this.lifecycle.closing) await this.restart(`nanny plugin ${spec.name} asks for a restart`);
    });
    return pluginResultToWire(r);
  }

  /** The environment of the next worker process: the `env` option and what plugins set. */
  private workerEnv(): Record<string, string> {
    if (this.pluginEnv.size === 0) return this.options.env;
    return { ...this.options.env, ...Object.fromEntries(this.pluginEnv) };
  }

  /**
   * Starts the nanny. `prespawned` is a worker the caller already started (see spawnWorker) with
   * `--nanny-address` naming this nanny's host and `options.port`.
   */
  static async start(options: NannyOptions, prespawned?: ChildProcess): Promise<Nanny> {
    const n = new Nanny(compile(options));
    const signal = options.signal;
    const cancelled = (cause?: unknown) =>
      new SkeinError('cancelled', 'The nanny\'s start was cancelled (its signal aborted) before the worker registered.', cause === undefined ? {} : { cause });
    n.lifecycle.beginStart();
    try {
      if (signal?.aborted) throw cancelled();
      n.boundPort = await bindServer(n.server, n.options.host, n.options.port, 'nanny', n.options.security.serverCredentials('nanny'));
    } catch (err) {
      prespawned?.kill('SIGKILL');
      throw err;
    }
    // An abort kills the worker: its start then fails at once ("exited before registering").
    const onAbort = () => n.current?.child.kill('SIGKILL');
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      if (signal?.aborted) throw cancelled();
      await n.startPlugins();
      if (signal?.aborted) throw cancelled();
      // A worker started before the plugins set its environment (the CLI starts one early) is
      // replaced by one that has it, before it does any work.
      if (prespawned && (n.pluginEnv.size > 0 || n.startRestart)) {
        n.log.info('the nanny plugins set the worker environment or asked for a restart: starting the worker again');
        const early = prespawned;
        const gone = new Promise((resolve) => (early.exitCode !== null || early.signalCode !== null ? resolve(undefined) : early.once('exit', resolve)));
        early.kill('SIGKILL');
        await gone;
        prespawned = undefined;
      }
      await n.startWorker(prespawned);
      if (signal?.aborted) throw cancelled();
    } catch (err) {
      // A worker that did not register in time may still be running: it must not outlive a
      // nanny that failed to start (LocalCluster runs nannies in its own, long-lived process).
      const inc = n.current;
      // (aborted before startWorker took it over)
      if (!inc) prespawned?.kill('SIGKILL');
      if (inc) inc.stopping ??= 'kill';
      inc?.child.kill('SIGKILL');
      if (inc) await inc.exited;
      await n.plugins.closeAll().catch(() => undefined);
      await shutdownServer(n.server, 100);
      n.credentials?.files?.remove();
      if (n.pluginDirectory) rmSync(n.pluginDirectory, { recursive: true, force: true });
      throw signal?.aborted ? cancelled(err) : err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    n.monitor = setInterval(() => void n.sample(), n.options.monitorIntervalMs);
    n.monitor.unref();
    n.status_ = 'running';
    n.lifecycle.started();
    return n;
  }

  get address(): string {
    return formatAddress({ host: contactHost(this.options.host), port: this.boundPort }, this.options.security.tls);
  }

  get workerAddress(): string {
    return this.current?.address ?? '';
  }

  /** The name the current worker registered with ('' before it has). */
  get workerName(): string {
    return this.current?.name ?? '';
  }

  get workerPid(): number {
    return this.current?.child.pid ?? -1;
  }

  get status(): NannyStatus {
    return this.status_;
  }

  get restartCount(): number {
    return this.restarts;
  }

  /** The credential flags of the worker process (written to private files once, when in memory). */
  private credentialArgs(): string[] {
    this.credentials ??= childCredentials(this.options.security, 'worker', 'skein-nanny-');
    return this.credentials.args;
  }

  private async startWorker(prespawned?: ChildProcess): Promise<string> {
    const child =
      prespawned ??
      spawnWorker({
        scheduler: this.options.scheduler,
        workerArgs: this.options.workerArgs,
        memoryLimit: this.options.memoryLimit,
        nannyAddress: this.address,
        env: this.workerEnv(),
        credentialArgs: this.credentialArgs(),
      });
    const inc: Incarnation = {
      child,
      startedAt: Date.now(),
      address: '',
      name: '',
      stopping: null,
      stderrTail: [],
      registered_: false,
      exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
      registered: Promise.resolve(''),
    };
    // Until the worker registers its log is held back: if it fails to start, the nanny's own
    // one-line error carries the reason instead.
    let held: string[] | null = [];
    createInterface({ input: child.stderr! }).on('line', (line) => {
      inc.stderrTail.push(line);
      if (inc.stderrTail.length > 50) inc.stderrTail.shift();
      if (held) held.push(line);
      else this.options.onWorkerStderr(line);
    });
    inc.registered = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new SkeinError('deadline_exceeded', `The worker did not register within ${this.options.startTimeoutMs} ms.`)),
        this.options.startTimeoutMs,
      );
      createInterface({ input: child.stdout! }).on('line', (line) => {
        // The worker's JSON ready line (spawnWorker asks for it) is for the nanny; the rest is passed on.
        const ready = parseReadyLine(line);
        if (!ready || ready.role !== 'worker') {
          this.options.onWorkerStdout(line);
          return;
        }
        if (!inc.registered_) {
          inc.address = ready.address;
          inc.name = ready.name;
          clearTimeout(timer);
          for (const l of held ?? []) this.options.onWorkerStderr(l);
          held = null;
          inc.registered_ = true;
          clearTimeout(this.giveUp);
          this.giveUp = undefined;
          resolve(inc.address);
        }
      });
      void inc.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        const why = inc.stderrTail.filter((l) => l.trim()).slice(-1)[0] ?? '';
        reject(new SkeinError('unavailable', `The worker exited (${signal ?? `code ${code}`}) before registering${why ? `: ${why}` : '.'}`));
      });
    });
    inc.registered.catch(() => undefined);
    this.current = inc;
    this.lastCpu = null;
    void inc.exited
      .then((exit) => this.onExit(inc, exit))
      .catch((err: unknown) => this.log.error(`handling the worker's exit failed: ${(err as Error)?.message ?? String(err)}`));
    return inc.registered;
  }

  private async onExit(inc: Incarnation, exit: { code: number | null; signal: NodeJS.Signals | null }): Promise<void> {
    if (this.current !== inc) return;
    const lived = Date.now() - inc.startedAt;
    if (inc.stopping === 'restart') return; // restart() starts the next one itself
    if (inc.stopping === 'close' || inc.stopping === 'kill') return;
    if (this.lifecycle.closing) return;
    // A worker that never registered on the nanny's first start fails Nanny.start instead.
    if (this.status_ === 'starting' && !inc.registered_) return;
    if (exit.code === 0) {
      this.finish(0, 'the worker closed (retired or asked to stop by the scheduler)');
      return;
    }
    if (exit.code === EXIT_SCHEDULER_LOST) {
      this.finish(1, 'the worker lost the scheduler and gave up after its death timeout');
      return;
    }
    const removed = exit.code === EXIT_REMOVED;
    const reason =
      inc.stopping ??
      (removed
        ? 'the scheduler removed the worker'
        : exit.code === EXIT_INTERNAL_ERROR
          ? 'the worker closed on an internal error (exit code 5; its log says which)'
          : `the worker process ${exit.signal ? `was killed by ${exit.signal}` : `exited with code ${exit.code}`}`);
    this.lastDeathReason = reason;
    this.restarts++;
    // A removed worker is not registered any more: there is no death to report.
    if (!inc.stopping && !removed && inc.address) void this.reportDeath(inc.address, reason);
    this.armGiveUp(reason);
    const delay = this.policy.onDeath(lived);
    this.log.warn(`${reason}; restarting it${delay ? ` in ${delay} ms` : ''}`);
    this.status_ = 'restarting';
    if (delay) await new Promise((r) => setTimeout(r, delay));
    if (this.lifecycle.closing || this.current !== inc) return;
    try {
      await this.startWorker();
      this.status_ = 'running';
    } catch (err) {
      this.lastStartError = (err as Error).message;
      if (!this.lifecycle.closing) this.log.error(`could not restart the worker: ${(err as Error).message}`);
    }
  }

  /**
   * Starts the death-timeout clock when a worker dies (unless it already runs): when no new
   * worker has registered by then, the nanny gives up, as Dask's does, rather than start workers
   * against a scheduler that is gone for good.
   */
  private armGiveUp(death: string): void {
    if (this.giveUp) return;
    const timeoutMs = this.options.deathTimeoutMs;
    this.lastStartError = '';
    this.giveUp = setTimeout(() => {
      this.giveUp = undefined;
      if (this.lifecycle.closing || this.current?.registered_) return;
      const last = this.lastStartError || this.current?.stderrTail.filter((l) => l.trim()).slice(-1)[0] || '';
      const reason =
        `no worker could register with the scheduler at ${this.options.scheduler} within the death timeout ` +
        `(${timeoutMs / 1000} s) after the worker died (${death}); giving up${last ? `. Last error: ${last}` : ''}`;
      this.finish(1, reason);
    }, timeoutMs);
    this.giveUp.unref();
  }

  private finish(code: number, reason: string): void {
    this.log.info(`stopping: ${reason}`);
    this.exitResult ??= { code, reason };
    void this.close().catch((err: unknown) => this.log.error(`closing failed: ${(err as Error)?.message ?? String(err)}`));
  }

  /** Tells the scheduler why the worker dies (`expected`: we stop it on purpose); resolves once it answered or failed. */
  private reportDeath(workerAddress: string, reason: string, expected = false): Promise<void> {
    const dial = this.options.security.dial(this.options.scheduler, 'nanny', 'scheduler');
    const client = new SchedulerServiceClient(dial.target, dial.credentials, dial.options);
    return new Promise((resolve) => {
      client.reportWorkerDeath({ workerAddress, reason, expected }, new Metadata(), { deadline: Date.now() + 5000 }, (err) => {
        client.close();
        if (err) this.log.debug(`could not tell the scheduler that worker ${workerAddress} stops (${reason}): ${err.message}`);
        resolve();
      });
    });
  }

  private async sample(): Promise<void> {
    const inc = this.current;
    if (!inc || this.sampling || inc.stopping || inc.child.pid === undefined) return;
    this.sampling = true;
    try {
      const s = await sampleProcess(inc.child.pid);
      if (!s || this.current !== inc) return;
      const now = Date.now();
      const cpu = this.lastCpu ? cpuPercent(this.lastCpu.s, this.lastCpu.t, s.cpuSeconds, now) : 0;
      this.lastCpu = { s: s.cpuSeconds, t: now };
      this.history.push({ timeMs: now, rss: s.rss, cpuPercent: cpu });
      if (this.history.length > 600) this.history.shift();
      const verdict = memoryVerdict(s.rss, this.options.memoryLimit, this.options.terminateFraction);
      if (verdict && !inc.stopping) {
        // Tell the scheduler first, so the task that was running gets the true reason.
        if (inc.address) void this.reportDeath(inc.address, verdict);
        inc.stopping = verdict;
        this.log.warn(`worker ${inc.address} ${verdict}: killing it`);
        inc.child.kill('SIGKILL');
      }
    } finally {
      this.sampling = false;
    }
  }

  /** Kills the worker and starts a fresh one; resolves with the new worker's address. */
  async restart(reason = 'restart requested'): Promise<string> {
    const inc = this.current;
    this.status_ = 'restarting';
    if (inc && inc.child.exitCode === null && inc.child.signalCode === null) {
      inc.stopping = 'restart';
      // A restart on purpose is not a death: told first, the scheduler removes the worker as
      // expected and reschedules its tasks without counting them as suspicious (Dask's
      // Nanny.restart closes the worker gracefully for the same reason).
      if (inc.address) await this.reportDeath(inc.address, `its nanny restarts it (${reason})`, true);
      inc.child.kill('SIGKILL');
      await inc.exited;
    }
    this.log.info(`restarting the worker (${reason})`);
    const address = await this.startWorker();
    this.status_ = 'running';
    return address;
  }

  close(): Promise<void> {
    this.status_ = 'closing';
    return this.lifecycle.close([
      ['stop monitor', () => clearInterval(this.monitor)],
      ['stop the death timeout', () => clearTimeout(this.giveUp)],
      [
        'stop worker',
        async () => {
          const inc = this.current;
          if (!inc || inc.child.exitCode !== null || inc.child.signalCode !== null) return;
          inc.stopping ??= 'close';
          inc.child.kill('SIGTERM');
          const timer = setTimeout(() => inc.child.kill('SIGKILL'), 15_000);
          await inc.exited;
          clearTimeout(timer);
        },
      ],
      ['tear the plugins down', () => this.plugins.closeAll()],
      ['remove the plugins\' directory', () => this.pluginDirectory && rmSync(this.pluginDirectory, { recursive: true, force: true })],
      ['stop server', () => shutdownServer(this.server, 500)],
      ['remove the credential files', () => this.credentials?.files?.remove()],
      [
        'done',
        () => {
          this.status_ = 'closed';
          this.resolveDone(this.exitResult ?? { code: 0, reason: 'closed' });
        },
      ],
    ]);
  }

  private service(): NannyServiceServer {
    return {
      restart: (call: ServerUnaryCall<RestartRequest, RestartResponse>, cb: sendUnaryData<RestartResponse>) => {
        try {
          checkRange(call.request.timeoutMs, 'RestartRequest.timeout_ms', 0, 86_400_000, "0: the nanny's default");
        } catch (err) {
          return cb(toGrpcStatus(err));
        }
        this.restart(call.request.reason || 'requested by the scheduler').then(
          (workerAddress) => cb(null, { workerAddress }),
          (err) => cb(toGrpcStatus(err)),
        );
      },
      kill: (call: ServerUnaryCall<KillRequest, KillResponse>, cb: sendUnaryData<KillResponse>) => {
        const inc = this.current;
        if (inc) inc.stopping = 'kill';
        cb(null, {});
        this.finish(0, call.request.reason || 'killed by request');
      },
      getStatus: (_call: ServerUnaryCall<NannyServiceGetStatusRequest, NannyServiceGetStatusResponse>, cb: sendUnaryData<NannyServiceGetStatusResponse>) => {
        cb(null, {
          nannyAddress: this.address,
          workerAddress: this.workerAddress,
          workerPid: this.workerPid,
          status: this.status_,
          memoryLimit: this.options.memoryLimit,
          restarts: this.restarts,
          lastDeathReason: this.lastDeathReason,
          history: this.history.slice(),
        });
      },
      setupPlugin: (call: ServerUnaryCall<NannyServiceSetupPluginRequest, NannyServiceSetupPluginResponse>, cb: sendUnaryData<NannyServiceSetupPluginResponse>) => {
        const spec = call.request.plugin;
        if (!spec) return cb(toGrpcStatus(new InvalidArgumentError('NannyServiceSetupPluginRequest.plugin is missing.')));
        this.setupPlugin(spec).then(
          (result) => cb(null, { result }),
          (err) => cb(toGrpcStatus(err)),
        );
      },
      teardownPlugin: (call: ServerUnaryCall<NannyServiceTeardownPluginRequest, NannyServiceTeardownPluginResponse>, cb: sendUnaryData<NannyServiceTeardownPluginResponse>) => {
        this.plugins.teardown(call.request.name).then(
          (r) => cb(null, { result: pluginResultToWire(r) }),
          (err) => cb(toGrpcStatus(err)),
        );
      },
    };
  }
}

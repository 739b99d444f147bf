import { Cluster, schedulerLaunch, workerFlags, workerLaunch, type ClusterBackend, type Launch, type SchedulerHandle, type StartWorkerOptions } from '@skein/cluster';
import { InvalidArgumentError, Security, SkeinError, formatAddress, parseAddress } from '@skein/common';
import { RemoteProcessError, SchedulerPortInUseError, SkeinNotInstalledError } from './errors.js';
import { RemoteProcess, compileConnectOptions, connectSSH, shellQuote, type CompiledConnectOptions, type SSHConnectOptions } from './ssh.js';

/** One host: a name or address, with optional per-host port, user and remote directory. */
export interface SSHHost {
  host: string;
  /** SSH port (default: connectOptions.port, else 22). */
  port?: number;
  /** Login name (default: connectOptions.username). */
  username?: string;
  /** Remote working directory, created when missing (default: the cluster's workDir, else the login directory). */
  workDir?: string;
}

/** Flags of `skein scheduler` on the first host. */
export interface SSHSchedulerOptions {
  /** Port (default 8786; 0 picks a free one). */
  port?: number;
  /** Address to listen on (default: the host name as given in `hosts`). */
  host?: string;
  /** More `skein scheduler` flags, passed as they are. */
  extraArgs?: string[];
}

/** Flags of `skein worker` on the other hosts. */
export interface SSHWorkerOptions {
  /** Threads per worker (default 1). */
  nthreads?: number;
  /** Memory limit per worker, e.g. '4GB' or '0.5' (default: the worker's own default). */
  memoryLimit?: string | number;
  /** Run workers under a nanny (default true). */
  nanny?: boolean;
  /** Modules of registered functions every worker loads (paths on the worker hosts). */
  modules?: string[];
  /** Abstract resources every worker offers, e.g. { GPU: 1 }. */
  resources?: Record<string, number>;
  /** Network interface the workers listen on and advertise (e.g. ib0; default: the host name as given in `hosts`). */
  interface?: string;
  /** How long a worker keeps trying to reach a lost scheduler, ms (default: the worker's own, 60 s). */
  deathTimeoutMs?: number;
  /** More `skein worker` flags, passed as they are. */
  extraArgs?: string[];
}

export interface SSHClusterOptions {
  /** The first host runs the scheduler, the others run workers (a host may appear twice). */
  hosts: Array<string | SSHHost>;
  /** How to log in. */
  connectOptions?: SSHConnectOptions;
  schedulerOptions?: SSHSchedulerOptions;
  workerOptions?: SSHWorkerOptions;
  /** How Skein is started on the remote hosts (default 'skein'), e.g. 'node /opt/skein/dist/cli.js'. */
  remoteCommand?: string;
  /** Remote working directory for every host that does not set its own. */
  workDir?: string;
  /** Workers to start (default: one per worker host). */
  nWorkers?: number;
  /** Environment variables for the remote processes. */
  env?: Record<string, string>;
  /** How long a remote scheduler or worker may take to be ready (default 60 s). */
  startTimeoutMs?: number;
  /**
   * Give up on a worker not running this long after it was requested (ms; default: none, a start
   * then fails after `startTimeoutMs`): its remote process is stopped and `waitForWorkers` rejects
   * with a `WorkerStartTimeoutError` carrying the last reason (e.g. "started on HOST, waiting for its ready line").
   */
  workerStartTimeoutMs?: number;
  /**
   * TLS and/or a token on every link: a Security, or `true` for `Security.temporary()` (a
   * throwaway CA; every process this cluster starts gets a certificate for its role). Each
   * process gets its credentials as files (the launch spec's `Launch.files`), written over SSH
   * into a private directory on its host (`mktemp -d`, 0700; files 0600) before it starts and
   * removed when it stops: never a key or token on a command line. Addresses are then `tls://`.
   * `Client.connect(cluster)` uses `cluster.security`. Default: none (plaintext).
   */
  security?: Security | boolean;
}

interface CompiledHost {
  host: string;
  port: number;
  username: string;
  workDir: string;
}

interface CompiledSSHClusterOptions {
  scheduler: CompiledHost;
  workerHosts: CompiledHost[];
  connect: CompiledConnectOptions;
  schedulerPort: number;
  schedulerListen: string | undefined;
  schedulerArgs: string[];
  worker: Required<Pick<SSHWorkerOptions, 'nthreads' | 'nanny' | 'modules' | 'extraArgs' | 'resources'>> &
    Pick<SSHWorkerOptions, 'interface' | 'deathTimeoutMs'> & { memoryLimit: string | undefined };
  remoteCommand: string;
  nWorkers: number;
  env: Record<string, string>;
  startTimeoutMs: number;
  workerStartTimeoutMs: number | undefined;
  security: Security;
}

function compile(o: SSHClusterOptions): CompiledSSHClusterOptions {
  if (!o || !Array.isArray(o.hosts) || o.hosts.length === 0) {
    throw new InvalidArgumentError('SSHCluster needs hosts: the first runs the scheduler, the others run workers, e.g. { hosts: ["node1", "node2", "node3"] }.');
  }
  const connect = compileConnectOptions(o.connectOptions);
  const hosts = o.hosts.map((h): CompiledHost => {
    const spec = typeof h === 'string' ? { host: h } : h;
    if (!spec.host) throw new InvalidArgumentError(`SSHCluster hosts entries need a host name, got ${JSON.stringify(h)}.`);
    return { host: spec.host, port: spec.port ?? connect.port, username: spec.username ?? connect.username, workDir: spec.workDir ?? o.workDir ?? '' };
  });
  const workerHosts = hosts.slice(1);
  const nWorkers = o.nWorkers ?? workerHosts.length;
  if (!Number.isInteger(nWorkers) || nWorkers < 0) throw new InvalidArgumentError(`SSHCluster nWorkers must be a whole number ≥ 0, got ${nWorkers}.`);
  if (nWorkers > 0 && workerHosts.length === 0) {
    throw new InvalidArgumentError('SSHCluster has no worker hosts: give at least two hosts (the first runs the scheduler), or the same host twice.');
  }
  const schedulerPort = o.schedulerOptions?.port ?? 8786;
  if (!Number.isInteger(schedulerPort) || schedulerPort < 0 || schedulerPort > 65535) {
    throw new InvalidArgumentError(`schedulerOptions.port must be 0-65535, got ${schedulerPort}.`);
  }
  const w = o.workerOptions ?? {};
  const nthreads = w.nthreads ?? 1;
  if (!Number.isInteger(nthreads) || nthreads < 1) throw new InvalidArgumentError(`workerOptions.nthreads must be a whole number ≥ 1, got ${nthreads}.`);
  // The launch spec checks the rest (resources, death timeout) now rather than at the first start.
  workerFlags({ resources: w.resources ?? {}, ...(w.deathTimeoutMs !== undefined ? { deathTimeoutMs: w.deathTimeoutMs } : {}) });
  return {
    scheduler: hosts[0]!,
    workerHosts,
    connect,
    schedulerPort,
    schedulerListen: o.schedulerOptions?.host,
    schedulerArgs: o.schedulerOptions?.extraArgs ?? [],
    worker: {
      nthreads,
      nanny: w.nanny ?? true,
      modules: w.modules ?? [],
      resources: w.resources ?? {},
      extraArgs: w.extraArgs ?? [],
      memoryLimit: w.memoryLimit === undefined ? undefined : String(w.memoryLimit),
      ...(w.interface !== undefined ? { interface: w.interface } : {}),
      ...(w.deathTimeoutMs !== undefined ? { deathTimeoutMs: w.deathTimeoutMs } : {}),
    },
    remoteCommand: o.remoteCommand ?? 'skein',
    nWorkers,
    env: o.env ?? {},
    startTimeoutMs: o.startTimeoutMs ?? 60_000,
    workerStartTimeoutMs: o.workerStartTimeoutMs,
    security: o.security === true ? Security.temporary() : o.security ? o.security : Security.insecure(),
  };
}

/** A remote `skein scheduler`. */
class RemoteScheduler implements SchedulerHandle {
  constructor(
    readonly process: RemoteProcess,
    readonly address: string,
    readonly dashboardLink: string,
  ) {}
  get name(): string {
    return 'scheduler';
  }
  get exited(): Promise<number | null> {
    return this.process.exited;
  }
  logs(): string[] {
    return this.process.logs();
  }
  close(): Promise<void> {
    return this.process.close();
  }
}

/** A remote `skein worker` (under its nanny), as the Cluster base sees it. */
export type SSHWorkerHandle = RemoteProcess;

function notInstalled(code: number | null, output: string): boolean {
  return code === 127 || /command not found|: not found|No such file or directory|Cannot find module|ERR_MODULE_NOT_FOUND/.test(output);
}

/** Starts Skein processes over SSH: the scheduler on the first host, workers round-robin on the others. */
class SSHBackend implements ClusterBackend<SSHWorkerHandle, RemoteScheduler> {
  readonly placement = new Map<string, CompiledHost>();
  constructor(private readonly o: CompiledSSHClusterOptions) {}

  get security(): Security {
    return this.o.security;
  }

  /** How the remote command is built: with security, its credential files go into a private directory first. */
  #launch(build: (sec: { security?: Security; credentialsDir?: string }) => Launch) {
    const quote = (argv: string[]) => `${this.o.remoteCommand} ${argv.map(shellQuote).join(' ')}`;
    if (!this.o.security.enabled) return { command: quote(build({}).argv) };
    const security = this.o.security;
    return {
      command: '',
      credentials: (dir: string) => {
        const launch = build({ security, credentialsDir: dir });
        return { command: quote(launch.argv), files: launch.files };
      },
    };
  }

  #connector(h: CompiledHost) {
    return () => connectSSH(h.host, h.port, { ...this.o.connect, username: h.username });
  }

  async startScheduler(): Promise<RemoteScheduler> {
    const o = this.o;
    const h = o.scheduler;
    const listen = o.schedulerListen ?? h.host;
    const launch = this.#launch((sec) => schedulerLaunch({ host: listen, port: o.schedulerPort, extraArgs: o.schedulerArgs, ...sec }));
    const p = await RemoteProcess.start(
      {
        host: h.host,
        port: h.port,
        name: 'scheduler',
        what: 'scheduler',
        ...launch,
        workDir: h.workDir,
        env: o.env,
        readyRole: 'scheduler',
        startTimeoutMs: o.startTimeoutMs,
        explain: (code, output) => {
          if (notInstalled(code, output)) return new SkeinNotInstalledError(h.host, o.remoteCommand, output);
          if (/already in use|EADDRINUSE/i.test(output)) return new SchedulerPortInUseError(h.host, o.schedulerPort, output);
          return new RemoteProcessError(h.host, 'scheduler', code, output);
        },
      },
      this.#connector(h),
    );
    const ready = p.ready!;
    const printed = parseAddress(ready.address);
    // A scheduler listening on every interface reports some address of its machine; reach it by the name we used.
    const contact = listen === '0.0.0.0' || listen === '::' ? h.host : printed.host;
    const dashboard = ready.role === 'scheduler' ? ready.dashboard : '';
    return new RemoteScheduler(p, formatAddress({ host: contact, port: printed.port }, printed.tls ?? false), dashboard);
  }

  /** The worker host with the fewest of our workers (ties: the earlier host): round-robin as workers come and go. */
  #pickHost(): CompiledHost {
    const counts = new Map<CompiledHost, number>(this.o.workerHosts.map((h) => [h, 0]));
    for (const h of this.placement.values()) counts.set(h, (counts.get(h) ?? 0) + 1);
    let best = this.o.workerHosts[0];
    if (!best) throw new SkeinError('failed_precondition', 'SSHCluster has no worker hosts: give at least two hosts (the first runs the scheduler).');
    for (const h of this.o.workerHosts) if (counts.get(h)! < counts.get(best)!) best = h;
    return best;
  }

  async startWorker(name: string, schedulerAddress: string, options?: StartWorkerOptions): Promise<SSHWorkerHandle> {
    const o = this.o;
    const h = this.#pickHost();
    this.placement.set(name, h);
    const w = o.worker;
    const launch = this.#launch((sec) => workerLaunch({
      ...sec,
      scheduler: schedulerAddress,
      name,
      ...(w.interface !== undefined ? { interface: w.interface } : { host: h.host }),
      nthreads: w.nthreads,
      ...(w.memoryLimit !== undefined ? { memoryLimit: w.memoryLimit } : {}),
      resources: w.resources,
      modules: w.modules,
      ...(w.deathTimeoutMs !== undefined ? { deathTimeoutMs: w.deathTimeoutMs } : {}),
      nanny: w.nanny,
      extraArgs: w.extraArgs,
    }));
    try {
      const p = await RemoteProcess.start(
        {
          host: h.host,
          port: h.port,
          name,
          what: `worker ${name}`,
          ...launch,
          workDir: h.workDir,
          env: o.env,
          readyRole: 'worker',
          startTimeoutMs: o.startTimeoutMs,
          ...(options ? { signal: options.signal, report: options.report } : {}),
          explain: (code, output) =>
            notInstalled(code, output) ? new SkeinNotInstalledError(h.host, o.remoteCommand, output) : new RemoteProcessError(h.host, `worker ${name}`, code, output),
        },
        this.#connector(h),
      );
      p.address = p.ready?.address ?? '';
      void p.exited.then(() => this.placement.delete(name));
      return p;
    } catch (err) {
      this.placement.delete(name);
      throw err;
    }
  }
}

/**
 * A Skein cluster over SSH (Dask's SSHCluster): `skein scheduler` on the first host, `skein worker`
 * (under a nanny) on the others, all started over SSH with their output streamed back. Scales and
 * adapts through the `Cluster` base, placing new workers round-robin on the worker hosts; `close()`
 * stops every remote process group it started.
 *
 * @example
 * await using cluster = await SSHCluster.start({
 *   hosts: ['10.0.0.5', '10.0.0.6', '10.0.0.7'],
 *   connectOptions: { username: 'me', privateKey: '/home/me/.ssh/id_ed25519' },
 * });
 * await using client = await Client.connect(cluster);
 */
export class SSHCluster extends Cluster<SSHWorkerHandle, RemoteScheduler> {
  readonly options: CompiledSSHClusterOptions;
  readonly #backend: SSHBackend;

  constructor(options: SSHClusterOptions) {
    const compiled = compile(options);
    const backend = new SSHBackend(compiled);
    super(backend, {
      nWorkers: compiled.nWorkers,
      namePrefix: 'ssh',
      name: 'SSHCluster',
      ...(compiled.workerStartTimeoutMs !== undefined ? { workerStartTimeoutMs: compiled.workerStartTimeoutMs } : {}),
    });
    this.options = compiled;
    this.#backend = backend;
  }

  /** Creates an SSHCluster and starts it: resolves once the scheduler and the first workers are up. */
  static async start(options: SSHClusterOptions): Promise<SSHCluster> {
    return new SSHCluster(options).start();
  }

  /** The host each running worker is on, by worker name. */
  get placement(): Record<string, string> {
    return Object.fromEntries([...this.#backend.placement].map(([name, h]) => [name, h.host]));
  }
}

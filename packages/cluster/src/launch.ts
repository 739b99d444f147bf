import { InvalidArgumentError, type LaunchFile, type Security } from '@skein/common';

/** Everything a deployer can ask of one worker process, as `skein worker` flags. */
export interface WorkerLaunchSpec {
  /** The scheduler's address (`tcp://host:port`); or give `schedulerFile`. */
  scheduler?: string;
  /** A file the scheduler writes (`skein scheduler --scheduler-file`); the worker waits for it. */
  schedulerFile?: string;
  /** The worker's name (the deployer's name for it: WatchWorkers reports it). */
  name?: string;
  /** Task threads (default: the worker's own, 1). */
  nthreads?: number;
  /** '4GB', a fraction of the machine ('0.5'), 'auto', or bytes (default: the worker's own, auto). */
  memoryLimit?: string | number;
  /** Abstract resources, e.g. { GPU: 1 }. */
  resources?: Readonly<Record<string, number>>;
  /** ES modules of registered functions to load (paths where the worker runs). */
  modules?: readonly string[];
  /** Preload modules (`--preload`): setup at start, teardown at close (paths or packages where the worker runs). */
  preload?: readonly string[];
  /** Host to listen on. */
  host?: string;
  /** Port to listen on (default: any free one). */
  port?: number;
  /** Network interface to listen on and advertise (e.g. eth0, ib0). */
  interface?: string;
  /** How long the worker keeps trying to reach a lost (or not yet started) scheduler, ms. */
  deathTimeoutMs?: number;
  /** Run under a nanny (default true). */
  nanny?: boolean;
  /** Print the JSON ready line (default true: deployers read it). */
  readyJson?: boolean;
  /** Check the state machine's invariants after every event (`--validate`; slow, for tests). */
  validate?: boolean;
  /**
   * TLS credentials and/or the token the process must use. They reach it as files the deployer
   * writes into `credentialsDir` on the target host (`Launch.files`, mode 0600) and flags that
   * name them: never a key or token in argv.
   */
  security?: Security;
  /** Where on the target host the credential files go (required with `security`). */
  credentialsDir?: string;
  /** More `skein worker` flags, passed as they are (after the others). */
  extraArgs?: readonly string[];
  /** Environment variables of the process. */
  env?: Readonly<Record<string, string>>;
}

/** Everything a deployer can ask of the scheduler process, as `skein scheduler` flags. */
export interface SchedulerLaunchSpec {
  host?: string;
  /** Port (default: the scheduler's own, 8786; 0: any free port). */
  port?: number;
  interface?: string;
  /** ':PORT' or 'HOST:PORT'; null: no dashboard (default: the scheduler's own, :8787). */
  dashboardAddress?: string | null;
  /** Write the address to this file (`--scheduler-file`), for workers started with the same file. */
  schedulerFile?: string;
  /** Close (exit 0) after this long with no client and no task to run (`--idle-timeout`), ms. */
  idleTimeoutMs?: number;
  /** Print the JSON ready line (default true). */
  readyJson?: boolean;
  /**
   * TLS credentials and/or the token the process must use. They reach it as files the deployer
   * writes into `credentialsDir` on the target host (`Launch.files`, mode 0600) and flags that
   * name them: never a key or token in argv.
   */
  security?: Security;
  /** Where on the target host the credential files go (required with `security`). */
  credentialsDir?: string;
  extraArgs?: readonly string[];
  env?: Readonly<Record<string, string>>;
}

/** How to start one process: the arguments of the `skein` command and the environment to add. */
export interface Launch {
  /** `['worker', ...]` or `['scheduler', ...]`: run as `skein <argv...>` (quote them for a shell). */
  argv: string[];
  /** Environment variables to set, besides the inherited ones. */
  env: Record<string, string>;
  /**
   * Files to write on the target host before starting the process (credentials, mode 0600, in
   * the spec's `credentialsDir`; create the directory with mode 0700). Empty without security.
   */
  files: LaunchFile[];
}

/** The credential files and flags of a launch (none without security). */
function securityOf(spec: { security?: Security; credentialsDir?: string }, roles: Parameters<Security['launchFiles']>[0]): { files: LaunchFile[]; args: string[] } {
  if (!spec.security?.enabled) return { files: [], args: [] };
  if (!spec.credentialsDir) {
    throw new InvalidArgumentError('A launch with security needs credentialsDir: the directory on the target host where its credential files go.');
  }
  return spec.security.launchFiles(roles, spec.credentialsDir);
}

function wholeNumber(v: number | undefined, what: string, min: number): void {
  if (v !== undefined && (!Number.isInteger(v) || v < min)) throw new InvalidArgumentError(`${what} must be a whole number ≥ ${min}, got ${v}.`);
}

/**
 * The `skein-worker` flags of a spec, without the scheduler and the nanny choice: what a nanny
 * passes to its worker (`withMemoryLimit: false` when the nanny sets the limit itself).
 */
export function workerFlags(spec: WorkerLaunchSpec, withMemoryLimit = true): string[] {
  wholeNumber(spec.nthreads, 'nthreads', 1);
  wholeNumber(spec.port, 'port', 0);
  if (spec.deathTimeoutMs !== undefined && !(spec.deathTimeoutMs >= 0)) {
    throw new InvalidArgumentError(`deathTimeoutMs must be a number of ms ≥ 0, got ${spec.deathTimeoutMs}.`);
  }
  const args: string[] = [];
  if (spec.interface !== undefined) args.push('--interface', spec.interface);
  if (spec.host !== undefined) args.push('--host', spec.host);
  if (spec.port !== undefined) args.push('--port', String(spec.port));
  if (spec.name !== undefined) args.push('--name', spec.name);
  if (spec.nthreads !== undefined) args.push('--nthreads', String(spec.nthreads));
  if (withMemoryLimit && spec.memoryLimit !== undefined) args.push('--memory-limit', String(spec.memoryLimit));
  const resources = Object.entries(spec.resources ?? {}).map(([k, v]) => {
    if (!k || /[,=\s]/.test(k)) throw new InvalidArgumentError(`A resource name must be non-empty without ',', '=' or spaces, got ${JSON.stringify(k)}.`);
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new InvalidArgumentError(`Resource ${k} must be a number ≥ 0, got ${String(v)}.`);
    return `${k}=${v}`;
  });
  if (resources.length > 0) args.push('--resources', resources.join(','));
  for (const m of spec.modules ?? []) args.push('--module', m);
  for (const m of spec.preload ?? []) args.push('--preload', m);
  if (spec.deathTimeoutMs !== undefined) args.push('--death-timeout', String(spec.deathTimeoutMs / 1000));
  if (spec.readyJson ?? true) args.push('--ready-json');
  if (spec.validate) args.push('--validate');
  args.push(...(spec.extraArgs ?? []));
  return args;
}

/** `skein worker ...` for a spec (Dask's worker spec; the batch script and the pod spec use it too). */
export function workerLaunch(spec: WorkerLaunchSpec): Launch {
  if ((spec.scheduler === undefined) === (spec.schedulerFile === undefined)) {
    throw new InvalidArgumentError('A worker launch needs exactly one of scheduler (its address) and schedulerFile.');
  }
  const argv = ['worker'];
  if (spec.scheduler !== undefined) argv.push(spec.scheduler);
  else argv.push('--scheduler-file', spec.schedulerFile!);
  argv.push(...workerFlags(spec));
  if (spec.nanny === false) argv.push('--no-nanny');
  // A `skein worker` runs a nanny and its worker: one certificate for both roles.
  const sec = securityOf(spec, spec.nanny === false ? 'worker' : ['worker', 'nanny']);
  argv.push(...sec.args);
  return { argv, env: { ...spec.env }, files: sec.files };
}

/** `skein scheduler ...` for a spec. */
export function schedulerLaunch(spec: SchedulerLaunchSpec = {}): Launch {
  wholeNumber(spec.port, 'port', 0);
  const argv = ['scheduler'];
  if (spec.interface !== undefined) argv.push('--interface', spec.interface);
  if (spec.host !== undefined) argv.push('--host', spec.host);
  if (spec.port !== undefined) argv.push('--port', String(spec.port));
  if (spec.dashboardAddress === null) argv.push('--no-dashboard');
  else if (spec.dashboardAddress !== undefined) argv.push('--dashboard-address', spec.dashboardAddress);
  if (spec.schedulerFile !== undefined) argv.push('--scheduler-file', spec.schedulerFile);
  if (spec.idleTimeoutMs !== undefined) {
    if (!(spec.idleTimeoutMs > 0)) throw new InvalidArgumentError(`idleTimeoutMs must be a number of ms above 0, got ${spec.idleTimeoutMs}.`);
    argv.push('--idle-timeout', String(spec.idleTimeoutMs / 1000));
  }
  if (spec.readyJson ?? true) argv.push('--ready-json');
  const sec = securityOf(spec, 'scheduler');
  argv.push(...sec.args);
  argv.push(...(spec.extraArgs ?? []));
  return { argv, env: { ...spec.env }, files: sec.files };
}

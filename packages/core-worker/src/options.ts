import { resolve as resolvePath } from 'node:path';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  InvalidArgumentError,
  contactHost,
  formatAddress,
  grpcTarget,
  interfaceAddress,
  parseAddress,
  parseHost,
  parseFaultSpec,
  parseBytes,
  parseMemoryLimit,
  resolveModuleArg,
  skeinDefaults,
  type FaultSpec,
  Security,
} from '@skein/common';
import { DEFAULT_BULK_IDLE_TIMEOUT_MS } from './server/bulk.js';
import { packagesRoot } from './runtime/packages.js';
import { memoryUsage } from 'node:process';
import { DEFAULT_MEMORY_FRACTIONS, type MemoryFraction, type MemoryFractions } from './state/memory.js';

/** Options of `Worker.start`. */
export interface WorkerOptions {
  /** The scheduler's address, `tcp://host:port`. */
  scheduler: string;
  /** Host to listen on. Default 127.0.0.1 (the CLI listens on 0.0.0.0). */
  host?: string;
  /** Port to listen on; 0 picks a free one. Default 0. */
  port?: number;
  /** Network interface to listen on and advertise (e.g. eth0); overrides host. */
  interface?: string;
  /** Task threads. Default 1. */
  nthreads?: number;
  /** Name shown by the scheduler. Default: the worker's address. */
  name?: string;
  /** '4GB', a fraction of the machine ('0.5'), 'auto' or 0 (no limit). Default 'auto'. */
  memoryLimit?: string | number;
  /** Abstract resources, e.g. {GPU: 2}. */
  resources?: Record<string, number>;
  /** ES modules whose exported functions are registered (paths relative to the cwd). */
  modules?: string[];
  /**
   * Preload modules (Dask's --preload): each one's exported `setup(ctx)` runs at start, before the
   * worker registers (a module that cannot be loaded fails the start; a throw in setup is logged, as in Dask), its `teardown(ctx)` at close. A path (relative to
   * the cwd), a file: URL or a package name; the ctx is a worker plugin's (packages/client/README.md, "Plugins").
   */
  preload?: string[];
  /** How long to keep trying to reach a lost scheduler, ms. Default skeinDefaults().deathTimeoutMs. */
  deathTimeoutMs?: number;
  /** Heartbeat interval when the scheduler does not give one, ms. */
  heartbeatMs?: number;
  /** Results up to this size travel inline with task_finished. Default skeinDefaults().inlineBytes. */
  inlineBytes?: number;
  /** Address of the nanny supervising this worker. */
  nannyAddress?: string;
  /** How long start() waits to reach the scheduler, ms. Default 10 000. */
  connectTimeoutMs?: number;
  /** Tasks queued per thread at once while tasks are short. Default 4. */
  pipelineDepth?: number;
  /** How long retire() waits for the scheduler's CloseWorker, ms. Default 30 000. */
  retireTimeoutMs?: number;
  /**
   * The largest gRPC request the worker's WorkerService accepts (bytes or a size such as '64MiB');
   * a bigger one ends its call with RESOURCE_EXHAUSTED. Default 64 MiB. Values leave in replies
   * (GetData streams them in chunks, large ones over the bulk path), which this does not limit.
   */
  maxMessageBytes?: number | string;
  /** A connection to the bulk-transfer port that has not sent its token within this long is closed (ms). Default 5000. */
  bulkIdleTimeoutMs?: number;
  /** Check the state machine's invariants after every batch of events (tests). Default SKEIN_VALIDATE=1. */
  validate?: boolean;
  /**
   * Spill least recently used results to disk when the results in memory pass this fraction of
   * the memory limit; false turns it off. Default `SKEIN_MEMORY_TARGET` or 0.6.
   */
  memoryTargetFraction?: MemoryFraction;
  /**
   * Spill least recently used results when the process memory (RSS) passes this fraction, until
   * it is below the target; false turns it off. Default `SKEIN_MEMORY_SPILL` or 0.7.
   */
  memorySpillFraction?: MemoryFraction;
  /**
   * Start no new tasks while the process memory is above this fraction; false turns it off.
   * Default `SKEIN_MEMORY_PAUSE` or 0.8.
   */
  memoryPauseFraction?: MemoryFraction;
  /**
   * Where spilled results go: the worker creates a fresh `skein-worker-XXXXXX` directory in it
   * and removes that at close. Default the OS's temporary directory.
   */
  localDirectory?: string;
  /**
   * Where the cluster's packages live on this host (NpmInstall, UploadFile, UploadDirectory): under
   * this base, one directory per cluster. Default SKEIN_PACKAGES_DIR, else `<tmpdir>/skein-packages-<uid>`.
   */
  packagesDir?: string;
  /** How often the memory monitor measures, ms. Default 100. */
  memoryMonitorMs?: number;
  /** Reads the process memory in bytes (tests inject one). Default `process.memoryUsage.rss`. */
  readRss?: () => number;
  /**
   * Test only: make the state machine throw on the nth event of a type, `<event type>[:<nth>]`
   * (e.g. `ExecuteSuccess:200`), to exercise the internal-error policy (the worker closes, exit
   * code 5). Default `SKEIN_TEST_FAULT`.
   */
  testFault?: string;
  /**
   * Test only: a file the faulting worker creates first (exclusively); a worker that finds it
   * there lets the fault pass, so of workers sharing the setting (and their restarts) only one
   * fails. Default `SKEIN_TEST_FAULT_ONCE`.
   */
  testFaultOnce?: string;
  /** TLS credentials and/or a token for every link (default: none, plaintext; see Security). */
  security?: Security;
}

/** Options with defaults applied, validated once at start. */
export interface CompiledWorkerOptions {
  scheduler: string;
  schedulerTarget: string;
  security: Security;
  listenHost: string;
  advertiseHost: string;
  port: number;
  nthreads: number;
  name: string | undefined;
  memoryLimit: number;
  resources: Record<string, number>;
  modules: string[];
  preload: string[];
  deathTimeoutMs: number;
  heartbeatMs: number;
  inlineBytes: number;
  chunkBytes: number;
  nannyAddress: string;
  connectTimeoutMs: number;
  pipelineDepth: number;
  retireTimeoutMs: number;
  maxMessageBytes: number;
  bulkIdleTimeoutMs: number;
  validate: boolean;
  memoryFractions: MemoryFractions;
  localDirectory: string | undefined;
  /** This cluster's package directory on this host (runtime/packages.ts). */
  packagesRoot: string;
  memoryMonitorMs: number;
  readRss: () => number;
  /** The injected fault (tests), if any. */
  testFault: (FaultSpec & { once: string | undefined }) | undefined;
}

function positiveInt(v: number | undefined, fallback: number, what: string): number {
  if (v === undefined) return fallback;
  if (!Number.isInteger(v) || v < 1) throw new InvalidArgumentError(`${what} must be a whole number of at least 1, got ${v}.`);
  return v;
}

function nonNegative(v: number | undefined, fallback: number, what: string): number {
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || Number.isNaN(v) || v < 0) throw new InvalidArgumentError(`${what} must be a number of at least 0, got ${v}.`);
  return v;
}

/**
 * Parses a memory threshold: a fraction of the memory limit in (0, 1], or `0`/`false`/`off` to
 * turn the threshold off. `what` names the setting in the error message.
 */
export function parseMemoryFraction(v: unknown, what: string): MemoryFraction {
  if (v === false || v === 0) return false;
  let n = v;
  if (typeof v === 'string') {
    const t = v.trim().toLowerCase();
    if (t === 'false' || t === 'off' || t === 'none' || t === '0') return false;
    n = t === '' ? NaN : Number(t);
  }
  if (typeof n !== 'number' || !(n > 0 && n <= 1)) {
    throw new InvalidArgumentError(`${what} must be a fraction of the memory limit in (0, 1], or 0/false to turn it off, got ${JSON.stringify(v)}.`);
  }
  return n;
}

function fraction(v: MemoryFraction | undefined, option: string, env: string, fallback: MemoryFraction): MemoryFraction {
  if (v !== undefined) return parseMemoryFraction(v, option);
  const e = process.env[env];
  if (e !== undefined && e.trim() !== '') return parseMemoryFraction(e, env);
  return fallback;
}

/**
 * Parses `GPU=2,MEM=1e9` into {GPU: 2, MEM: 1e9}. Resource names are user data: the record is
 * built from a Map with Object.fromEntries, so a name such as `__proto__` or `constructor` is an
 * own entry like any other.
 */
export function parseResources(text: string): Record<string, number> {
  const out = new Map<string, number>();
  for (const part of text.split(/[,\s]+/).filter(Boolean)) {
    const m = /^([A-Za-z_][\w.-]*)=(.+)$/.exec(part);
    const n = m ? Number(m[2]) : NaN;
    if (!m || !Number.isFinite(n) || n < 0) {
      throw new InvalidArgumentError(`Bad resource "${part}" in "${text}": use NAME=NUMBER pairs separated by commas, e.g. "GPU=2,MEM=1e9".`);
    }
    out.set(m[1]!, n);
  }
  return Object.fromEntries(out);
}

export function compileWorkerOptions(o: WorkerOptions): CompiledWorkerOptions {
  const d = skeinDefaults();
  if (!o || typeof o.scheduler !== 'string' || o.scheduler.trim() === '') {
    throw new InvalidArgumentError('The scheduler address is required, e.g. tcp://10.0.0.5:8786.');
  }
  const sched = parseAddress(o.scheduler, d.schedulerPort);
  let listenHost = o.host === undefined ? '127.0.0.1' : parseHost(o.host, 'worker host');
  let advertiseHost: string;
  if (o.interface) {
    listenHost = interfaceAddress(o.interface);
    advertiseHost = listenHost;
  } else {
    advertiseHost = contactHost(listenHost);
  }
  const port = o.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`Bad port ${port}: a port is a number from 0 to 65535.`);
  const nthreads = positiveInt(o.nthreads, 1, 'nthreads');
  const entries = Object.entries(o.resources ?? {});
  for (const [k, v] of entries) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      throw new InvalidArgumentError(`Resource ${k} must be a finite number of at least 0, got ${String(v)}.`);
    }
  }
  // Own entries only (Object.fromEntries): a resource named `__proto__` stays a resource.
  const resources: Record<string, number> = Object.fromEntries(entries);
  const security = o.security ?? Security.insecure();
  return {
    scheduler: formatAddress(sched, security.tls),
    schedulerTarget: grpcTarget(sched),
    security,
    listenHost,
    advertiseHost,
    port,
    nthreads,
    name: o.name || undefined,
    memoryLimit: parseMemoryLimit(o.memoryLimit ?? 'auto'),
    resources,
    modules: (o.modules ?? []).map((m) => (/^(file|data|node):/.test(m) ? m : resolvePath(m))),
    preload: (o.preload ?? []).map((m) => resolveModuleArg(m)),
    deathTimeoutMs: nonNegative(o.deathTimeoutMs, d.deathTimeoutMs, 'deathTimeoutMs'),
    heartbeatMs: nonNegative(o.heartbeatMs, d.heartbeatMs, 'heartbeatMs') || d.heartbeatMs,
    inlineBytes: nonNegative(o.inlineBytes, d.inlineBytes, 'inlineBytes'),
    chunkBytes: d.chunkBytes,
    nannyAddress: o.nannyAddress ? formatAddress(parseAddress(o.nannyAddress), security.tls) : '',
    connectTimeoutMs: nonNegative(o.connectTimeoutMs, 10_000, 'connectTimeoutMs'),
    pipelineDepth: positiveInt(o.pipelineDepth, 4, 'pipelineDepth'),
    retireTimeoutMs: nonNegative(o.retireTimeoutMs, 30_000, 'retireTimeoutMs'),
    maxMessageBytes: positiveInt(parseBytes(o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES.worker, 'worker maxMessageBytes'), 1, 'maxMessageBytes'),
    bulkIdleTimeoutMs: positiveInt(o.bulkIdleTimeoutMs, DEFAULT_BULK_IDLE_TIMEOUT_MS, 'bulkIdleTimeoutMs'),
    validate: o.validate ?? d.validate,
    memoryFractions: {
      target: fraction(o.memoryTargetFraction, 'memoryTargetFraction', 'SKEIN_MEMORY_TARGET', DEFAULT_MEMORY_FRACTIONS.target),
      spill: fraction(o.memorySpillFraction, 'memorySpillFraction', 'SKEIN_MEMORY_SPILL', DEFAULT_MEMORY_FRACTIONS.spill),
      pause: fraction(o.memoryPauseFraction, 'memoryPauseFraction', 'SKEIN_MEMORY_PAUSE', DEFAULT_MEMORY_FRACTIONS.pause),
    },
    localDirectory: o.localDirectory ? resolvePath(o.localDirectory) : undefined,
    packagesRoot: packagesRoot(formatAddress(sched, security.tls), o.packagesDir),
    memoryMonitorMs: nonNegative(o.memoryMonitorMs, 100, 'memoryMonitorMs') || 100,
    readRss: o.readRss ?? (() => memoryUsage.rss()),
    testFault: testFault(o),
  };
}

function testFault(o: WorkerOptions): CompiledWorkerOptions['testFault'] {
  const spec = parseFaultSpec(o.testFault ?? process.env['SKEIN_TEST_FAULT'], o.testFault === undefined ? 'SKEIN_TEST_FAULT' : 'testFault');
  if (!spec) return undefined;
  const once = o.testFaultOnce ?? process.env['SKEIN_TEST_FAULT_ONCE'];
  return { ...spec, once: once ? resolvePath(once) : undefined };
}

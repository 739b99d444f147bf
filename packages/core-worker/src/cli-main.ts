/**
 * The `skein-worker` command line: flags → WorkerOptions → Worker; all logic is in the library.
 * Flags are parsed with node:util's parseArgs rather than yargs: a worker process parses them
 * once, before it registers, and loading yargs (with its text-layout dependencies) took longer
 * than the rest of the CLI together, on every worker start.
 */
import { parseArgs } from 'node:util';
import { InvalidArgumentError, Security, guardStdio, readyJsonWanted, readyLine, skeinDefaults, waitForSchedulerFile } from '@skein/common';
import { Worker } from './worker.js';
import { installResolveHook, packageDirsBuffer } from './runtime/packages.js';
import { parseMemoryFraction, parseResources, type WorkerOptions } from './options.js';
import { EXIT_INTERNAL_ERROR, EXIT_REMOVED, EXIT_SCHEDULER_LOST } from './command.js';

export { EXIT_INTERNAL_ERROR, EXIT_REMOVED, EXIT_SCHEDULER_LOST };

/** How often a worker under a nanny checks that the nanny (its parent process) is still there (ms). */
const PARENT_POLL_MS = 250;

/**
 * Calls `onGone` once the parent process is gone (this process is re-parented: its ppid changes).
 * A worker whose nanny was killed has no one left to supervise it or read its output.
 */
function watchParent(onGone: (ppid: number) => void): () => void {
  const ppid = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid === ppid) return;
    clearInterval(timer);
    onGone(ppid);
  }, PARENT_POLL_MS);
  timer.unref();
  return () => clearInterval(timer);
}

export interface CliIO {
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  /** Installs SIGINT/SIGTERM handlers; returns a function that removes them. Default: process signals. */
  onSignal?: (handler: (signal: string) => void) => () => void;
}

const defaultIO: CliIO = {
  stdout: (l) => process.stdout.write(l + '\n'),
  stderr: (l) => process.stderr.write(l + '\n'),
};

function processSignals(handler: (signal: string) => void): () => void {
  const on = (s: NodeJS.Signals) => () => handler(s);
  const int = on('SIGINT');
  const term = on('SIGTERM');
  process.on('SIGINT', int);
  process.on('SIGTERM', term);
  return () => {
    process.off('SIGINT', int);
    process.off('SIGTERM', term);
  };
}

function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\s*\n\s*/g, ' ').trim();
}

/** A flag of skein-worker: `value` names its argument in the help (no value: a switch). */
interface Flag {
  value?: string;
  describe: string;
  repeatable?: boolean;
  short?: string;
}

/** Every flag, in the order of the help. */
const FLAGS = {
  nthreads: { value: 'N', describe: 'Task threads (default 1)' },
  'memory-limit': { value: 'LIMIT', describe: "Memory limit: '4GB', a fraction of the machine ('0.5') or 'auto' (default)" },
  'memory-target-fraction': { value: 'F', describe: 'Spill LRU results when results in memory pass this fraction of the limit (0/false: off; default 0.6)' },
  'memory-spill-fraction': { value: 'F', describe: 'Spill LRU results when process memory passes this fraction of the limit (0/false: off; default 0.7)' },
  'memory-pause-fraction': { value: 'F', describe: 'Start no new tasks while process memory is past this fraction of the limit (0/false: off; default 0.8)' },
  'local-directory': { value: 'DIR', describe: 'Directory for spilled results (a fresh skein-worker-* directory is made in it; default: the OS temp directory)' },
  'packages-dir': {
    value: 'DIR',
    describe: "Where the cluster's npm packages and uploads live on this host, one directory per cluster in it (default: SKEIN_PACKAGES_DIR, else <tmpdir>/skein-packages-<uid>)",
  },
  name: { value: 'NAME', describe: 'Name of the worker (default: its address)' },
  resources: { value: 'SPEC', describe: 'Abstract resources, e.g. "GPU=2,MEM=1e9"' },
  interface: { value: 'NIC', describe: 'Network interface to listen on and advertise, e.g. eth0' },
  host: { value: 'HOST', describe: 'Host to listen on (default 0.0.0.0)' },
  port: { value: 'PORT', describe: 'Port to listen on (default 0: any free port)' },
  'death-timeout': { value: 'SECONDS', describe: 'Seconds to keep trying to reach a lost scheduler' },
  'max-message-size': { value: 'SIZE', describe: 'Largest gRPC request the worker accepts, e.g. 64MiB (default); values leave in replies, which this does not limit' },
  'bulk-idle-timeout': { value: 'SECONDS', describe: 'Close a bulk-transfer connection that has not sent its token within this long (default 5)' },
  'nanny-address': { value: 'ADDRESS', describe: 'Address of the nanny supervising this worker (set by skein-nanny)' },
  module: { value: 'FILE', describe: 'ES module whose exported functions are registered', repeatable: true },
  preload: { value: 'MODULE', describe: 'Module whose exported setup(ctx) runs at start and teardown(ctx) at close (a path or package; Dask\'s --preload)', repeatable: true },
  validate: { describe: 'Check state invariants after every event (slow; default SKEIN_VALIDATE=1)' },
  'scheduler-file': { value: 'FILE', describe: "Read the scheduler's address from FILE (written by skein scheduler --scheduler-file), waiting up to the death timeout for it to appear" },
  'ready-json': { describe: 'Print one JSON line {"event":"ready","role":"worker",...} on stdout once registered (also SKEIN_READY_JSON=1)' },
  'tls-ca-file': { value: 'FILE', describe: 'CA certificate (PEM) of the cluster; with --tls-cert and --tls-key: mutual TLS on every link, tls:// addresses (env SKEIN_TLS_CA_FILE)' },
  'tls-cert': { value: 'FILE', describe: "This worker's certificate (PEM), signed by the CA (env SKEIN_TLS_CERT)" },
  'tls-key': { value: 'FILE', describe: "This worker's private key (PEM) (env SKEIN_TLS_KEY)" },
  'auth-token-file': { value: 'FILE', describe: "File holding the cluster's shared token (env SKEIN_AUTH_TOKEN_FILE; SKEIN_AUTH_TOKEN: the token itself)" },
  'require-encryption': { describe: 'Refuse to run without TLS (env SKEIN_REQUIRE_ENCRYPTION=1)' },
  help: { describe: 'Show this help', short: 'h' },
} as const satisfies Record<string, Flag>;

type FlagName = keyof typeof FLAGS;

/** The help text of `skein-worker` (`--help`). */
function workerUsage(): string {
  const rows = Object.entries(FLAGS).map(([name, f]: [string, Flag]) => [
    `${f.short ? `-${f.short}, ` : ''}--${name}${f.value ? ` ${f.value}` : ''}`,
    f.describe + (f.repeatable ? ' (repeatable)' : ''),
  ]);
  const width = Math.max(...rows.map(([flag]) => flag!.length));
  return [
    'Usage: skein-worker <scheduler> [options]',
    '       skein-worker --scheduler-file FILE [options]',
    '',
    'Start a Skein worker and register it with the scheduler at <scheduler> (tcp://HOST:PORT, or tls://HOST:PORT with --tls-*).',
    '',
    'Options:',
    ...rows.map(([flag, text]) => `  ${flag!.padEnd(width)}  ${text}`),
  ].join('\n');
}

/** What the flags of `skein-worker` ask for: the worker's options and how the CLI finds the scheduler and reports readiness. */
export interface WorkerCliOptions extends WorkerOptions {
  /** Read the scheduler's address from this file, waiting for it (`scheduler` is '' until then). */
  schedulerFile?: string;
  /** Print the JSON ready line (`--ready-json`). */
  readyJson?: boolean;
}

/** Parses the flags of `skein-worker` into WorkerOptions (throws InvalidArgumentError on bad input). */
export function parseWorkerArgs(argv: string[]): WorkerCliOptions | 'help' {
  const { values, positionals, tokens } = parseArgs({
    args: argv,
    options: Object.fromEntries(
      Object.entries(FLAGS).map(([name, f]: [string, Flag]) => [
        name,
        { type: f.value ? 'string' : 'boolean', multiple: f.repeatable === true, ...(f.short ? { short: f.short } : {}) },
      ]),
    ),
    allowPositionals: true,
    // Checked below, for messages that name the flag the way it was written.
    strict: false,
    tokens: true,
  });
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    if (!Object.hasOwn(FLAGS, t.name)) throw new InvalidArgumentError(`Unknown argument: ${t.name}`);
    const flag: Flag = FLAGS[t.name as FlagName];
    // Without strict mode parseArgs takes `--name --port` as the name "--port".
    if (flag.value && (t.value === undefined || (!t.inlineValue && t.value.startsWith('--')))) {
      throw new InvalidArgumentError(`${t.rawName} needs a value (${flag.value}).`);
    }
  }
  if (values['help']) return 'help';
  const schedulerFile = values['scheduler-file'];
  if (typeof schedulerFile === 'string' && positionals.length > 0) {
    throw new InvalidArgumentError(`Give either a scheduler address or --scheduler-file, not both (got ${positionals.join(' ')} and --scheduler-file ${schedulerFile}).`);
  }
  if (positionals.length === 0 && typeof schedulerFile !== 'string') {
    throw new InvalidArgumentError('Missing the scheduler address, e.g. skein-worker tcp://10.0.0.5:8786 (or --scheduler-file FILE)');
  }
  if (positionals.length > 1) throw new InvalidArgumentError(`Give exactly one scheduler address, got ${positionals.join(' ')}`);
  const text = (name: FlagName): string | undefined => {
    const v = values[name];
    return typeof v === 'string' ? v : undefined;
  };
  const num = (name: FlagName): number | undefined => {
    const v = text(name);
    if (v === undefined) return undefined;
    const n = v.trim() === '' ? NaN : Number(v);
    if (Number.isNaN(n)) throw new InvalidArgumentError(`--${name} must be a number.`);
    return n;
  };
  const frac = (name: FlagName) => {
    const v = text(name);
    return v === undefined ? undefined : parseMemoryFraction(v, `--${name}`);
  };
  const security = Security.fromFlags({
    tlsCaFile: text('tls-ca-file'),
    tlsCert: text('tls-cert'),
    tlsKey: text('tls-key'),
    authTokenFile: text('auth-token-file'),
    requireEncryption: values['require-encryption'] === true,
  });
  const deathTimeout = num('death-timeout');
  const bulkIdle = num('bulk-idle-timeout');
  const resources = text('resources');
  const modules = values['module'];
  const preload = values['preload'];
  return {
    scheduler: positionals[0] ?? '',
    ...(typeof schedulerFile === 'string' ? { schedulerFile } : {}),
    ...(values['ready-json'] ? { readyJson: true } : {}),
    nthreads: num('nthreads') ?? 1,
    memoryLimit: text('memory-limit') ?? 'auto',
    memoryTargetFraction: frac('memory-target-fraction'),
    memorySpillFraction: frac('memory-spill-fraction'),
    memoryPauseFraction: frac('memory-pause-fraction'),
    localDirectory: text('local-directory'),
    packagesDir: text('packages-dir'),
    name: text('name'),
    resources: resources === undefined ? undefined : parseResources(resources),
    interface: text('interface'),
    host: text('host') ?? '0.0.0.0',
    port: num('port') ?? 0,
    deathTimeoutMs: deathTimeout === undefined ? undefined : deathTimeout * 1000,
    modules: Array.isArray(modules) ? modules.filter((m): m is string => typeof m === 'string') : undefined,
    ...(Array.isArray(preload) ? { preload: preload.filter((m): m is string => typeof m === 'string') } : {}),
    nannyAddress: text('nanny-address'),
    ...(text('max-message-size') !== undefined ? { maxMessageBytes: text('max-message-size') } : {}),
    ...(bulkIdle !== undefined ? { bulkIdleTimeoutMs: Math.round(bulkIdle * 1000) } : {}),
    validate: values['validate'] === true ? true : undefined,
    ...(security.enabled ? { security } : {}),
  };
}

/**
 * Runs `skein-worker` with the given arguments (without the program name) until the worker
 * closes. Resolves to the process exit code: 0 after SIGINT/SIGTERM or the loss of its nanny
 * (graceful retire), 1 on bad input, 3 when the scheduler is lost for --death-timeout, 4 when the
 * scheduler removed the worker, 5 after an internal error (a bug in Skein: the worker closed
 * rather than run on in an unknown state). Errors are printed as one line on stderr.
 */
export async function runWorkerCli(argv: string[], io: CliIO = defaultIO): Promise<number> {
  // A log line to a nanny that was killed must not crash the worker (EPIPE).
  if (io === defaultIO) guardStdio();
  let worker: Worker | undefined;
  let underNanny: boolean;
  let readyJson = false;
  // Installed before anything starts: a signal while the worker waits for its scheduler file or
  // registers stops it cleanly (exit 0) instead of killing it half-started.
  const starting = new AbortController();
  let stopping = false;
  const retire = (why: string) => {
    if (stopping) return;
    stopping = true;
    io.stderr(`skein-worker: ${why}, retiring`);
    if (worker) worker.retire().catch(() => undefined);
    else starting.abort();
  };
  const off = (io.onSignal ?? processSignals)((signal) => retire(`${signal} received`));
  try {
    const opts = parseWorkerArgs(argv);
    if (opts === 'help') {
      off();
      io.stdout(workerUsage());
      return 0;
    }
    underNanny = Boolean(opts.nannyAddress);
    readyJson = readyJsonWanted(opts.readyJson);
    const { schedulerFile, readyJson: _readyJson, ...workerOptions } = opts;
    if (schedulerFile) {
      const waitMs = opts.deathTimeoutMs ?? skeinDefaults().deathTimeoutMs;
      io.stderr(`skein-worker: waiting for the scheduler file ${schedulerFile} (up to ${waitMs / 1000} s)`);
      workerOptions.scheduler = (await waitForSchedulerFile(schedulerFile, waitMs, { signal: starting.signal })).address;
    }
    // The worker process's own imports (client.run, --module, plugins) fall back to the cluster's packages too.
    installResolveHook(packageDirsBuffer());
    worker = await Worker.start(workerOptions);
  } catch (err) {
    off();
    // Stopped by a signal before it was started: nothing to retire.
    if (stopping) return 0;
    io.stderr(`skein-worker: ${oneLine(err)}`);
    return 1;
  }
  // A signal that came while it registered: retire now that there is a worker to retire.
  if (stopping) worker.retire().catch(() => undefined);
  // Orphaned (its nanny was killed): leave gracefully, so the scheduler moves this worker's
  // results to peers instead of losing them with the process.
  const unwatch = underNanny ? watchParent((ppid) => retire(`its nanny (process ${ppid}) is gone`)) : () => undefined;
  // Printed once registered (the signal handlers were installed before the start): a supervisor
  // may stop the worker at any time and gets a graceful retire.
  io.stdout(`Start worker at:  ${worker.address}`);
  io.stdout(`Registered to:    ${worker.schedulerAddress}`);
  if (readyJson) {
    io.stdout(readyLine({ event: 'ready', role: 'worker', address: worker.address, scheduler: worker.schedulerAddress, name: worker.name, pid: process.pid, tls: worker.address.startsWith('tls://') }));
  }
  try {
    const closed = await worker.closed;
    if (closed.error) {
      io.stderr(`skein-worker: ${oneLine(closed.error)}`);
      if (closed.error.code === 'not_found') return EXIT_REMOVED;
      if (closed.error.code === 'internal') return EXIT_INTERNAL_ERROR;
      return closed.error.code === 'unavailable' ? EXIT_SCHEDULER_LOST : 1;
    }
    return 0;
  } finally {
    off();
    unwatch();
  }
}

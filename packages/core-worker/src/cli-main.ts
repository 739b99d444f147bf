/** The `skein-worker` command line: yargs → WorkerOptions → Worker; all logic is in the library. */
import yargs from 'yargs';
import { SkeinError } from '@skein/common';
import { Worker } from './worker.js';
import { parseMemoryFraction, parseResources, type WorkerOptions } from './options.js';

/** Exit code of a worker that lost its scheduler and gave up after --death-timeout (nannies stop then). */
export const EXIT_SCHEDULER_LOST = 3;

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

/** Parses the flags of `skein-worker` into WorkerOptions (throws on bad input). */
export async function parseWorkerArgs(argv: string[], scriptName = 'skein-worker'): Promise<WorkerOptions | 'help'> {
  const y = yargs(argv)
    .scriptName(scriptName)
    .usage('$0 <scheduler> [options]\n\nStart a Skein worker and register it with the scheduler at <scheduler> (tcp://HOST:PORT).')
    .option('nthreads', { type: 'number', describe: 'Task threads', default: 1 })
    .option('memory-limit', { type: 'string', describe: "Memory limit: '4GB', a fraction of the machine ('0.5') or 'auto'", default: 'auto' })
    .option('memory-target-fraction', { type: 'string', describe: 'Spill LRU results when results in memory pass this fraction of the limit (0/false: off; default 0.6)' })
    .option('memory-spill-fraction', { type: 'string', describe: 'Spill LRU results when process memory passes this fraction of the limit (0/false: off; default 0.7)' })
    .option('memory-pause-fraction', { type: 'string', describe: 'Start no new tasks while process memory is past this fraction of the limit (0/false: off; default 0.8)' })
    .option('local-directory', { type: 'string', describe: 'Directory for spilled results (a fresh skein-worker-* directory is made in it; default: the OS temp directory)' })
    .option('name', { type: 'string', describe: 'Name of the worker (default: its address)' })
    .option('resources', { type: 'string', describe: 'Abstract resources, e.g. "GPU=2,MEM=1e9"' })
    .option('interface', { type: 'string', describe: 'Network interface to listen on and advertise, e.g. eth0' })
    .option('host', { type: 'string', describe: 'Host to listen on', default: '0.0.0.0' })
    .option('port', { type: 'number', describe: 'Port to listen on (0: any free port)', default: 0 })
    .option('death-timeout', { type: 'number', describe: 'Seconds to keep trying to reach a lost scheduler' })
    .option('nanny-address', { type: 'string', describe: 'Address of the nanny supervising this worker (set by skein-nanny)' })
    .option('module', { type: 'string', array: true, describe: 'ES module whose exported functions are registered (repeatable)' })
    .demandCommand(1, 1, 'Missing the scheduler address, e.g. skein-worker tcp://10.0.0.5:8786', 'Give exactly one scheduler address')
    .strict()
    .fail(false)
    .exitProcess(false)
    .help()
    .version(false)
    .wrap(null);
  const a = await y.parseAsync();
  if (a['help']) return 'help';
  const num = (v: unknown, flag: string): number | undefined => {
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || Number.isNaN(v)) throw new SkeinError('invalid_argument', `--${flag} must be a number.`);
    return v;
  };
  const deathTimeout = num(a['death-timeout'], 'death-timeout');
  const frac = (flag: string): number | false | undefined => {
    const v = a[flag];
    return v === undefined ? undefined : parseMemoryFraction(String(v), `--${flag}`);
  };
  return {
    scheduler: String(a._[0]),
    nthreads: num(a.nthreads, 'nthreads'),
    memoryLimit: a['memory-limit'],
    memoryTargetFraction: frac('memory-target-fraction'),
    memorySpillFraction: frac('memory-spill-fraction'),
    memoryPauseFraction: frac('memory-pause-fraction'),
    localDirectory: a['local-directory'],
    name: a.name,
    resources: a.resources ? parseResources(a.resources) : undefined,
    interface: a.interface,
    host: a.host,
    port: num(a.port, 'port'),
    deathTimeoutMs: deathTimeout === undefined ? undefined : deathTimeout * 1000,
    modules: a.module?.map(String),
    nannyAddress: a['nanny-address'],
  };
}

/**
 * Runs `skein-worker` with the given arguments (without the program name) until the worker
 * closes. Resolves to the process exit code: 0 after SIGINT/SIGTERM (graceful retire), 1 on bad
 * input or when the scheduler is lost. Errors are printed as one line on stderr.
 */
export async function runWorkerCli(argv: string[], io: CliIO = defaultIO): Promise<number> {
  let worker: Worker;
  try {
    const opts = await parseWorkerArgs(argv);
    if (opts === 'help') return 0;
    worker = await Worker.start(opts);
  } catch (err) {
    io.stderr(`skein-worker: ${oneLine(err)}`);
    return 1;
  }
  let stopping = false;
  const off = (io.onSignal ?? processSignals)((signal) => {
    if (stopping) return;
    stopping = true;
    io.stderr(`skein-worker: ${signal} received, retiring`);
    worker.retire().catch(() => undefined);
  });
  // Printed only once the signal handlers are in place, so a supervisor that stops the worker
  // right after reading these lines gets a graceful retire.
  io.stdout(`Start worker at:  ${worker.address}`);
  io.stdout(`Registered to:    ${worker.schedulerAddress}`);
  try {
    const closed = await worker.closed;
    if (closed.error) {
      io.stderr(`skein-worker: ${oneLine(closed.error)}`);
      return closed.error.code === 'unavailable' ? EXIT_SCHEDULER_LOST : 1;
    }
    return 0;
  } finally {
    off();
  }
}

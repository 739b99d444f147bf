import { resolve as resolvePath } from 'node:path';
// Light imports only: the worker process is started before gRPC and the nanny's own code load.
import {
  contactHost,
  formatAddress,
  guardStdio,
  interfaceAddress,
  parseAddress,
  parseMemoryLimit,
  readyJsonWanted,
  readyLine,
  resolveModuleArg,
  SECURITY_ENV,
  securityFlagArgs,
  skeinDefaults,
  type SecurityFlags,
  toSkeinError,
  waitForSchedulerFile,
} from '@skein/common/lite';
import type { Nanny, NannyOptions } from './nanny.js';
import { workerDeathTimeoutMs } from './policy.js';
import { reservePort, spawnWorker } from './spawn.js';

const USAGE = `Usage: skein-nanny <scheduler> [nanny options] [worker options]
       skein-nanny --scheduler-file FILE [nanny options] [worker options]

Start a worker under a nanny. The nanny restarts the worker when it crashes and kills it when its
memory passes the terminate threshold. Worker options are those of skein-worker.

Nanny options:
  --nanny-port N            port of the nanny's own service (default: any free port)
  --terminate-fraction F    kill the worker past F × its memory limit (default 0.95; 0 turns it off)
  --memory-limit LIMIT      the worker's memory limit: 4GB, 0.5 (of the machine) or auto
  --scheduler-file FILE     read the scheduler's address from FILE (skein scheduler --scheduler-file),
                            waiting up to the worker's death timeout for it to appear
  --preload-nanny MODULE    a module whose exported setup(ctx) runs in the nanny before it starts the
                            worker, and teardown(ctx) at close (repeatable; --preload is the worker's)
  --ready-json              print one JSON line {"event":"ready","role":"worker",...} on stdout once the
                            worker has registered (also SKEIN_READY_JSON=1)

Security (for the nanny and its worker; each flag falls back to its environment variable):
  --tls-ca-file FILE        CA certificate (PEM) of the cluster (SKEIN_TLS_CA_FILE); with --tls-cert and
                            --tls-key: mutual TLS on every link, tls:// addresses
  --tls-cert FILE           certificate (PEM) for the nanny and its worker, signed by the CA (SKEIN_TLS_CERT)
  --tls-key FILE            its private key (PEM) (SKEIN_TLS_KEY)
  --auth-token-file FILE    file holding the cluster's shared token (SKEIN_AUTH_TOKEN_FILE; SKEIN_AUTH_TOKEN:
                            the token itself)
  --require-encryption      refuse to run without TLS (SKEIN_REQUIRE_ENCRYPTION=1)
`;

/** What skein-nanny's flags ask for: the nanny's options, and how the CLI finds the scheduler and reports readiness. */
export interface NannyCliOptions extends NannyOptions {
  /** Read the scheduler's address from this file, waiting for it (`scheduler` is '' until then). */
  schedulerFile?: string;
  /** Print the JSON ready line (`--ready-json`). */
  readyJson?: boolean;
  /** The security flags (files, unread): the nanny and its worker both use them. */
  securityFlags?: SecurityFlags;
}

/** The skein-worker flags that take no value (--help and --ready-json are the nanny's own). */
const WORKER_SWITCHES: ReadonlySet<string> = new Set(['--validate']);

/** Splits argv into the nanny's options and the flags passed to the worker unchanged. */
export function parseNannyArgs(argv: string[]): NannyCliOptions | 'help' {
  const workerArgs: string[] = [];
  let scheduler: string | undefined;
  const opts: Partial<NannyCliOptions> = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const [flag, inline] = arg.startsWith('--') && arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined];
    const value = () => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new Error(`${flag} needs a value`);
      return v;
    };
    switch (flag) {
      case '--help':
      case '-h':
        return 'help';
      case '--nanny-port': {
        const v = value();
        const port = Number(v);
        if (!/^\d+$/.test(v) || port > 65535) throw new Error(`--nanny-port must be a number from 0 to 65535, got "${v}"`);
        opts.port = port;
        break;
      }
      case '--terminate-fraction': {
        const v = Number(value());
        if (!(v >= 0 && v <= 1)) throw new Error('--terminate-fraction must be between 0 and 1');
        opts.terminateFraction = v === 0 ? false : v;
        break;
      }
      case '--memory-limit':
        opts.memoryLimit = value();
        break;
      case '--scheduler-file':
        opts.schedulerFile = value();
        break;
      case '--ready-json':
        opts.readyJson = true;
        break;
      case '--preload-nanny': {
        const v = value();
        (opts.preload ??= []).push(resolveModuleArg(v));
        break;
      }
      case '--tls-ca-file':
        (opts.securityFlags ??= {}).tlsCaFile = value();
        break;
      case '--tls-cert':
        (opts.securityFlags ??= {}).tlsCert = value();
        break;
      case '--tls-key':
        (opts.securityFlags ??= {}).tlsKey = value();
        break;
      case '--auth-token-file':
        (opts.securityFlags ??= {}).authTokenFile = value();
        break;
      case '--require-encryption':
        (opts.securityFlags ??= {}).requireEncryption = true;
        break;
      case '--host':
      case '--interface': {
        const v = value();
        if (flag === '--host') opts.host = v;
        else opts.interface = v;
        workerArgs.push(flag, v);
        break;
      }
      default:
        if (!arg.startsWith('-') && scheduler === undefined) {
          scheduler = arg;
          parseAddress(scheduler);
        } else {
          workerArgs.push(arg);
          // Every other skein-worker flag takes a value: `--death-timeout 5` passes on whole,
          // and 5 is not taken for the scheduler address.
          const next = argv[i + 1];
          if (arg.startsWith('--') && !WORKER_SWITCHES.has(arg) && inline === undefined && next !== undefined && !next.startsWith('--')) workerArgs.push(argv[++i]!);
        }
    }
  }
  if (scheduler && opts.schedulerFile) throw new Error(`give either a scheduler address or --scheduler-file, not both (got ${scheduler} and --scheduler-file ${opts.schedulerFile})`);
  if (!scheduler && !opts.schedulerFile) throw new Error('missing the scheduler address, e.g. skein-nanny tcp://10.0.0.5:8786 (or --scheduler-file FILE)');
  return { ...opts, scheduler: scheduler ?? '', workerArgs };
}

/** Runs `skein-nanny` until it stops; resolves to the exit code. */
export async function runNannyCli(argv: string[]): Promise<number> {
  // Its own log lines and its worker's, to a reader that is gone, must not crash the nanny (EPIPE).
  guardStdio();
  let options: NannyCliOptions | 'help';
  try {
    options = parseNannyArgs(argv);
  } catch (err) {
    process.stderr.write(`skein-nanny: ${toSkeinError(err).message.replace(/\.$/, '')}. Run skein-nanny --help for the options.\n`);
    return 2;
  }
  if (options === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  // Signal handlers first: a stop requested while the worker starts still stops both cleanly.
  let nanny: Nanny | undefined;
  let child: ReturnType<typeof spawnWorker> | undefined;
  let stopSignal: string | undefined;
  // (the nanny's `done` still resolves: its close runs every step even when one fails)
  const closeFailed = (err: unknown) => process.stderr.write(`skein-nanny: closing failed: ${toSkeinError(err).message}\n`);
  const onSignal = (signal: string) => {
    if (stopSignal) return;
    stopSignal = signal;
    process.stderr.write(`skein-nanny: received ${signal}, closing\n`);
    if (nanny) void nanny.close().catch(closeFailed);
    else child?.kill('SIGTERM');
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const { schedulerFile, readyJson, securityFlags, ...nannyOptions } = options;
  try {
    if (schedulerFile) {
      const waitMs = workerDeathTimeoutMs(nannyOptions.workerArgs ?? []) ?? skeinDefaults().deathTimeoutMs;
      process.stderr.write(`skein-nanny: waiting for the scheduler file ${schedulerFile} (up to ${waitMs / 1000} s)\n`);
      const abort = new AbortController();
      const onStop = () => abort.abort();
      process.once('SIGINT', onStop);
      process.once('SIGTERM', onStop);
      try {
        nannyOptions.scheduler = (await waitForSchedulerFile(schedulerFile, waitMs, { signal: abort.signal })).address;
      } finally {
        process.off('SIGINT', onStop);
        process.off('SIGTERM', onStop);
      }
    }
    options = nannyOptions;
    const host = options.interface ? interfaceAddress(options.interface) : (options.host ?? '0.0.0.0');
    const port = options.port ?? (await reservePort(host));
    const memoryLimit = parseMemoryLimit(options.memoryLimit ?? 'auto');
    // The first worker starts before the nanny reads the credentials (gRPC is not loaded yet): it
    // gets them as the nanny did, the same flags and the same environment variables.
    const securityEnv = Object.fromEntries(SECURITY_ENV.flatMap((k) => (process.env[k] ? [[k, process.env[k]!]] : [])));
    // With preload modules the nanny starts the worker itself, after their setup (which may set its environment).
    if (!options.preload?.length) child = spawnWorker({
      scheduler: options.scheduler,
      workerArgs: options.workerArgs ?? [],
      memoryLimit,
      nannyAddress: formatAddress({ host: contactHost(host), port }),
      env: securityEnv,
      credentialArgs: securityFlagArgs(securityFlags ?? {}),
    });
    const [{ Nanny: NannyClass }, { quietGrpcLogs, Security }] = await Promise.all([import('./nanny.js'), import('@skein/common')]);
    quietGrpcLogs();
    const security = Security.fromFlags(securityFlags ?? {});
    const { interface: _nic, ...rest } = options;
    nanny = await NannyClass.start(
      { ...rest, host, port, memoryLimit, security, onWorkerStdout: (line) => process.stdout.write(`${line}\n`) },
      child,
    );
  } catch (err) {
    // (a nanny that failed to start killed its worker itself; credentials it could not read did not get that far)
    if (!nanny) child?.kill('SIGKILL');
    if (stopSignal) return 0;
    process.stderr.write(`skein-nanny: ${toSkeinError(err).message.replace(/\s*\n\s*/g, ' ')}\n`);
    return 1;
  }
  process.stdout.write(`Start nanny at:   ${nanny.address}\n`);
  if (readyJsonWanted(readyJson)) {
    const ready = readyLine({ event: 'ready', role: 'worker', address: nanny.workerAddress, scheduler: nannyOptions.scheduler, name: nanny.workerName, pid: nanny.workerPid, nanny: nanny.address, tls: nanny.address.startsWith('tls://') });
    process.stdout.write(ready + '\n');
  }
  if (stopSignal) void nanny.close().catch(closeFailed);
  const stop = await nanny.done;
  if (stop.code !== 0) process.stderr.write(`skein-nanny: ${stop.reason}\n`);
  return stop.code;
}

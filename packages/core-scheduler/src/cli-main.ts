import { resolve as resolvePath } from 'node:path';
import yargs from 'yargs';
import { SECURITY_FLAGS, Security, SkeinError, guardStdio, resolveModuleArg, readyJsonWanted, readyLine, removeSchedulerFile, toSkeinError, writeSchedulerFile } from '@skein/common';
import { Scheduler } from './server/scheduler.js';

/**
 * `skein-scheduler` / `skein scheduler`: starts a scheduler and runs until SIGINT/SIGTERM.
 * Returns the process exit code.
 */
export async function runSchedulerCli(argv: string[], prog = 'skein-scheduler'): Promise<number> {
  let args: {
    host?: string;
    port: number;
    interface?: string;
    heartbeatMs?: number;
    validate?: boolean;
    dashboardAddress: string;
    dashboard: boolean;
    schedulerFile?: string;
    readyJson: boolean;
    tlsCaFile?: string;
    tlsCert?: string;
    tlsKey?: string;
    authTokenFile?: string;
    requireEncryption?: boolean;
    maxMessageSize?: string;
    idleTimeout?: number;
    maxKeyLength?: number;
    maxKeysPerUpdate?: number;
    preload?: string[];
  };
  let security: Security;
  try {
    let y = yargs(argv)
      .scriptName(prog)
      .usage(`$0 [options]\n\nStart a Skein scheduler. Workers connect with: skein worker tcp://IP:PORT (tls://IP:PORT with --tls-*)`)
      .option('host', { type: 'string', describe: 'Address to listen on (default: all interfaces)' })
      .option('port', { type: 'number', default: 8786, describe: 'Port to listen on (0: any free port)' })
      .option('interface', { type: 'string', describe: 'Listen on this network interface (e.g. eth0, ib0)' })
      .option('heartbeat-ms', { type: 'number', describe: 'Worker heartbeat interval in ms' })
      .option('validate', { type: 'boolean', describe: 'Check state invariants after every event (slow; default SKEIN_VALIDATE=1)' })
      .option('dashboard-address', { type: 'string', default: ':8787', describe: "Dashboard address, ':PORT' or 'HOST:PORT' (a busy port falls back to a free one)" })
      .option('dashboard', { type: 'boolean', default: true, describe: 'Serve the dashboard (--no-dashboard: none)' })
      .option('scheduler-file', { type: 'string', describe: 'Write the address (JSON: address, dashboard, id, pid) to this file; workers started with --scheduler-file FILE read it' })
      .option('idle-timeout', { type: 'number', describe: 'Close after this many seconds with no client connected and no task to run (default: never)' })
      .option('max-message-size', { type: 'string', describe: 'Largest gRPC message accepted from clients and workers, e.g. 64MiB (default); bigger ones are refused with RESOURCE_EXHAUSTED' })
      .option('max-key-length', { type: 'number', describe: 'Longest task key accepted, in characters (default 8192); a graph update with a longer one is refused' })
      .option('max-keys-per-update', { type: 'number', describe: 'Most keys one graph update may hold (default 1000000); a bigger update is refused' })
      .option('preload', { type: 'string', array: true, describe: "Module whose exported setup(ctx) runs once the scheduler listens and teardown(ctx) at close (a path or package; repeatable; Dask's --preload)" })
      .option('ready-json', { type: 'boolean', default: false, describe: `Print one JSON line {"event":"ready",...} on stdout once ready (also SKEIN_READY_JSON=1)` });
    for (const f of SECURITY_FLAGS) y = y.option(f.flag, { type: f.value ? 'string' : 'boolean', describe: `${f.describe} (env ${f.env})` });
    args = await y
      .strict()
      .help()
      .version(false)
      .exitProcess(false)
      .fail((msg, err) => {
        throw new SkeinError('invalid_argument', msg || err?.message || 'bad arguments');
      })
      .parseAsync();
  } catch (err) {
    process.stderr.write(`${prog}: ${(err as Error).message}. Run ${prog} --help for the options.\n`);
    return 2;
  }
  if ((args as { help?: boolean }).help) return 0;
  try {
    security = Security.fromFlags(args);
  } catch (err) {
    process.stderr.write(`${prog}: ${toSkeinError(err).message}\n`);
    return 2;
  }
  if (Number.isNaN(args.port)) {
    process.stderr.write(`${prog}: --port must be a number from 0 to 65535.\n`);
    return 2;
  }
  if (args.idleTimeout !== undefined && !(args.idleTimeout > 0)) {
    process.stderr.write(`${prog}: --idle-timeout must be a number of seconds above 0, got ${args.idleTimeout}.\n`);
    return 2;
  }
  let onIdle: (() => void) | undefined;
  // A log line to a reader that is gone (a closed terminal or pipe) must not crash the scheduler.
  guardStdio();
  let scheduler: Scheduler;
  try {
    scheduler = await Scheduler.start({
      host: args.host,
      port: args.port,
      interface: args.interface,
      heartbeatMs: args.heartbeatMs,
      validate: args.validate,
      dashboardAddress: args.dashboard ? String(args.dashboardAddress) : null,
      idleTimeoutMs: args.idleTimeout === undefined ? null : args.idleTimeout * 1000,
      onIdleTimeout: () => onIdle?.(),
      maxMessageBytes: args.maxMessageSize,
      maxKeyLength: args.maxKeyLength,
      maxKeysPerUpdate: args.maxKeysPerUpdate,
      ...(args.preload?.length ? { preload: args.preload.map((m) => resolveModuleArg(m)) } : {}),
      security,
    });
  } catch (err) {
    process.stderr.write(`${prog}: ${toSkeinError(err).message}\n`);
    return 1;
  }
  const schedulerFile = args.schedulerFile;
  const identity = { address: scheduler.address, dashboard: scheduler.dashboardLink, id: scheduler.id, pid: process.pid };
  if (schedulerFile) {
    try {
      writeSchedulerFile(schedulerFile, identity);
    } catch (err) {
      process.stderr.write(`${prog}: ${toSkeinError(err).message}\n`);
      await scheduler.close().catch(() => undefined);
      return 1;
    }
  }
  return await new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      process.stderr.write(`${prog}: ${signal.startsWith('SIG') ? `received ${signal}` : signal}, closing\n`);
      if (schedulerFile) removeSchedulerFile(schedulerFile, scheduler.id);
      scheduler.close().then(
        () => resolve(0),
        (err) => {
          process.stderr.write(`${prog}: ${toSkeinError(err).message}\n`);
          resolve(1);
        },
      );
    };
    onIdle = () => stop('no client and no task within --idle-timeout');
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
    // Printed once the signal handlers are in place.
    process.stdout.write(`Scheduler at:   ${scheduler.address}\n`);
    if (scheduler.dashboardLink) process.stdout.write(`dashboard at:   ${scheduler.dashboardLink}\n`);
    if (readyJsonWanted(args.readyJson)) process.stdout.write(readyLine({ event: 'ready', role: 'scheduler', ...identity, tls: security.tls }) + '\n');
  });
}

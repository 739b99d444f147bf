import yargs from 'yargs';
import { SECURITY_FLAGS, Security, SkeinError, readyJsonWanted, readyLine, toSkeinError } from '@skein/common';
import { SSHCluster, type SSHClusterOptions } from './ssh-cluster.js';

interface SshArgs {
  hosts: string[];
  sshPort?: number;
  sshUser?: string;
  sshKey?: string;
  sshPasswordEnv?: string;
  knownHosts?: string;
  remoteCommand: string;
  schedulerPort: number;
  nthreads: number;
  memoryLimit?: string;
  nWorkers?: number;
  workDir?: string;
  nanny: boolean;
  readyJson: boolean;
  tlsCaFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  authTokenFile?: string;
  requireEncryption?: boolean;
}

/** Parses `skein-ssh` arguments into SSHCluster options (exported for tests). */
export async function parseSshArgs(argv: string[], prog = 'skein-ssh'): Promise<(SSHClusterOptions & { readyJson?: boolean }) | 'help'> {
  let y = yargs(argv)
    .scriptName(prog)
    .usage(
      `$0 HOST1 HOST2 [HOST3 ...] [options]\n\nStart a Skein cluster over SSH: the scheduler on HOST1, one worker (under a nanny) on each other host.\n` +
        `Runs until Ctrl-C, then stops every remote process.`,
    )
    .command('$0 <hosts..>', false)
    .positional('hosts', { type: 'string', array: true, describe: 'Hosts; the first runs the scheduler' })
    .option('ssh-port', { type: 'number', describe: 'SSH port (default 22)' })
    .option('ssh-user', { type: 'string', describe: 'SSH user name (default: $USER)' })
    .option('ssh-key', { type: 'string', describe: 'Private key file (default: ~/.ssh/id_ed25519, id_ecdsa or id_rsa)' })
    .option('ssh-password-env', { type: 'string', describe: 'Name of an environment variable holding the SSH password' })
    .option('known-hosts', { type: 'string', describe: 'known_hosts file to verify host keys (default ~/.ssh/known_hosts)' })
    .option('remote-command', { type: 'string', default: 'skein', describe: 'How Skein is started on the hosts' })
    .option('scheduler-port', { type: 'number', default: 8786, describe: 'Scheduler port (0: any free port)' })
    .option('nthreads', { type: 'number', default: 1, describe: 'Threads per worker' })
    .option('memory-limit', { type: 'string', describe: "Memory limit per worker: '4GB', '0.5' (of the machine), 'auto'" })
    .option('n-workers', { type: 'number', describe: 'Workers to start (default: one per worker host)' })
    .option('work-dir', { type: 'string', describe: 'Remote working directory (default: the login directory)' })
    .option('nanny', { type: 'boolean', default: true, describe: 'Run workers under a nanny (--no-nanny: bare workers)' })
    .option('ready-json', { type: 'boolean', default: false, describe: 'Print one JSON line {"event":"ready","role":"cluster",...} once the cluster runs (also SKEIN_READY_JSON=1)' });
  for (const f of SECURITY_FLAGS) {
    y = y.option(f.flag, {
      type: f.value ? 'string' : 'boolean',
      describe: `${f.describe} (env ${f.env}). Used by this command and copied to every host (mode 0600, removed at the end)`,
    });
  }
  const args: SshArgs & { help?: boolean } = (await y
    .strict()
    .help()
    .version(false)
    .exitProcess(false)
    .fail((msg, err) => {
      throw new SkeinError('invalid_argument', msg || err?.message || 'bad arguments');
    })
    .parseAsync()) as unknown as SshArgs & { help?: boolean };
  if (args.help) return 'help';
  const security = Security.fromFlags(args);
  let password: string | undefined;
  if (args.sshPasswordEnv) {
    password = process.env[args.sshPasswordEnv];
    if (password === undefined) throw new SkeinError('invalid_argument', `--ssh-password-env names ${args.sshPasswordEnv}, which is not set`);
  }
  return {
    hosts: args.hosts.map(String),
    connectOptions: {
      ...(args.sshUser !== undefined ? { username: args.sshUser } : {}),
      ...(args.sshPort !== undefined ? { port: args.sshPort } : {}),
      ...(args.sshKey !== undefined ? { privateKey: args.sshKey } : {}),
      ...(password !== undefined ? { password } : {}),
      ...(args.knownHosts !== undefined ? { knownHosts: args.knownHosts } : {}),
    },
    schedulerOptions: { port: args.schedulerPort },
    workerOptions: { nthreads: args.nthreads, nanny: args.nanny, ...(args.memoryLimit !== undefined ? { memoryLimit: args.memoryLimit } : {}) },
    remoteCommand: args.remoteCommand,
    ...(args.nWorkers !== undefined ? { nWorkers: args.nWorkers } : {}),
    ...(args.workDir !== undefined ? { workDir: args.workDir } : {}),
    ...(args.readyJson ? { readyJson: true } : {}),
    ...(security.enabled ? { security } : {}),
  };
}

/**
 * `skein-ssh` / `skein ssh`: starts an SSHCluster and runs until SIGINT/SIGTERM, then stops every
 * remote process. Returns the process exit code.
 */
export async function runSshCli(argv: string[], prog = 'skein-ssh'): Promise<number> {
  let options: (SSHClusterOptions & { readyJson?: boolean }) | 'help';
  try {
    options = await parseSshArgs(argv, prog);
  } catch (err) {
    process.stderr.write(`${prog}: ${(err as Error).message}. Run ${prog} --help for the options.\n`);
    return 2;
  }
  if (options === 'help') return 0;
  let cluster: SSHCluster;
  try {
    const { readyJson: _readyJson, ...clusterOptions } = options;
    cluster = await SSHCluster.start(clusterOptions);
  } catch (err) {
    process.stderr.write(`${prog}: ${toSkeinError(err).message}\n`);
    return 1;
  }
  process.stdout.write(`Scheduler at:   ${cluster.schedulerAddress}\n`);
  if (cluster.dashboardLink) process.stdout.write(`Dashboard at:   ${cluster.dashboardLink}\n`);
  const placed = Object.entries(cluster.placement).map(([name, host]) => ({ name, host, address: cluster.workers.get(name)?.address ?? '' }));
  for (const w of placed) process.stdout.write(`Worker ${w.name} on ${w.host}: ${w.address}\n`);
  if (readyJsonWanted(options.readyJson)) {
    process.stdout.write(readyLine({ event: 'ready', role: 'cluster', address: cluster.schedulerAddress, dashboard: cluster.dashboardLink, workers: placed, tls: cluster.security.tls }) + '\n');
  }
  return await new Promise<number>((resolve) => {
    const stop = (signal: string) => {
      process.stderr.write(`${prog}: received ${signal}, stopping the remote processes\n`);
      cluster.close().then(
        () => resolve(0),
        (err: unknown) => {
          process.stderr.write(`${prog}: ${toSkeinError(err).message}\n`);
          resolve(1);
        },
      );
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}

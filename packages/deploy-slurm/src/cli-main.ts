import yargs from 'yargs';
import { SECURITY_FLAGS, Security, SkeinError, readyJsonWanted, readyLine, toSkeinError, type SecurityFlags } from '@skein/common';
import { SLURMCluster, type SLURMClusterOptions } from './slurm.js';

/** What `skein-slurm` runs: the cluster's options and what to do with it. */
export interface SlurmCliPlan {
  options: SLURMClusterOptions;
  /** Jobs to submit at once. */
  jobs: number;
  /** Adaptive bounds in jobs, when --adapt-min or --adapt-max is given. */
  adapt: { minimumJobs: number; maximumJobs: number } | undefined;
  printJobScript: boolean;
  readyJson: boolean;
}

/** Parses `skein-slurm` arguments (exported for tests). */
export async function parseSlurmArgs(argv: string[], prog = 'skein-slurm', env: NodeJS.ProcessEnv = process.env): Promise<SlurmCliPlan | 'help'> {
  let y = yargs(argv)
    .scriptName(prog)
    .usage(
      `$0 --cores N --memory SIZE [options]\n\nStart a Skein scheduler here and workers as Slurm jobs (sbatch). Prints the scheduler's and the dashboard's\n` +
        `addresses, then runs until Ctrl-C (SIGINT) or SIGTERM, and cancels every job it submitted.`,
    )
    .option('cores', { type: 'number', demandOption: true, describe: 'CPU cores per job (threads per worker: cores / processes)' })
    .option('memory', { type: 'string', demandOption: true, describe: 'Memory per job, e.g. 128GB' })
    .option('processes', { type: 'number', default: 1, describe: 'Workers per job' })
    .option('queue', { type: 'string', describe: 'Slurm partition (#SBATCH -p)' })
    .option('account', { type: 'string', describe: 'Account (#SBATCH -A)' })
    .option('walltime', { type: 'string', describe: 'Walltime per job: 00:30:00, 1-00:00:00' })
    .option('interface', { type: 'string', describe: 'Network interface of the workers and the scheduler, e.g. ib0' })
    .option('job-name', { type: 'string', describe: 'Job name (default skein-worker)' })
    .option('job-extra', { type: 'string', array: true, describe: 'More #SBATCH directives, e.g. --job-extra=--exclusive (repeatable)' })
    .option('jobs', { type: 'number', default: 0, describe: 'Jobs to submit at once' })
    .option('adapt-min', { type: 'number', describe: 'Adapt to the load, at least this many jobs' })
    .option('adapt-max', { type: 'number', describe: 'Adapt to the load, at most this many jobs' })
    .option('print-job-script', { type: 'boolean', default: false, describe: 'Print the job script and exit (nothing is submitted)' })
    .option('skein-command', { type: 'string', describe: 'How the jobs start Skein (default: this installation: node …/skein/dist/cli.js)' })
    .option('shared-directory', { type: 'string', describe: 'Directory on the shared file system for job scripts, logs and credentials (default: .)' })
    .option('log-directory', { type: 'string', describe: "Where the jobs' output files go" })
    .option('scheduler-port', { type: 'number', default: 0, describe: 'Scheduler port (0: any free port)' })
    .option('dashboard-address', { type: 'string', default: ':8787', describe: "Dashboard ':PORT' or 'HOST:PORT'" })
    .option('death-timeout', { type: 'number', default: 60, describe: 'Seconds a worker waits for a lost scheduler before its job ends' })
    .option('ready-json', { type: 'boolean', default: false, describe: 'Print one JSON line {"event":"ready","role":"cluster",...} once the scheduler runs (also SKEIN_READY_JSON=1)' });
  for (const f of SECURITY_FLAGS) {
    y = y.option(f.flag, {
      type: f.value ? 'string' : 'boolean',
      describe: `${f.describe} (env ${f.env}). Used by this command, the scheduler and every job (copied into the shared directory, mode 0600, removed at the end)`,
    });
  }
  const a = (await y
    .strict()
    .help()
    .version(false)
    .exitProcess(false)
    .fail((msg, err) => {
      throw new SkeinError('invalid_argument', msg || err?.message || 'bad arguments');
    })
    .parseAsync()) as unknown as Record<string, unknown> & { help?: boolean };
  if (a['help']) return 'help';
  const num = (k: string) => a[k] as number | undefined;
  const str = (k: string) => a[k] as string | undefined;
  for (const k of ['cores', 'processes', 'jobs', 'adapt-min', 'adapt-max', 'scheduler-port', 'death-timeout']) {
    const v = num(k);
    if (v !== undefined && !(Number.isFinite(v) && v >= 0)) throw new SkeinError('invalid_argument', `--${k} must be a number ≥ 0`);
  }
  const adaptMin = num('adapt-min');
  const adaptMax = num('adapt-max');
  const jobs = num('jobs') ?? 0;
  const options: SLURMClusterOptions = {
    cores: num('cores')!,
    memory: str('memory')!,
    processes: num('processes') ?? 1,
    deathTimeout: num('death-timeout') ?? 60,
    schedulerOptions: { port: num('scheduler-port') ?? 0, dashboardAddress: str('dashboard-address') ?? ':8787' },
    ...(str('queue') !== undefined ? { queue: str('queue')! } : {}),
    ...(str('account') !== undefined ? { account: str('account')! } : {}),
    ...(str('walltime') !== undefined ? { walltime: str('walltime')! } : {}),
    ...(str('interface') !== undefined ? { interface: str('interface')! } : {}),
    ...(str('job-name') !== undefined ? { jobName: str('job-name')! } : {}),
    ...(a['job-extra'] !== undefined ? { jobExtraDirectives: (a['job-extra'] as unknown[]).map(String) } : {}),
    ...(str('skein-command') !== undefined ? { skeinCommand: str('skein-command')! } : {}),
    ...(str('shared-directory') !== undefined ? { sharedDirectory: str('shared-directory')! } : {}),
    ...(str('log-directory') !== undefined ? { logDirectory: str('log-directory')! } : {}),
  };
  const security = Security.fromFlags(a as SecurityFlags, env);
  if (security.enabled) options.security = security;
  const adapt =
    adaptMin !== undefined || adaptMax !== undefined
      ? { minimumJobs: adaptMin ?? 0, maximumJobs: adaptMax ?? Math.max(adaptMin ?? 0, jobs, 1) }
      : undefined;
  if (adapt && adapt.maximumJobs < adapt.minimumJobs) throw new SkeinError('invalid_argument', `--adapt-max (${adapt.maximumJobs}) must be ≥ --adapt-min (${adapt.minimumJobs})`);
  return { options, jobs, adapt, printJobScript: a['print-job-script'] === true, readyJson: a['ready-json'] === true };
}

/**
 * `skein-slurm` / `skein slurm`: starts a SLURMCluster, submits `--jobs` jobs (or adapts between
 * `--adapt-min` and `--adapt-max`), prints the addresses, and runs until SIGINT/SIGTERM, then
 * cancels every job it submitted. Returns the process exit code.
 */
export async function runSlurmCli(argv: string[], prog = 'skein-slurm'): Promise<number> {
  let plan: SlurmCliPlan | 'help';
  let cluster: SLURMCluster;
  try {
    plan = await parseSlurmArgs(argv, prog);
    if (plan === 'help') return 0;
    cluster = new SLURMCluster(plan.options);
  } catch (err) {
    process.stderr.write(`${prog}: ${(err as Error).message}. Run ${prog} --help for the options.\n`);
    return 2;
  }
  if (plan.printJobScript) {
    process.stdout.write(cluster.jobScript());
    return 0;
  }
  // Signals that arrive while the scheduler starts or jobs are submitted also cancel the jobs.
  let stopping: ((signal: string) => void) | undefined;
  const early: string[] = [];
  const onSignal = (signal: string) => (stopping ? stopping(signal) : early.push(signal));
  const onInt = () => onSignal('SIGINT');
  const onTerm = () => onSignal('SIGTERM');
  process.on('SIGINT', onInt);
  process.on('SIGTERM', onTerm);
  try {
    try {
      await cluster.start();
      if (plan.adapt) cluster.adapt(plan.adapt);
      else if (plan.jobs > 0) await cluster.scale({ jobs: plan.jobs });
    } catch (err) {
      process.stderr.write(`${prog}: ${toSkeinError(err).message}\n`);
      await cluster.close().catch(() => undefined);
      return 1;
    }
    // The jobs' ids, once submitted (a submission that fails shows in the jobs' status).
    const deadline = Date.now() + 60_000;
    while (cluster.jobIds.size < plan.jobs && cluster.jobs().some((j) => j.status().state === 'pending' && j.status().reason.startsWith('submitting')) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    process.stdout.write(`Scheduler at:   ${cluster.schedulerAddress}\n`);
    if (cluster.dashboardLink) process.stdout.write(`Dashboard at:   ${cluster.dashboardLink}\n`);
    for (const [name, id] of cluster.jobIds) process.stdout.write(`Job ${name}: Slurm job ${id}\n`);
    if (readyJsonWanted(plan.readyJson)) {
      process.stdout.write(readyLine({ event: 'ready', role: 'cluster', address: cluster.schedulerAddress, dashboard: cluster.dashboardLink, workers: [], tls: cluster.security.tls }) + '\n');
    }
    return await new Promise<number>((resolve) => {
      stopping = (signal: string) => {
        stopping = () => undefined;
        process.stderr.write(`${prog}: received ${signal}, cancelling the jobs\n`);
        cluster.close().then(
          () => resolve(0),
          (err: unknown) => {
            process.stderr.write(`${prog}: ${toSkeinError(err).message}\n`);
            resolve(1);
          },
        );
      };
      if (early.length > 0) stopping(early[0]!);
    });
  } finally {
    process.off('SIGINT', onInt);
    process.off('SIGTERM', onTerm);
  }
}

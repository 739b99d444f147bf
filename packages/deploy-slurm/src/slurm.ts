import { JobQueueCluster, type CompiledJobQueueOptions, type JobQueueOptions, type JobState, type JobSystem } from './job-queue.js';
import { InvalidQueueError, JobSubmitError, ResourceRequestError } from './errors.js';
import { InvalidArgumentError } from '@skein/common';
import { formatSlurmTime, parseMemory, slurmMemory } from './units.js';

/** SLURMCluster's own options, besides those of every job-queue cluster. */
export interface SLURMClusterOptions extends JobQueueOptions {
  /** CPUs to ask Slurm for per job (`--cpus-per-task`; default: cores). */
  jobCpu?: number;
  /** Memory to ask Slurm for per job (`--mem`; default: memory). */
  jobMem?: string | number;
}

// Slurm's job states, as squeue prints them (%T).
const PENDING = new Set(['PENDING', 'CONFIGURING', 'REQUEUED', 'REQUEUE_HOLD', 'REQUEUE_FED', 'RESV_DEL_HOLD']);
const RUNNING = new Set(['RUNNING', 'COMPLETING', 'SUSPENDED', 'STOPPED', 'SIGNALING', 'RESIZING', 'STAGE_OUT']);
const DONE = new Set(['COMPLETED']);

/** Slurm: sbatch, scancel, squeue; `#SBATCH` directives (dask-jobqueue's SLURMJob). */
export function slurmSystem(extra: { jobCpu?: number | undefined; jobMem?: string | number | undefined } = {}): JobSystem {
  const jobMem = extra.jobMem === undefined ? undefined : slurmMemory(parseMemory(extra.jobMem, 'jobMem'));
  if (extra.jobCpu !== undefined && !(Number.isInteger(extra.jobCpu) && extra.jobCpu >= 1)) {
    throw new InvalidArgumentError(`jobCpu must be a whole number ≥ 1, got ${extra.jobCpu}.`);
  }
  return {
    name: 'Slurm',
    directive: '#SBATCH',
    header(o: CompiledJobQueueOptions): string[] {
      const h = [`-J ${o.jobName}`, `-o ${o.logDirectory}/${o.jobName}-%j.out`];
      if (o.queue !== undefined) h.push(`-p ${o.queue}`);
      if (o.account !== undefined) h.push(`-A ${o.account}`);
      h.push('-n 1', '-N 1', `--cpus-per-task=${extra.jobCpu ?? o.cores}`, `--mem=${jobMem ?? slurmMemory(o.memoryBytes)}`);
      if (o.walltimeSeconds !== undefined) h.push(`-t ${formatSlurmTime(o.walltimeSeconds)}`);
      return h;
    },
    submit: (path) => ({ argv: ['sbatch', '--parsable', path] }),
    jobId: (stdout) => /^\s*(\d+)/.exec(stdout)?.[1],
    cancel: (ids) => ['scancel', ...ids],
    status: (ids) => ['squeue', '--noheader', '--states=all', `--jobs=${ids.join(',')}`, '--format=%i|%T|%r'],
    parseStatus({ code, stdout, stderr }): Map<string, JobState> {
      const out = new Map<string, JobState>();
      // One job id that Slurm has already forgotten makes squeue fail: none of them is queued.
      if (code !== 0) {
        if (/Invalid job id/i.test(stderr)) return out;
        throw new JobSubmitError('unavailable', 'Slurm', 'squeue', code, stderr.trim(), 'Is slurmctld up (`scontrol ping`)?');
      }
      for (const line of stdout.split('\n')) {
        const [id, raw, reason] = line.trim().split('|');
        if (!id || !raw) continue;
        const state = PENDING.has(raw) ? 'pending' : RUNNING.has(raw) ? 'running' : DONE.has(raw) ? 'done' : 'failed';
        out.set(id, { state, raw, reason: reason ?? '' });
      }
      return out;
    },
    submitError(command, code, message, o): JobSubmitError {
      if (/invalid partition/i.test(message)) return new InvalidQueueError('Slurm', command, code, message, o.queue ?? '(default)');
      if (/Memory specification can not be satisfied|Requested node configuration is not available|More processors requested than permitted|CPU count per node can not be satisfied|time limit/i.test(message)) {
        return new ResourceRequestError('Slurm', command, code, message, `${extra.jobCpu ?? o.cores} CPUs and ${jobMem ?? slurmMemory(o.memoryBytes)} of memory per job`);
      }
      if (/account/i.test(message)) return new JobSubmitError('invalid_argument', 'Slurm', command, code, message, 'Check the account (the account option, --account): `sacctmgr show assoc user=$USER` lists yours.');
      return new JobSubmitError('unavailable', 'Slurm', command, code, message, 'See the message above; `sbatch --test-only` with the job script (cluster.jobScript()) shows what Slurm thinks of it.');
    },
    outputFile(o, jobId) {
      const directive = `-o ${o.logDirectory}/${o.jobName}-%j.out`;
      return o.jobDirectivesSkip.some((skip) => directive.includes(skip)) ? undefined : `${o.logDirectory}/${o.jobName}-${jobId}.out`;
    },
  };
}

/**
 * A Skein cluster on Slurm (dask-jobqueue's SLURMCluster): the scheduler runs here, on the host
 * that submits; each job (`sbatch`) runs `processes` workers under nannies with cores / processes
 * threads and memory / processes each. `scale(n)` counts workers, `scale({ jobs })` jobs;
 * `adapt()` follows the load; `close()` cancels every job it submitted, pending ones too.
 *
 * @example
 * await using cluster = await SLURMCluster.start({ cores: 32, memory: '128GB', queue: 'cpu', walltime: '01:00:00', interface: 'ib0' });
 * await cluster.scale({ jobs: 10 });
 * await using client = await Client.connect(cluster);
 */
export class SLURMCluster extends JobQueueCluster {
  constructor(options: SLURMClusterOptions) {
    super(slurmSystem({ jobCpu: options?.jobCpu, jobMem: options?.jobMem }), options, 'SLURMCluster');
  }

  /** Creates a SLURMCluster and starts its scheduler (and `nWorkers` workers). */
  static start(options: SLURMClusterOptions): Promise<SLURMCluster> {
    return new SLURMCluster(options).start();
  }
}

import { JobQueueCluster, type CompiledJobQueueOptions, type JobQueueOptions, type JobState, type JobSystem } from './job-queue.js';
import { InvalidQueueError, JobSubmitError, ResourceRequestError } from './errors.js';
import { formatHms, pbsMemory } from './units.js';

export interface PBSClusterOptions extends JobQueueOptions {
  /** `#PBS -l` resources (default: `select=1:ncpus=<cores>:mem=<memory>`). */
  resourceSpec?: string;
}

/** qstat's one-letter states. */
const PBS_STATES = new Map<string, JobState['state']>([
  ['Q', 'pending'], ['H', 'pending'], ['W', 'pending'], ['T', 'pending'], ['M', 'pending'],
  ['R', 'running'], ['E', 'running'], ['B', 'running'], ['S', 'running'], ['U', 'running'], ['X', 'done'],
  ['F', 'done'], ['C', 'done'],
]);

/** PBS (PBS Pro, OpenPBS, Torque): qsub, qdel, qstat; `#PBS` directives (dask-jobqueue's PBSJob). */
export function pbsSystem(extra: { resourceSpec?: string | undefined } = {}): JobSystem {
  return {
    name: 'PBS',
    directive: '#PBS',
    header(o: CompiledJobQueueOptions): string[] {
      const h = [`-N ${o.jobName}`];
      if (o.queue !== undefined) h.push(`-q ${o.queue}`);
      if (o.account !== undefined) h.push(`-A ${o.account}`);
      h.push(`-l ${extra.resourceSpec ?? `select=1:ncpus=${o.cores}:mem=${pbsMemory(o.memoryBytes)}`}`);
      if (o.walltimeSeconds !== undefined) h.push(`-l walltime=${formatHms(o.walltimeSeconds)}`);
      h.push('-j oe', `-o ${o.logDirectory}/`);
      return h;
    },
    submit: (path) => ({ argv: ['qsub', path] }),
    jobId: (stdout) => /(\d+)/.exec(stdout)?.[1],
    cancel: (ids) => ['qdel', ...ids],
    status: (ids) => ['qstat', '-x', ...ids],
    parseStatus({ code, stdout, stderr }): Map<string, JobState> {
      if (code !== 0 && !/Unknown Job Id/i.test(stderr)) throw new JobSubmitError('unavailable', 'PBS', 'qstat', code, stderr.trim(), 'Is the PBS server up?');
      const out = new Map<string, JobState>();
      // Job id  Name  User  Time Use  S  Queue
      for (const line of stdout.split('\n')) {
        const f = line.trim().split(/\s+/);
        const id = /^(\d+)/.exec(f[0] ?? '')?.[1];
        const raw = f[4];
        if (!id || !raw || !PBS_STATES.has(raw)) continue;
        out.set(id, { state: PBS_STATES.get(raw)!, raw, reason: '' });
      }
      return out;
    },
    submitError(command, code, message, o): JobSubmitError {
      if (/Unknown queue/i.test(message)) return new InvalidQueueError('PBS', command, code, message, o.queue ?? '(default)');
      if (/exceeds|resource/i.test(message)) return new ResourceRequestError('PBS', command, code, message, `${o.cores} CPUs and ${pbsMemory(o.memoryBytes)} per job`);
      return new JobSubmitError('unavailable', 'PBS', command, code, message, 'See the message above.');
    },
    outputFile: (o, jobId) => `${o.logDirectory}/${o.jobName}.o${jobId}`,
  };
}

/** A Skein cluster on PBS (dask-jobqueue's PBSCluster). */
export class PBSCluster extends JobQueueCluster {
  constructor(options: PBSClusterOptions) {
    super(pbsSystem({ resourceSpec: options?.resourceSpec }), options, 'PBSCluster');
  }
  static start(options: PBSClusterOptions): Promise<PBSCluster> {
    return new PBSCluster(options).start();
  }
}

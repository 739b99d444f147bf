import { JobQueueCluster, type CompiledJobQueueOptions, type JobQueueOptions, type JobState, type JobSystem } from './job-queue.js';
import { InvalidQueueError, JobSubmitError, ResourceRequestError } from './errors.js';
import { formatLsfTime, lsfMemory, parseMemory } from './units.js';

export interface LSFClusterOptions extends JobQueueOptions {
  /** Slots to ask for (`#BSUB -n`; default: cores). */
  ncpus?: number;
  /** Memory to ask for (`#BSUB -M`; default: memory). */
  mem?: string | number;
  /** The site's LSF_UNIT_FOR_LIMITS (lsf.conf): the unit of `-M` (default 'kb'). */
  lsfUnits?: 'kb' | 'mb' | 'gb' | 'tb';
  /** Submit with `bsub < script` (default true: bsub reads the #BSUB lines only from stdin on many sites) or `bsub script`. */
  useStdin?: boolean;
}

const LSF_STATES = new Map<string, JobState['state']>([
  ['PEND', 'pending'], ['PSUSP', 'pending'], ['WAIT', 'pending'],
  ['RUN', 'running'], ['USUSP', 'running'], ['SSUSP', 'running'], ['PROV', 'running'],
  ['DONE', 'done'], ['EXIT', 'failed'], ['ZOMBI', 'failed'], ['UNKWN', 'failed'],
]);

/** LSF: bsub, bkill, bjobs; `#BSUB` directives (dask-jobqueue's LSFJob). */
export function lsfSystem(extra: { ncpus?: number | undefined; mem?: string | number | undefined; lsfUnits?: 'kb' | 'mb' | 'gb' | 'tb' | undefined; useStdin?: boolean | undefined } = {}): JobSystem {
  const useStdin = extra.useStdin ?? true;
  return {
    name: 'LSF',
    directive: '#BSUB',
    header(o: CompiledJobQueueOptions): string[] {
      const ncpus = extra.ncpus ?? o.cores;
      const h = [`-J ${o.jobName}`, `-o ${o.logDirectory}/${o.jobName}-%J.out`];
      if (o.queue !== undefined) h.push(`-q ${o.queue}`);
      if (o.account !== undefined) h.push(`-P "${o.account}"`);
      h.push(`-n ${ncpus}`);
      if (ncpus > 1) h.push('-R "span[hosts=1]"');
      h.push(`-M ${lsfMemory(extra.mem === undefined ? o.memoryBytes : parseMemory(extra.mem, 'mem'), extra.lsfUnits)}`);
      if (o.walltimeSeconds !== undefined) h.push(`-W ${formatLsfTime(o.walltimeSeconds)}`);
      return h;
    },
    submit: (path) => (useStdin ? { argv: ['bsub'], stdin: true } : { argv: ['bsub', path] }),
    jobId: (stdout) => /<(\d+)>/.exec(stdout)?.[1],
    cancel: (ids) => ['bkill', ...ids],
    status: (ids) => ['bjobs', '-noheader', '-o', 'jobid stat pend_reason delimiter="|"', ...ids],
    parseStatus({ stdout }): Map<string, JobState> {
      // bjobs exits non-zero when one of the jobs is unknown ("Job <n> is not found"), listing the rest.
      const out = new Map<string, JobState>();
      for (const line of stdout.split('\n')) {
        const [id, raw, reason] = line.trim().split('|');
        if (!id || !raw || !LSF_STATES.has(raw)) continue;
        out.set(id, { state: LSF_STATES.get(raw)!, raw, reason: reason === '-' ? '' : (reason ?? '') });
      }
      return out;
    },
    submitError(command, code, message, o): JobSubmitError {
      if (/No such queue/i.test(message)) return new InvalidQueueError('LSF', command, code, message, o.queue ?? '(default)');
      if (/exceeds|MEMLIMIT|too many|Bad resource requirement/i.test(message)) return new ResourceRequestError('LSF', command, code, message, `${extra.ncpus ?? o.cores} slots`);
      return new JobSubmitError('unavailable', 'LSF', command, code, message, 'See the message above.');
    },
    outputFile: (o, jobId) => `${o.logDirectory}/${o.jobName}-${jobId}.out`,
  };
}

/** A Skein cluster on LSF (dask-jobqueue's LSFCluster). */
export class LSFCluster extends JobQueueCluster {
  constructor(options: LSFClusterOptions) {
    super(lsfSystem({ ncpus: options?.ncpus, mem: options?.mem, lsfUnits: options?.lsfUnits, useStdin: options?.useStdin }), options, 'LSFCluster');
  }
  static start(options: LSFClusterOptions): Promise<LSFCluster> {
    return new LSFCluster(options).start();
  }
}

import { JobQueueCluster, type CompiledJobQueueOptions, type JobQueueOptions, type JobState, type JobSystem } from './job-queue.js';
import { InvalidQueueError, JobSubmitError, ResourceRequestError } from './errors.js';
import { formatHms } from './units.js';

export interface SGEClusterOptions extends JobQueueOptions {
  /** `#$ -l` resources (e.g. `h_vmem=24G,mem_req=24G`: the site decides; none by default). */
  resourceSpec?: string;
}

/** Grid Engine (SGE, UGE, OGS): qsub, qdel, qstat; `#$` directives (dask-jobqueue's SGEJob). */
export function sgeSystem(extra: { resourceSpec?: string | undefined } = {}): JobSystem {
  return {
    name: 'SGE',
    directive: '#$',
    header(o: CompiledJobQueueOptions): string[] {
      const h = [`-N ${o.jobName}`];
      if (o.queue !== undefined) h.push(`-q ${o.queue}`);
      if (o.account !== undefined) h.push(`-P ${o.account}`);
      if (extra.resourceSpec !== undefined) h.push(`-l ${extra.resourceSpec}`);
      if (o.walltimeSeconds !== undefined) h.push(`-l h_rt=${formatHms(o.walltimeSeconds)}`);
      h.push(`-o ${o.logDirectory}/`, '-cwd', '-j y');
      return h;
    },
    submit: (path) => ({ argv: ['qsub', path] }),
    jobId: (stdout) => /(\d+)/.exec(stdout)?.[1],
    cancel: (ids) => ['qdel', ...ids],
    status: (_ids, user) => ['qstat', '-u', user],
    parseStatus({ code, stdout, stderr }): Map<string, JobState> {
      if (code !== 0) throw new JobSubmitError('unavailable', 'SGE', 'qstat', code, stderr.trim(), 'Is the qmaster up?');
      const out = new Map<string, JobState>();
      // job-ID  prior  name  user  state  submit/start at  queue  slots
      for (const line of stdout.split('\n')) {
        const f = line.trim().split(/\s+/);
        const id = f[0];
        const raw = f[4];
        if (!id || !/^\d+$/.test(id) || !raw) continue;
        const state = raw.includes('E') ? 'failed' : raw.includes('r') || raw.includes('t') || raw.includes('d') ? 'running' : 'pending';
        out.set(id, { state, raw, reason: '' });
      }
      return out;
    },
    submitError(command, code, message, o): JobSubmitError {
      if (/unknown queue/i.test(message)) return new InvalidQueueError('SGE', command, code, message, o.queue ?? '(default)');
      if (/unknown resource|exceeds|can never run/i.test(message)) return new ResourceRequestError('SGE', command, code, message, extra.resourceSpec ?? `${o.cores} cores`);
      return new JobSubmitError('unavailable', 'SGE', command, code, message, 'See the message above.');
    },
    outputFile: (o, jobId) => `${o.logDirectory}/${o.jobName}.o${jobId}`,
  };
}

/** A Skein cluster on Grid Engine (dask-jobqueue's SGECluster). */
export class SGECluster extends JobQueueCluster {
  constructor(options: SGEClusterOptions) {
    super(sgeSystem({ resourceSpec: options?.resourceSpec }), options, 'SGECluster');
  }
  static start(options: SGEClusterOptions): Promise<SGECluster> {
    return new SGECluster(options).start();
  }
}

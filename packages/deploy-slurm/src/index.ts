/**
 * @module @skein/deploy-slurm
 * Skein on HPC job queues (dask-jobqueue): `SLURMCluster` (and `PBSCluster`, `SGECluster`,
 * `LSFCluster`) runs the scheduler on the submitting host and each worker job as a batch job;
 * `scale` and `adapt` come from `@skein/cluster`. `SlurmRunner` runs a whole cluster inside one
 * allocation (`srun -n 4 node app.js`). Also the `skein-slurm` command (`skein slurm`).
 *
 * @example
 * import { SLURMCluster } from '@skein/deploy-slurm';
 * import { Client } from '@skein/client';
 *
 * await using cluster = await SLURMCluster.start({ cores: 32, memory: '128GB', queue: 'cpu', walltime: '01:00:00', interface: 'ib0' });
 * console.log(cluster.jobScript());         // the exact batch script
 * await cluster.scale({ jobs: 10 });         // ten jobs (scale(n) counts workers)
 * await using client = await Client.connect(cluster);
 * cluster.adapt({ minimum: 0, maximum: 40 });
 */
export { SLURMCluster, slurmSystem, type SLURMClusterOptions } from './slurm.js';
export { PBSCluster, pbsSystem, type PBSClusterOptions } from './pbs.js';
export { SGECluster, sgeSystem, type SGEClusterOptions } from './sge.js';
export { LSFCluster, lsfSystem, type LSFClusterOptions } from './lsf.js';
export {
  JobQueueCluster,
  JobHandle,
  compileJobQueueOptions,
  renderJobScript,
  writeLaunchFiles,
  type JobQueueOptions,
  type CompiledJobQueueOptions,
  type JobQueueSchedulerOptions,
  type JobQueueScale,
  type JobQueueAdaptiveOptions,
  type JobSystem,
  type JobState,
} from './job-queue.js';
export { SlurmRunner, type SlurmRunnerOptions, type RunnerRole } from './runner.js';
export { JobSubmitError, InvalidQueueError, ResourceRequestError, JobQueueCommandNotFoundError, JobEndedError } from './errors.js';
export { parseMemory, parseWalltime, formatSlurmTime, slurmMemory, pbsMemory, lsfMemory } from './units.js';
export { runSlurmCli, parseSlurmArgs } from './cli-main.js';
export { shellQuote, LocalScheduler } from './process.js';

/**
 * @module @skein/nanny
 * Supervises a Skein worker process: memory and CPU sampling, kill past the terminate threshold
 * (95% of the memory limit by default), restart after a crash with back-off, and a gRPC
 * NannyService through which the scheduler restarts or kills the worker.
 *
 * @example
 * import { Nanny } from '@skein/nanny';
 * const nanny = await Nanny.start({ scheduler: 'tcp://127.0.0.1:8786', memoryLimit: '2GB' });
 * console.log(nanny.workerAddress);
 * await nanny.close();
 */
export { Nanny, WORKER_EXIT_INTERNAL_ERROR, WORKER_EXIT_REMOVED, WORKER_EXIT_SCHEDULER_LOST, type NannyOptions, type NannyStatus, type NannyPluginContext } from './nanny.js';
export { RestartPolicy, memoryVerdict, cpuPercent, workerDeathTimeoutMs, type RestartPolicyOptions } from './policy.js';
export { sampleProcess, type ProcSample } from './proc.js';
export { runNannyCli, parseNannyArgs } from './cli-main.js';
export { spawnWorker, reservePort, workerBin, type WorkerSpawnSpec } from './spawn.js';

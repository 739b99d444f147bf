/**
 * @module @skein/cluster
 * The base of every Skein cluster (Dask's SpecCluster and Adaptive). A deployer implements one
 * small interface, `ClusterBackend` (start one scheduler, start one worker, each returning a
 * handle with `address`, `close()`, `logs()` and `exited`); the base reconciles the wanted workers
 * against the running ones, replaces workers that die, and owns `scale`, `adapt` and `close`.
 *
 * @example
 * import { Cluster, type ClusterBackend } from '@skein/cluster';
 *
 * const backend: ClusterBackend = {
 *   startScheduler: () => startMyScheduler(),                 // resolves with { address, close, logs, exited }
 *   startWorker: (name, schedulerAddress) => startMyWorker(name, schedulerAddress),
 * };
 * await using cluster = await new Cluster(backend, { nWorkers: 2 }).start();
 * await cluster.scale(4);                                      // four workers run
 * const adaptive = cluster.adapt({ minimum: 1, maximum: 10 }); // follow the load
 * await adaptive.stop();
 */
export { Cluster, Adaptive, WorkerStartTimeoutError, type ClusterOptions, type ClusterWorkerStatus, type AdaptiveRecord } from './cluster.js';
export {
  decideAdaptive,
  compileAdaptiveOptions,
  type AdaptiveOptions,
  type CompiledAdaptiveOptions,
  type AdaptiveInput,
  type AdaptiveDecision,
} from './adaptive.js';
export { adminControl } from './control.js';
export { workerLaunch, workerFlags, schedulerLaunch, type WorkerLaunchSpec, type SchedulerLaunchSpec, type Launch } from './launch.js';
export {
  SchedulerAdmin,
  type SchedulerAdminOptions,
  type AdminWorkerInfo,
  type WorkerChange,
  type WorkerWatchHandlers,
  type WorkerWatchSubscription,
} from './admin.js';
export type {
  ClusterBackend,
  ProcessHandle,
  SchedulerHandle,
  WorkerHandle,
  SchedulerControl,
  StartWorkerOptions,
  WorkerJob,
  WorkerJobState,
  WorkerJobStatus,
} from './types.js';

/**
 * @module @skein/core-worker
 * The Skein worker: a pure state machine (`WorkerState`), a pool of task threads (`ThreadPool`)
 * and the gRPC shell (`Worker`) that connects them to the scheduler and to peer workers.
 *
 * @example
 * import { Worker } from '@skein/core-worker';
 * const worker = await Worker.start({ scheduler: 'tcp://127.0.0.1:8786', nthreads: 2, modules: ['./tasks.js'] });
 * console.log(worker.address);      // tcp://127.0.0.1:40123
 * await worker.retire();            // hand results to peers, then close
 *
 * @example
 * // The command line, callable from another CLI:
 * import { runWorkerCli } from '@skein/core-worker';
 * process.exitCode = await runWorkerCli(['tcp://10.0.0.5:8786', '--nthreads', '4']);
 */
export { Worker, type WorkerStatus, type WorkerClosed, type WorkerPluginContext } from './worker.js';
export { compileWorkerOptions, parseResources, parseMemoryFraction, type WorkerOptions, type CompiledWorkerOptions } from './options.js';
export { runWorkerCli, parseWorkerArgs, EXIT_SCHEDULER_LOST, EXIT_REMOVED, EXIT_INTERNAL_ERROR, type CliIO } from './cli-main.js';
export { WorkerState, InvalidTransitionError, InvalidStateError, type TaskRecord } from './state/worker-state.js';
export { isSpilled, storedBytes } from './state/types.js';
export {
  memoryDecision,
  DEFAULT_MEMORY_FRACTIONS,
  type MemoryFraction,
  type MemoryFractions,
  type MemoryInputs,
  type MemoryDecision,
} from './state/memory.js';
export type {
  Encoded,
  SpilledValue,
  StoredValue,
  ErrorInfo,
  FunctionSpec,
  TaskCall,
  TaskStateName,
  WorkerEvent,
  ComputeTaskEvent,
  FreeKeysEvent,
  AcquireReplicasEvent,
  StealRequestEvent,
  ExecuteSuccessEvent,
  ExecuteFailureEvent,
  GatherDepSuccessEvent,
  GatherDepFailureEvent,
  PauseChangedEvent,
  DataSpilledEvent,
  DataUnspilledEvent,
  SchedulerLostEvent,
  SchedulerMessage,
  WhoHasEntry,
  WorkerAction,
  ExecuteAction,
  GatherDepAction,
  SendToSchedulerAction,
  ReleaseDataAction,
  RemoveSpilledAction,
  TransitionRecord,
  WorkerStateConfig,
} from './state/types.js';
export { ThreadPool, type ThreadPoolOptions, type PoolTask, type PoolResult } from './runtime/pool.js';
export { createWorkerService, type WorkerServiceBackend, type SpilledSource } from './server/service.js';
export { SpillStore } from './server/spill.js';
export { MainThreadRunner } from './server/run.js';
export { PeerClients, fetchData, type FetchResult } from './server/fetch.js';

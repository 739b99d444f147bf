/**
 * @module @skein/core-scheduler
 * The Skein scheduler: `SchedulerState`, a pure state machine (events in, actions out), and
 * `Scheduler`, the gRPC shell that drives it.
 *
 * @example
 * import { Scheduler } from '@skein/core-scheduler';
 * const scheduler = await Scheduler.start({ host: '127.0.0.1', port: 8786 });
 * console.log(scheduler.address); // tcp://127.0.0.1:8786
 * await scheduler.close();
 */
export { SchedulerState, InvalidTransitionError } from './state/scheduler-state.js';
export { TaskRecord, WorkerRecord, TaskHeap } from './state/records.js';
export type {
  SchedulerEvent,
  FinishedTask,
  SchedulerAction,
  ComputeAction,
  ClientReport,
  TaskDef,
  TaskStateName,
  TransitionRecord,
  WorkerSpec,
  WhoHasInfo,
  ErrorInfo,
  EncodedValue,
  SchedulerStateOptions,
} from './state/types.js';
export {
  Scheduler,
  compileSchedulerOptions,
  parseDashboardAddress,
  type SchedulerOptions,
  type CompiledSchedulerOptions,
} from './server/scheduler.js';
export { SchedulerDashboardSource, type DashboardTarget } from './server/dashboard-source.js';
export { SchedulerTelemetry, GroupStats, type TaskRun, type TaskErrorRecord, type TelemetryOptions } from './state/telemetry.js';
export { runSchedulerCli } from './cli-main.js';
export { SchedulerPlugins, type SchedulerPluginContext, type PluginWorker } from './server/plugins.js';

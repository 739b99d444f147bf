/**
 * Domain types of the scheduler state machine: plain data, no protobuf classes, no I/O.
 * The gRPC shell converts wire messages into these (src/server/convert.ts).
 */
import type { ErrorInfo } from '@skein/common/lite';

/** An encoded value, opaque to the scheduler (bytes plus the encoding tag). */
export interface EncodedValue {
  encoding: number;
  data: Uint8Array;
}

export interface FunctionId {
  /** Registered function name (worker --module), or '' */
  registered: string;
  /** Content hash of an inline JS function, or '' */
  inlineHash: string;
}

/** One task as the client defined it. */
export interface TaskDef {
  key: string;
  fn: FunctionId;
  args: EncodedValue;
  dependencies: string[];
  priority: number;
  retries: number;
  /** Resource name → amount one run holds. Names are user data: a Map, never a plain object. */
  resources: ReadonlyMap<string, number>;
  workers: string[];
  allowOtherWorkers: boolean;
  /** Encoding the client asked for the result (passed to the worker untouched). */
  resultEncoding: number;
  /** The client says the key is pure: derived from this definition (TaskSpec.pure; see pureKeyMatches). */
  pure?: boolean;
}

/** An error as it crosses the wire (the one definition is in @skein/common). */
export type { ErrorInfo };

export interface WhoHasInfo {
  key: string;
  workers: string[];
  nbytes: number;
}

/** Every task state of the scheduler, as in Dask (also the transition log's codes). */
export const TASK_STATES = ['released', 'waiting', 'no-worker', 'queued', 'processing', 'memory', 'erred', 'forgotten'] as const;
export type TaskStateName = (typeof TASK_STATES)[number];

export interface WorkerSpec {
  address: string;
  name: string;
  nthreads: number;
  memoryLimit: number;
  /** Resource name → amount this worker offers. */
  resources: ReadonlyMap<string, number>;
  registeredFunctions: string[];
  held: WhoHasInfo[];
  pid: number;
  nannyAddress: string;
}

export interface WorkerMetrics {
  executing: number;
  ready: number;
  memoryRss: number;
  managedBytes: number;
  spilledBytes: number;
  cpuPercent: number;
  paused: boolean;
}

export interface MetricSample {
  timeMs: number;
  memoryRss: number;
  managedBytes: number;
  spilledBytes: number;
  cpuPercent: number;
  executing: number;
}

// ---------------------------------------------------------------- events

interface Base {
  stimulusId: string;
}

/** A task a worker finished (TaskFinished, or one entry of TasksFinished). */
export interface FinishedTask {
  key: string;
  value: EncodedValue | null;
  nbytes: number;
  typeName: string;
  startMs: number;
  stopMs: number;
}

export type SchedulerEvent =
  | (Base & { type: 'ClientConnected'; client: string })
  | (Base & { type: 'ClientDisconnected'; client: string })
  /**
   * `problem`: the shell found the update malformed (a function whose hash does not match its
   * source, or that this client never sent): it is refused whole, as for the state's own checks.
   */
  | (Base & { type: 'GraphUpdated'; client: string; tasks: TaskDef[]; wanted: string[]; broadcast: string[]; problem?: string })
  | (Base & { type: 'ClientReleasedKeys'; client: string; keys: string[] })
  | (Base & { type: 'ClientCancelledKeys'; client: string; keys: string[] })
  | (Base & { type: 'ClientWantsKeys'; client: string; keys: string[] })
  | (Base & { type: 'WorkerAdded'; worker: WorkerSpec })
  | (Base & { type: 'WorkerRemoved'; worker: string; expected: boolean; reason: string })
  | (Base & FinishedTask & { type: 'TaskFinished'; worker: string })
  /** Many tasks one worker finished: the same as a TaskFinished for each, in order. */
  | (Base & { type: 'TasksFinished'; worker: string; tasks: FinishedTask[] })
  | (Base & { type: 'TaskErred'; worker: string; key: string; error: ErrorInfo; startMs: number; stopMs: number })
  | (Base & { type: 'ReplicasAdded'; worker: string; keys: WhoHasInfo[] })
  | (Base & { type: 'WorkerReleasedKeys'; worker: string; keys: string[] })
  | (Base & { type: 'MissingData'; worker: string; key: string; errant: string })
  | (Base & { type: 'RescheduleRequested'; worker: string; key: string })
  | (Base & { type: 'StealResponse'; worker: string; key: string; state: string })
  | (Base & { type: 'Heartbeat'; worker: string; metrics: WorkerMetrics })
  /** A worker fetched keys from a peer (telemetry only). */
  | (Base & { type: 'TransferDone'; worker: string; source: string; keys: string[]; nbytes: number; startMs: number; stopMs: number })
  | (Base & { type: 'RetireWorkers'; workers: string[]; n: number })
  /** Forget every task (client.restart): wanted keys are reported cancelled. */
  | (Base & { type: 'ClusterRestarted'; reason: string })
  | (Base & { type: 'Tick' });

// ---------------------------------------------------------------- actions

export type ClientReport =
  | { type: 'in-memory'; key: string; value: EncodedValue | null; workers: string[]; nbytes: number; typeName: string }
  | { type: 'erred'; key: string; error: ErrorInfo }
  | { type: 'cancelled'; key: string; reason: string }
  | { type: 'lost'; key: string }
  /**
   * No running worker satisfies the task's restrictions (it waits in no-worker), with the reason;
   * `resolved`: a suitable worker joined and the task runs again.
   */
  | { type: 'no-worker'; key: string; reason: string; resolved: boolean };

export interface ComputeAction {
  type: 'Compute';
  worker: string;
  key: string;
  def: TaskDef;
  whoHas: WhoHasInfo[];
  inlineInputs: Array<[string, EncodedValue]>;
  sequence: number;
  stimulusId: string;
}

export type SchedulerAction =
  | ComputeAction
  | { type: 'FreeKeys'; worker: string; keys: string[]; stimulusId: string }
  | { type: 'AcquireReplicas'; worker: string; whoHas: WhoHasInfo[]; stimulusId: string }
  | { type: 'StealRequest'; worker: string; key: string; stimulusId: string }
  | { type: 'CloseWorker'; worker: string; reason: string; stimulusId: string }
  | { type: 'ReportToClient'; client: string; report: ClientReport; stimulusId: string }
  | { type: 'WorkerRetired'; worker: string; stimulusId: string }
  /**
   * A worker reported on a task it was not given (a result, an error or a replica nobody asked it
   * for): the report was not used and the worker told to drop the key. For the log: a stale
   * report from a worker that reconnected, or a forged one.
   */
  | { type: 'ReportRefused'; worker: string; key: string; report: 'TaskFinished' | 'TaskErred' | 'ReplicasAdded'; reason: string; stimulusId: string }
  /**
   * Handling the event threw (a bug in Skein): the event's pending recommendations were dropped
   * and the tasks it touched failed with an InternalError (`failed` of them). For the log.
   */
  | { type: 'StateError'; event: SchedulerEvent['type']; message: string; stack: string; failed: number; stimulusId: string };

export interface TransitionRecord {
  key: string;
  start: TaskStateName;
  finish: TaskStateName;
  stimulusId: string;
  timeMs: number;
  worker: string;
}

export interface SchedulerStateOptions {
  /** Injected clock (ms). */
  now: () => number;
  /** Tasks per thread a worker gets before root tasks queue on the scheduler. */
  workerSaturation: number;
  /** Values up to this size are kept by the scheduler and sent inline. */
  inlineBytes: number;
  /** Deaths of workers running a task before it fails with KilledWorker. */
  allowedFailures: number;
  /** A worker silent this long is removed on Tick. */
  workerTtlMs: number;
  /** Transition log capacity. */
  logSize: number;
  /** Run validateState after every handle() (tests). */
  validate: boolean;
  /**
   * Dask's no-workers-timeout: a task unrunnable (no-worker) this long, or queued while no worker
   * has been running this long, fails (checked on Tick). Infinity: never.
   */
  noWorkersTimeoutMs: number;
  /** A graph update with a key longer than this (UTF-16 code units) is refused whole. */
  maxKeyLength: number;
  /** A graph update with more tasks, or more wanted keys, than this is refused whole. */
  maxKeysPerUpdate: number;
}

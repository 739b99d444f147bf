/**
 * Domain types of the worker state machine. Plain data only: no protobuf classes, no I/O.
 * The shell (src/server/convert.ts) converts wire messages to these and back.
 */
import type { ErrorInfo } from '@skein/common/lite';

/** Bytes plus the encoding that reads them (structurally the protocol's `Value`). */
export interface Encoded {
  /** The protocol's Encoding number (1 JSON, 2 V8, 3 RAW). */
  readonly encoding: number;
  readonly data: Buffer;
}

/**
 * A value the shell wrote to the worker's local directory to free memory. The state keeps only
 * this marker; `file` is the shell's opaque name for the copy on disk.
 */
export interface SpilledValue {
  readonly spilled: true;
  readonly encoding: number;
  readonly nbytes: number;
  readonly file: string;
}

/** What the data store holds for a key: the value in memory, or a marker for a spilled one. */
export type StoredValue = Encoded | SpilledValue;

export function isSpilled(v: StoredValue | undefined): v is SpilledValue {
  return v !== undefined && (v as SpilledValue).spilled === true;
}

/** Size in bytes of a stored value (in memory or spilled). */
export function storedBytes(v: StoredValue): number {
  return isSpilled(v) ? v.nbytes : v.data.byteLength;
}

/** An error raised by a task, as it crosses the wire (the one definition is in @skein/common). */
export type { ErrorInfo };

/** Which function a task calls. */
export type FunctionSpec =
  | { readonly kind: 'registered'; readonly name: string }
  | { readonly kind: 'inline'; readonly hash: string; readonly name: string };

/** What executing a task needs besides its inputs. */
export interface TaskCall {
  readonly fn: FunctionSpec;
  /** The encoded array of positional arguments (may hold `__skein_ref__` references). */
  readonly args: Encoded;
  /** Encoding the client asked for the result (protocol Encoding; 0: follow the arguments). */
  readonly resultEncoding?: number;
}

/** Every task state of the worker (also the transition log's codes). */
export const TASK_STATES = ['released', 'waiting', 'fetch', 'flight', 'missing', 'ready', 'executing', 'memory', 'error', 'cancelled', 'forgotten'] as const;
export type TaskStateName = (typeof TASK_STATES)[number];

// ---------------------------------------------------------------------------------------------
// Events: facts that happened (commands from the scheduler, results of async work).

export interface ComputeTaskEvent {
  type: 'ComputeTask';
  key: string;
  call: TaskCall;
  dependencies: readonly string[];
  priority: number;
  sequence: number;
  /** Keyed by resource name; like the maps below, a Map because the names are user data. */
  resources: ReadonlyMap<string, number>;
  /** Holders of each dependency that is not inline (keyed by task key). */
  whoHas: ReadonlyMap<string, readonly string[]>;
  /** Sizes of dependencies, when known. */
  nbytes: ReadonlyMap<string, number>;
  /** Small dependency values sent along by the scheduler. */
  inlineInputs: ReadonlyMap<string, Encoded>;
  stimulusId: string;
}

export interface FreeKeysEvent {
  type: 'FreeKeys';
  keys: readonly string[];
  stimulusId: string;
}

export interface AcquireReplicasEvent {
  type: 'AcquireReplicas';
  whoHas: ReadonlyMap<string, readonly string[]>;
  nbytes: ReadonlyMap<string, number>;
  stimulusId: string;
}

export interface StealRequestEvent {
  type: 'StealRequest';
  key: string;
  stimulusId: string;
}

/**
 * The runtime took back a task it had not started yet (the shell asked it to, before the task is
 * dropped or given away): it is ready again, or gone if it was cancelled.
 */
export interface ExecutionRevokedEvent {
  type: 'ExecutionRevoked';
  key: string;
  stimulusId: string;
}

export interface ExecuteSuccessEvent {
  type: 'ExecuteSuccess';
  key: string;
  value: Encoded;
  typeName: string;
  startMs: number;
  stopMs: number;
  stimulusId: string;
}

export interface ExecuteFailureEvent {
  type: 'ExecuteFailure';
  key: string;
  error: ErrorInfo;
  startMs: number;
  stopMs: number;
  stimulusId: string;
}

export interface GatherDepSuccessEvent {
  type: 'GatherDepSuccess';
  worker: string;
  /** Values received, by key. */
  data: ReadonlyMap<string, Encoded>;
  /** Keys the peer said it does not hold. */
  missing: readonly string[];
  stimulusId: string;
}

export interface GatherDepFailureEvent {
  type: 'GatherDepFailure';
  worker: string;
  /** Why the transfer failed (the peer is unreachable or broke off). */
  reason: string;
  stimulusId: string;
}

export interface PauseChangedEvent {
  type: 'PauseChanged';
  paused: boolean;
  stimulusId: string;
}

/**
 * The shell wrote `value` (the in-memory value of `key` when it started) to `file`. If the key
 * still holds that very value, the state swaps it for a spilled marker; otherwise the copy is
 * stale and the state asks for its removal (`RemoveSpilled`).
 */
export interface DataSpilledEvent {
  type: 'DataSpilled';
  key: string;
  value: Encoded;
  file: string;
  stimulusId: string;
}

/**
 * The shell read the spilled `file` of `key` back (to run a task that needs it). If the key is
 * still spilled to that file, the value is held in memory again (most recently used) and the
 * file is removed.
 */
export interface DataUnspilledEvent {
  type: 'DataUnspilled';
  key: string;
  value: Encoded;
  file: string;
  stimulusId: string;
}

/**
 * The scheduler connection broke: every task not in memory is dropped (the scheduler reassigns
 * them); data in memory stays and is reported as `held` on reconnect.
 */
export interface SchedulerLostEvent {
  type: 'SchedulerLost';
  stimulusId: string;
}

export type WorkerEvent =
  | ComputeTaskEvent
  | FreeKeysEvent
  | AcquireReplicasEvent
  | StealRequestEvent
  | ExecutionRevokedEvent
  | ExecuteSuccessEvent
  | ExecuteFailureEvent
  | GatherDepSuccessEvent
  | GatherDepFailureEvent
  | PauseChangedEvent
  | DataSpilledEvent
  | DataUnspilledEvent
  | SchedulerLostEvent;

// ---------------------------------------------------------------------------------------------
// Messages to the scheduler (domain form of WorkerMessage).

export interface WhoHasEntry {
  key: string;
  workers: string[];
  nbytes: number;
}

export type SchedulerMessage =
  | {
      type: 'TaskFinished';
      key: string;
      /** Present when the value is at most the inline threshold. */
      value: Encoded | undefined;
      nbytes: number;
      typeName: string;
      startMs: number;
      stopMs: number;
      stimulusId: string;
    }
  | { type: 'TaskErred'; key: string; error: ErrorInfo; startMs: number; stopMs: number; stimulusId: string }
  | { type: 'AddKeys'; keys: WhoHasEntry[]; stimulusId: string }
  | { type: 'KeysReleased'; keys: string[]; stimulusId: string }
  | { type: 'MissingData'; key: string; worker: string; stimulusId: string }
  | { type: 'StealResponse'; key: string; state: string; stimulusId: string }
  | { type: 'Reschedule'; key: string; stimulusId: string };

// ---------------------------------------------------------------------------------------------
// Actions: commands for the shell.

export interface ExecuteAction {
  type: 'Execute';
  key: string;
  call: TaskCall;
  /**
   * The values of the task's dependencies. A spilled one is a marker: the shell reads it back
   * from disk before the task goes to a thread.
   */
  inputs: Array<[string, StoredValue]>;
  /** The task's priority and sequence: the runtime starts waiting tasks best first. */
  priority: number;
  sequence: number;
  stimulusId: string;
}

export interface GatherDepAction {
  type: 'GatherDep';
  worker: string;
  keys: string[];
  totalNbytes: number;
  stimulusId: string;
}

export interface SendToSchedulerAction {
  type: 'SendToScheduler';
  message: SchedulerMessage;
  stimulusId: string;
}

/** Data was dropped from the store (for caches and metrics in the shell). */
export interface ReleaseDataAction {
  type: 'ReleaseData';
  keys: string[];
  /** Bytes these keys held in memory (0 for spilled ones): the shell returns large frees to the OS. */
  nbytes: number;
  stimulusId: string;
}

/** These spilled copies are not needed any more: delete the files. */
export interface RemoveSpilledAction {
  type: 'RemoveSpilled';
  files: string[];
  stimulusId: string;
}

export type WorkerAction = ExecuteAction | GatherDepAction | SendToSchedulerAction | ReleaseDataAction | RemoveSpilledAction;

/** One line of the transition log. */
export interface TransitionRecord {
  key: string;
  start: TaskStateName;
  finish: TaskStateName;
  stimulusId: string;
  timeMs: number;
}

export interface WorkerStateConfig {
  /** This worker's own address (filtered out of who_has). */
  address: string;
  nthreads: number;
  /** Tasks handed to the runtime at once per thread (pipelining). Default 1. */
  pipelineDepth?: number;
  /** Total abstract resources, e.g. {GPU: 2}. */
  resources?: Readonly<Record<string, number>>;
  /** Results up to this many bytes travel inline in task_finished. */
  inlineBytes: number;
  /** Peers fetched from at the same time. Default 8. */
  maxIncomingTransfers?: number;
  /** Bytes gathered from one peer in one request, roughly. Default 50 MB. */
  targetGatherBytes?: number;
  /** Length of the transition log. Default 100 000. */
  logLength?: number;
  /** Injected clock, milliseconds. */
  now: () => number;
  /** Check invariants after every handle() call (tests). */
  validate?: boolean;
}

/**
 * What the dashboard shows, as plain data. The scheduler implements `DashboardSource`; the
 * dashboard never imports the scheduler.
 */

/** Task states as the scheduler names them (Dask's names). */
export type DashboardTaskState =
  | 'released'
  | 'waiting'
  | 'no-worker'
  | 'queued'
  | 'processing'
  | 'memory'
  | 'erred'
  | 'forgotten';

export interface WorkerView {
  address: string;
  name: string;
  nthreads: number;
  status: 'running' | 'paused' | 'retiring';
  /** Tasks the scheduler has assigned to this worker and not yet seen finish. */
  processing: number;
  /** Tasks executing right now (from the last heartbeat). */
  executing: number;
  /** Bytes of results held in memory by the worker (managed), from the last heartbeat. */
  managedBytes: number;
  /** Resident set size of the worker process. */
  memoryRss: number;
  spilledBytes: number;
  /** 0 when unlimited. */
  memoryLimit: number;
  /** CPU use of the worker process in percent of one core. */
  cpuPercent: number;
  /** Wall-clock time (ms) of the last message from the worker. */
  lastSeenMs: number;
}

/** How many tasks of one task group (key prefix) are in each state. */
export interface TaskGroupView {
  name: string;
  /** Current counts per state; `forgotten` counts tasks that have left since the group appeared. */
  states: Record<DashboardTaskState, number>;
  /** Tasks of the group that finished running (counted once per successful run). */
  completed: number;
}

export interface TaskErrorView {
  timeMs: number;
  key: string;
  group: string;
  worker: string;
  type: string;
  message: string;
}

/** One task run (or a failed run) on one worker: a bar of the task stream. */
export interface TaskStreamEntry {
  worker: string;
  key: string;
  group: string;
  startMs: number;
  stopMs: number;
  /** 'compute' (finished), 'erred' (failed), 'transfer' (data moved to `worker`). */
  kind: 'compute' | 'erred' | 'transfer';
}

export interface DashboardCounters {
  /** Task runs that finished successfully. */
  tasksCompleted: number;
  /** Transitions into `erred` (tasks that failed and tasks that failed because an input did). */
  tasksErred: number;
  /** Data transfers between workers, when the source knows them. */
  transfers?: number;
  transferBytes?: number;
}

export interface ClusterSnapshot {
  /** Wall-clock time (ms) the snapshot was taken. */
  timeMs: number;
  schedulerAddress: string;
  clients: number;
  workers: WorkerView[];
  tasksByState: Record<DashboardTaskState, number>;
  groups: TaskGroupView[];
  counters: DashboardCounters;
  /** Latest task errors, newest last (bounded by the source). */
  errors: TaskErrorView[];
}

export interface TaskStreamSlice {
  /** Pass this back as `cursor` next time to get only what came after. */
  cursor: number;
  entries: TaskStreamEntry[];
  /** Entries between the given cursor and the oldest one kept were dropped (the ring wrapped). */
  dropped: number;
}

/**
 * Implemented by whatever the dashboard watches (the scheduler). Calls are cheap, synchronous and
 * made at most a few times a second, only while someone watches (plus a 1 Hz history sample).
 */
export interface DashboardSource {
  snapshot(): ClusterSnapshot;
  /** Task runs recorded after `cursor` (0: from the oldest kept), at most `max`. */
  taskStream(cursor: number, max: number): TaskStreamSlice;
}

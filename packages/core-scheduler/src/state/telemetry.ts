import { TASK_STATES, type ErrorInfo, type TaskStateName } from './types.js';

/**
 * What the dashboard and /metrics read from the scheduler, kept up to date by a few one-line hooks
 * in SchedulerState: counts per task group and state, counters, a ring of recent task runs (the
 * task stream) and a ring of recent errors. Pure and O(1) per hook; the rings are column-wise
 * typed arrays, so recording a task run allocates nothing.
 */

const STATE_NAMES: readonly TaskStateName[] = TASK_STATES;
const STATE_INDEX = Object.fromEntries(TASK_STATES.map((s, i) => [s, i])) as Readonly<Record<TaskStateName, number>>;
const FORGOTTEN = STATE_INDEX.forgotten;

/** Counts of one task group (tasks whose keys share a prefix, `TaskRecord.group`). */
export class GroupStats {
  /** Tasks per state, indexed like STATE_NAMES; `forgotten` counts tasks that have left. */
  readonly counts = new Int32Array(8);
  /** Successful runs (processing → memory). */
  completed = 0;

  constructor(readonly name: string) {}

  /** Tasks the scheduler still knows (every state but forgotten). */
  get live(): number {
    const c = this.counts;
    return c[0]! + c[1]! + c[2]! + c[3]! + c[4]! + c[5]! + c[6]!;
  }

  states(): Record<TaskStateName, number> {
    const out = {} as Record<TaskStateName, number>;
    for (let i = 0; i < STATE_NAMES.length; i++) out[STATE_NAMES[i]!] = this.counts[i]!;
    return out;
  }
}

/** One task run, shaped as the dashboard's TaskStreamEntry so it passes through unchanged. */
export interface TaskRun {
  worker: string;
  key: string;
  group: string;
  startMs: number;
  stopMs: number;
  kind: 'compute' | 'erred' | 'transfer';
}

export interface TaskErrorRecord {
  timeMs: number;
  key: string;
  group: string;
  worker: string;
  type: string;
  message: string;
}

export interface TelemetryOptions {
  /** Task runs kept for the task stream (default 50 000). */
  streamCapacity: number;
  /** Errors kept (default 100). */
  errorCapacity: number;
  /** Task groups kept; beyond this, groups with no live task are dropped, oldest first (default 500). */
  maxGroups: number;
}

export class SchedulerTelemetry {
  readonly groups = new Map<string, GroupStats>();
  /** Successful task runs since the scheduler started. */
  tasksCompleted = 0;
  /** Transitions into erred since the scheduler started. */
  tasksErred = 0;
  /** Data transfers between workers, and their bytes. */
  transfers = 0;
  transferBytes = 0;
  readonly opts: TelemetryOptions;
  private last: GroupStats | null = null;

  // task stream ring, column-wise
  private readonly sWorker: string[];
  private readonly sKey: string[];
  private readonly sGroup: string[];
  private readonly sStart: Float64Array;
  private readonly sStop: Float64Array;
  private readonly sErred: Uint8Array;
  /** Task runs ever recorded; the sequence number of the next one. */
  private streamTotal = 0;

  private readonly errors: TaskErrorRecord[] = [];
  private errorNext = 0;

  constructor(opts: Partial<TelemetryOptions> = {}) {
    this.opts = { streamCapacity: 50_000, errorCapacity: 100, maxGroups: 500, ...opts };
    const n = Math.max(1, this.opts.streamCapacity);
    this.sWorker = new Array<string>(n).fill('');
    this.sKey = new Array<string>(n).fill('');
    this.sGroup = new Array<string>(n).fill('');
    this.sStart = new Float64Array(n);
    this.sStop = new Float64Array(n);
    this.sErred = new Uint8Array(n);
  }

  // ------------------------------------------------------------------ hooks (O(1))

  /** A new task entered the scheduler (in `released`). */
  added(group: string): void {
    const g = this.group(group);
    // A group whose earlier tasks have all gone starts over: a new computation, a new bar.
    if (g.counts[FORGOTTEN]! > 0 && g.live === 0) {
      g.counts[FORGOTTEN] = 0;
      g.completed = 0;
    }
    g.counts[0]!++;
  }

  /** A task of `group` moved from `start` to `finish` (SchedulerState.setState). */
  transition(group: string, start: TaskStateName, finish: TaskStateName): void {
    let g = this.last;
    if (g === null || g.name !== group) g = this.group(group);
    g.counts[STATE_INDEX[start]]!--;
    g.counts[STATE_INDEX[finish]]!++;
    if (finish === 'memory') {
      g.completed++;
      this.tasksCompleted++;
    } else if (finish === 'erred') {
      this.tasksErred++;
    }
  }

  /** A task run ended on `worker` (TaskFinished, or TaskErred with `erred`). */
  taskRan(worker: string, key: string, group: string, startMs: number, stopMs: number, erred: boolean): void {
    const i = this.streamTotal % this.sStart.length;
    this.sWorker[i] = worker;
    this.sKey[i] = key;
    this.sGroup[i] = group;
    this.sStart[i] = startMs;
    this.sStop[i] = stopMs;
    this.sErred[i] = erred ? 1 : 0;
    this.streamTotal++;
  }

  /** `worker` fetched data (first key `key`) from a peer: a transfer bar in the task stream. */
  transferred(worker: string, key: string, group: string, startMs: number, stopMs: number, nbytes: number): void {
    this.taskRan(worker, key, group, startMs, stopMs, false);
    this.sErred[(this.streamTotal - 1) % this.sStart.length] = 2;
    this.transfers++;
    this.transferBytes += nbytes;
  }

  /** A task failed by itself (not because an input failed). */
  taskErred(key: string, group: string, worker: string, error: ErrorInfo, timeMs: number): void {
    const rec: TaskErrorRecord = { timeMs, key, group, worker, type: error.type, message: error.message };
    const cap = Math.max(1, this.opts.errorCapacity);
    if (this.errors.length < cap) this.errors.push(rec);
    else this.errors[this.errorNext] = rec;
    this.errorNext = (this.errorNext + 1) % cap;
  }

  // ------------------------------------------------------------------ reads

  /**
   * Task runs recorded after `cursor` (a value this method returned before; 0 for everything
   * kept), oldest first. When more than `max` are available, the newest `max` are returned and
   * the rest count as dropped.
   */
  streamSince(cursor: number, max: number): { cursor: number; runs: TaskRun[]; dropped: number } {
    const end = this.streamTotal;
    const oldest = Math.max(0, end - this.sStart.length);
    const c = cursor > end || cursor < 0 ? 0 : cursor; // a cursor from elsewhere: start over
    let from = Math.max(c, oldest);
    let dropped = from - c;
    const limit = Math.max(0, max);
    if (end - from > limit) {
      dropped += end - limit - from;
      from = end - limit;
    }
    const runs: TaskRun[] = [];
    for (let s = from; s < end; s++) {
      const i = s % this.sStart.length;
      runs.push({
        worker: this.sWorker[i]!,
        key: this.sKey[i]!,
        group: this.sGroup[i]!,
        startMs: this.sStart[i]!,
        stopMs: this.sStop[i]!,
        kind: this.sErred[i] === 1 ? 'erred' : this.sErred[i] === 2 ? 'transfer' : 'compute',
      });
    }
    return { cursor: end, runs, dropped };
  }

  /** The latest errors, oldest first. */
  recentErrors(): TaskErrorRecord[] {
    if (this.errors.length < Math.max(1, this.opts.errorCapacity)) return this.errors.slice();
    return [...this.errors.slice(this.errorNext), ...this.errors.slice(0, this.errorNext)];
  }

  get streamLength(): number {
    return this.streamTotal;
  }

  // ------------------------------------------------------------------ internals

  private group(name: string): GroupStats {
    let g = this.groups.get(name);
    if (!g) {
      if (this.groups.size >= this.opts.maxGroups) this.evictIdleGroup();
      g = new GroupStats(name);
      this.groups.set(name, g);
    }
    this.last = g;
    return g;
  }

  private evictIdleGroup(): void {
    for (const [name, g] of this.groups) {
      if (g.live === 0) {
        this.groups.delete(name);
        if (this.last === g) this.last = null;
        return;
      }
    }
  }
}

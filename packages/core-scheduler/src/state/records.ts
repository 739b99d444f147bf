import type { EncodedValue, ErrorInfo, MetricSample, TaskDef, TaskStateName, WorkerMetrics } from './types.js';

/** The scheduler's record of one task. Arrays rather than sets where they stay small. */
export class TaskRecord {
  state: TaskStateName = 'released';
  readonly dependencies: TaskRecord[] = [];
  readonly dependents: TaskRecord[] = [];
  /** While waiting: how many of `dependencies` (counted with repeats) are not in memory. */
  waitingCount = 0;
  /** Dependents that still need this task's result. */
  waiters: Set<TaskRecord> | null = null;
  /** Clients that hold futures for this key. */
  whoWants: Set<string> | null = null;
  /** Workers that hold the result. */
  readonly whoHas: WorkerRecord[] = [];
  processingOn: WorkerRecord | null = null;
  /** The result itself, kept by the scheduler when small. */
  inline: EncodedValue | null = null;
  nbytes = -1;
  typeName = '';
  exception: ErrorInfo | null = null;
  /** Key of the task whose error this one carries. */
  exceptionBlame = '';
  retriesLeft: number;
  /** Number of workers that died while running this task. */
  suspicious = 0;
  lastDeathReason = '';
  sequence: number;
  /** The task's group: the key prefix before the token (the function name). */
  readonly group: string;
  broadcast = false;
  /** A steal request is outstanding to this worker. */
  stealingFrom: WorkerRecord | null = null;
  /** Position in the root-task queue heap, or -1. */
  heapIndex = -1;
  /** User priority (higher runs first). */
  priority: number;

  constructor(
    readonly key: string,
    public def: TaskDef | null,
    sequence: number,
  ) {
    this.retriesLeft = def?.retries ?? 0;
    this.priority = def?.priority ?? 0;
    this.sequence = sequence;
    const dash = key.lastIndexOf('-');
    this.group = dash > 0 ? key.slice(0, dash) : key;
  }


  /** Has a value somewhere: on a worker or inline. */
  get hasData(): boolean {
    return this.inline !== null || this.whoHas.length > 0;
  }

  get restricted(): boolean {
    const d = this.def;
    return !!d && (d.workers.length > 0 || hasKeys(d.resources));
  }
}

export type WorkerStatus = 'running' | 'paused' | 'retiring';

export class WorkerRecord {
  status: WorkerStatus = 'running';
  readonly processing = new Set<TaskRecord>();
  readonly hasWhat = new Set<TaskRecord>();
  nbytes = 0;
  lastSeenMs: number;
  metrics: WorkerMetrics = { executing: 0, ready: 0, memoryRss: 0, managedBytes: 0, spilledBytes: 0, cpuPercent: 0, paused: false };
  /** Recent heartbeat samples, oldest first (bounded). */
  readonly history: MetricSample[] = [];
  /** Keys this worker must copy to peers before it may close (retirement). */
  pendingReplicas: Set<TaskRecord> | null = null;

  constructor(
    readonly address: string,
    readonly name: string,
    readonly nthreads: number,
    readonly memoryLimit: number,
    readonly resources: Record<string, number>,
    readonly registeredFunctions: Set<string>,
    readonly pid: number,
    readonly nannyAddress: string,
    nowMs: number,
  ) {
    this.lastSeenMs = nowMs;
  }
}

/** A binary min-heap of tasks ordered by (priority desc, sequence asc). */
export class TaskHeap {
  private readonly items: TaskRecord[] = [];

  get size(): number {
    return this.items.length;
  }

  private less(a: TaskRecord, b: TaskRecord): boolean {
    return a.priority !== b.priority ? a.priority > b.priority : a.sequence < b.sequence;
  }

  push(t: TaskRecord): void {
    t.heapIndex = this.items.length;
    this.items.push(t);
    this.up(t.heapIndex);
  }

  peek(): TaskRecord | undefined {
    return this.items[0];
  }

  pop(): TaskRecord | undefined {
    const top = this.items[0];
    if (top) this.remove(top);
    return top;
  }

  remove(t: TaskRecord): void {
    const i = t.heapIndex;
    if (i < 0 || this.items[i] !== t) return;
    const last = this.items.pop()!;
    t.heapIndex = -1;
    if (last === t) return;
    this.items[i] = last;
    last.heapIndex = i;
    this.up(i);
    this.down(last.heapIndex);
  }

  *[Symbol.iterator](): Iterator<TaskRecord> {
    yield* this.items;
  }

  private swap(i: number, j: number): void {
    const a = this.items[i]!;
    const b = this.items[j]!;
    this.items[i] = b;
    this.items[j] = a;
    a.heapIndex = j;
    b.heapIndex = i;
  }

  private up(i: number): void {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(this.items[i]!, this.items[p]!)) break;
      this.swap(i, p);
      i = p;
    }
  }

  private down(i: number): void {
    const n = this.items.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && this.less(this.items[l]!, this.items[m]!)) m = l;
      if (r < n && this.less(this.items[r]!, this.items[m]!)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }
}

/**
 * Recommendations waiting to be applied: insertion ordered, one per task (a later one replaces an
 * earlier one), O(1) per operation.
 */
export class Recommendations<S> {
  private readonly map = new Map<TaskRecord, S>();
  private order: TaskRecord[] = [];
  private head = 0;

  get size(): number {
    return this.map.size;
  }

  set(ts: TaskRecord, finish: S): void {
    if (!this.map.has(ts)) this.order.push(ts);
    this.map.set(ts, finish);
  }

  has(ts: TaskRecord): boolean {
    return this.map.has(ts);
  }

  get(ts: TaskRecord): S | undefined {
    return this.map.get(ts);
  }

  delete(ts: TaskRecord): void {
    this.map.delete(ts);
  }

  /** The oldest recommendation, removed. */
  shift(): [TaskRecord, S] | undefined {
    while (this.head < this.order.length) {
      const ts = this.order[this.head++]!;
      const finish = this.map.get(ts);
      if (finish === undefined) continue;
      this.map.delete(ts);
      if (this.head > 1024 && this.head * 2 > this.order.length) {
        this.order = this.order.slice(this.head);
        this.head = 0;
      }
      return [ts, finish];
    }
    this.order = [];
    this.head = 0;
    return undefined;
  }
}

const STATE_CODES = ['released', 'waiting', 'no-worker', 'queued', 'processing', 'memory', 'erred', 'forgotten'] as const;
type StateName = (typeof STATE_CODES)[number];

/**
 * A bounded ring of transitions stored column-wise (no object per record), so logging every
 * transition of millions of tasks costs little memory and no garbage.
 */
export class TransitionLog {
  private readonly keys: string[];
  private readonly starts: Uint8Array;
  private readonly finishes: Uint8Array;
  private readonly stimuli: string[];
  private readonly times: Float64Array;
  private readonly workers: string[];
  private next = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    this.keys = new Array<string>(capacity);
    this.stimuli = new Array<string>(capacity);
    this.workers = new Array<string>(capacity);
    this.starts = new Uint8Array(capacity);
    this.finishes = new Uint8Array(capacity);
    this.times = new Float64Array(capacity);
  }

  push(key: string, start: StateName, finish: StateName, stimulusId: string, timeMs: number, worker: string): void {
    const i = this.next;
    this.keys[i] = key;
    this.starts[i] = STATE_CODES.indexOf(start);
    this.finishes[i] = STATE_CODES.indexOf(finish);
    this.stimuli[i] = stimulusId;
    this.times[i] = timeMs;
    this.workers[i] = worker;
    this.next = (i + 1) % this.capacity;
    if (this.count < this.capacity) this.count++;
  }

  /** Records of the given keys, oldest first. */
  select(keys: ReadonlySet<string>): Array<{ key: string; start: StateName; finish: StateName; stimulusId: string; timeMs: number; worker: string }> {
    const out = [];
    const first = this.count < this.capacity ? 0 : this.next;
    for (let n = 0; n < this.count; n++) {
      const i = (first + n) % this.capacity;
      const key = this.keys[i]!;
      if (!keys.has(key)) continue;
      out.push({
        key,
        start: STATE_CODES[this.starts[i]!]!,
        finish: STATE_CODES[this.finishes[i]!]!,
        stimulusId: this.stimuli[i]!,
        timeMs: this.times[i]!,
        worker: this.workers[i]!,
      });
    }
    return out;
  }
}

/** Whether an object has an own enumerable key, without allocating a key list (hot path). */
export function hasKeys(o: object): boolean {
  for (const _ in o) return true;
  return false;
}

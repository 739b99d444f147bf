import type { EncodedValue, ErrorInfo, FunctionId, MetricSample, TaskDef, TaskStateName, WorkerMetrics } from './types.js';

/** Restrictions on where a task may run; most tasks have none (null), so they cost nothing. */
export interface Restrictions {
  resources: ReadonlyMap<string, number>;
  workers: string[];
  allowOtherWorkers: boolean;
}

/**
 * A frozen empty list shared by every record until it needs one of its own: most tasks have no
 * dependents and are held by at most one worker, and an array that grows by push reserves room
 * for 17 elements (~170 bytes). Replace it (`[x]`) rather than pushing onto it; a push onto it
 * throws.
 */
const NONE: never[] = Object.freeze([]) as unknown as never[];

/** Argument bytes up to this size are kept as a one-byte string (16 bytes of header, not ~170). */
const ARGS_AS_STRING_MAX = 4096;

/**
 * The scheduler's record of one task. It is the only per-task object the scheduler keeps, so it
 * is kept small (see bench "memory"): no copy of the client's TaskDef, the function id shared by
 * all tasks of that function, small arguments packed into a string that owns its bytes (a
 * Uint8Array view would keep the whole wire message alive), lists shared while empty.
 */
export const NOT_PURE = 0;
export const PURE_UNCHECKED = 1;
export const PURE_VERIFIED = 2;

/**
 * What few tasks ever need (a failure, a steal, restrictions, copies asked for): kept off the task
 * record, in one object made on the first use, so that a record of the common task is smaller
 * (see bench/scale.mjs, scale-tasks-memory).
 */
class TaskExtra {
  exception: ErrorInfo | null = null;
  exceptionBlame = '';
  refused = false;
  suspicious = 0;
  lastDeathReason = '';
  broadcast = false;
  stealingFrom: WorkerRecord | null = null;
  stealId = '';
  replicaTargets: Set<WorkerRecord> | null = null;
  restrictions: Restrictions | null = null;
  /** Encodings that do not fit TaskRecord.bits (a peer's enum values beyond 255, or negative). */
  argsEncoding = 0;
  resultEncoding = 0;
}

// TaskRecord.bits: the argument and result encodings (protobuf enums, small) and the purity.
const ENC_MASK = 0xff;
const RESULT_SHIFT = 8;
const PURITY_SHIFT = 16;
/** Set in bits when the encodings live in TaskExtra instead. */
const WIDE = 1 << 15;

export class TaskRecord {
  state: TaskStateName = 'released';
  /** Set once, exactly sized, when the graph is linked (see setDependencies). */
  dependencies: TaskRecord[] = NONE;
  /** Replaced on the first addition (see NONE); use addDependent. */
  dependents: TaskRecord[] = NONE;
  /** While waiting: how many of `dependencies` (counted with repeats) are not in memory. */
  waitingCount = 0;
  /** Dependents that still need this task's result. */
  waiters: Set<TaskRecord> | null = null;
  /** Clients that hold futures for this key: one client id, or a set when there are several. */
  whoWants: string | Set<string> | null = null;
  /** Workers that hold the result. Replaced on the first addition (see NONE); use addHolder. */
  whoHas: WorkerRecord[] = NONE;
  processingOn: WorkerRecord | null = null;
  /** The result itself, kept by the scheduler when small. */
  inline: EncodedValue | null = null;
  nbytes = -1;
  typeName = '';
  retriesLeft: number;
  sequence: number;
  /** The task's group: the key prefix before the token (the function name); shared string. */
  readonly group: string;
  /** The client whose definition made this task (it shares it with whoever submits the key again). */
  owner = '';
  /** The transition recommended for this task and not applied yet (see Recommendations). */
  recommended: TaskStateName | null = null;
  recSeq = 0;
  /** Position in the root-task queue heap, or -1. */
  heapIndex = -1;
  /** User priority (higher runs first). */
  priority: number;
  /** The function, shared by every task that calls it. */
  readonly fn: FunctionId;
  /** The argument bytes: a one-byte string when small, else an owned copy. */
  private readonly args: string | Uint8Array;
  /** argsEncoding, resultEncoding and purity, packed (see the accessors). */
  private bits: number;
  /** The rarely used fields (see TaskExtra), or null while none was set. */
  private x: TaskExtra | null = null;

  constructor(def: TaskDef, fn: FunctionId, group: string, sequence: number) {
    this.key = def.key;
    this.fn = fn;
    this.group = group;
    this.retriesLeft = def.retries;
    this.priority = def.priority;
    this.sequence = sequence;
    const data = def.args.data;
    const enc = def.args.encoding;
    const res = def.resultEncoding;
    const purity = (def.pure ? PURE_UNCHECKED : NOT_PURE) << PURITY_SHIFT;
    if ((enc & ENC_MASK) === enc && (res & ENC_MASK) === res && res < 0x80) this.bits = enc | (res << RESULT_SHIFT) | purity;
    else {
      this.bits = WIDE | purity;
      const x = this.extra();
      x.argsEncoding = enc;
      x.resultEncoding = res;
    }
    this.args = data.length <= ARGS_AS_STRING_MAX ? latin1(data) : data.slice();
    if (def.workers.length || def.resources.size > 0) {
      this.extra().restrictions = { resources: def.resources, workers: def.workers, allowOtherWorkers: def.allowOtherWorkers };
    }
  }

  private extra(): TaskExtra {
    return (this.x ??= new TaskExtra());
  }

  get argsEncoding(): number {
    return (this.bits & WIDE) === 0 ? this.bits & ENC_MASK : this.x!.argsEncoding;
  }

  get resultEncoding(): number {
    return (this.bits & WIDE) === 0 ? (this.bits >>> RESULT_SHIFT) & ENC_MASK : this.x!.resultEncoding;
  }

  /**
   * Its key is pure (TaskSpec.pure): PURE_UNCHECKED until another client submits it as pure, then
   * PURE_VERIFIED (the key matches the definition, and every input is verified too) or NOT_PURE.
   */
  get purity(): number {
    return this.bits >>> PURITY_SHIFT;
  }

  set purity(p: number) {
    this.bits = (this.bits & 0xffff) | (p << PURITY_SHIFT);
  }

  get restrictions(): Restrictions | null {
    return this.x === null ? null : this.x.restrictions;
  }

  get exception(): ErrorInfo | null {
    return this.x === null ? null : this.x.exception;
  }

  set exception(v: ErrorInfo | null) {
    if (v !== null || this.x !== null) this.extra().exception = v;
  }

  /** Key of the task whose error this one carries. */
  get exceptionBlame(): string {
    return this.x === null ? '' : this.x.exceptionBlame;
  }

  set exceptionBlame(v: string) {
    if (v !== '' || this.x !== null) this.extra().exceptionBlame = v;
  }

  /**
   * Refused when submitted: unknown inputs, a dependency cycle or bad restrictions (its exception
   * says which); it errs as soon as it is wanted.
   */
  get refused(): boolean {
    return this.x !== null && this.x.refused;
  }

  set refused(v: boolean) {
    if (v || this.x !== null) this.extra().refused = v;
  }

  /** Number of workers that died while running this task. */
  get suspicious(): number {
    return this.x === null ? 0 : this.x.suspicious;
  }

  set suspicious(v: number) {
    if (v !== 0 || this.x !== null) this.extra().suspicious = v;
  }

  get lastDeathReason(): string {
    return this.x === null ? '' : this.x.lastDeathReason;
  }

  set lastDeathReason(v: string) {
    if (v !== '' || this.x !== null) this.extra().lastDeathReason = v;
  }

  get broadcast(): boolean {
    return this.x !== null && this.x.broadcast;
  }

  set broadcast(v: boolean) {
    if (v || this.x !== null) this.extra().broadcast = v;
  }

  /** A steal request is outstanding to this worker. */
  get stealingFrom(): WorkerRecord | null {
    return this.x === null ? null : this.x.stealingFrom;
  }

  set stealingFrom(v: WorkerRecord | null) {
    if (v !== null || this.x !== null) this.extra().stealingFrom = v;
  }

  /** That request's stimulus id (unique per request): only a reply carrying it answers it. */
  get stealId(): string {
    return this.x === null ? '' : this.x.stealId;
  }

  set stealId(v: string) {
    if (v !== '' || this.x !== null) this.extra().stealId = v;
  }

  /** Workers asked to copy this result (AcquireReplicas) that have not said they hold it (AddKeys). */
  get replicaTargets(): Set<WorkerRecord> | null {
    return this.x === null ? null : this.x.replicaTargets;
  }

  set replicaTargets(v: Set<WorkerRecord> | null) {
    if (v !== null || this.x !== null) this.extra().replicaTargets = v;
  }

  readonly key: string;

  /** Has a value somewhere: on a worker or inline. */
  get hasData(): boolean {
    return this.inline !== null || this.whoHas.length > 0;
  }

  get restricted(): boolean {
    return this.x !== null && this.x.restrictions !== null;
  }

  /** The definition again, for a Compute message (allocates; called once per assignment). */
  toDef(): TaskDef {
    const r = this.restrictions;
    const args = this.args;
    return {
      key: this.key,
      fn: this.fn,
      args: { encoding: this.argsEncoding, data: typeof args === 'string' ? Buffer.from(args, 'latin1') : args },
      dependencies: this.dependencies.length ? this.dependencies.map((d) => d.key) : NONE,
      priority: this.priority,
      retries: this.retriesLeft,
      resources: r ? r.resources : NO_RESOURCES,
      workers: r ? r.workers : NONE,
      allowOtherWorkers: r ? r.allowOtherWorkers : false,
      resultEncoding: this.resultEncoding,
    };
  }

  setDependencies(deps: TaskRecord[]): void {
    this.dependencies = deps.length ? deps : NONE;
  }

  addDependent(ts: TaskRecord): void {
    if (this.dependents === NONE) this.dependents = [ts];
    else this.dependents.push(ts);
  }

  addHolder(ws: WorkerRecord): void {
    if (this.whoHas === NONE) this.whoHas = [ws];
    else if (!this.whoHas.includes(ws)) this.whoHas.push(ws);
  }

  /** Removes a worker from whoHas; true if it was there. */
  removeHolder(ws: WorkerRecord): boolean {
    const i = this.whoHas.indexOf(ws);
    if (i < 0) return false;
    if (this.whoHas.length === 1) this.whoHas = NONE;
    else this.whoHas.splice(i, 1);
    return true;
  }

  clearHolders(): void {
    this.whoHas = NONE;
  }

  wantedBy(client: string): boolean {
    const w = this.whoWants;
    return w === client || (w !== null && typeof w !== 'string' && w.has(client));
  }

  addWanter(client: string): void {
    const w = this.whoWants;
    if (w === null) this.whoWants = client;
    else if (typeof w === 'string') {
      if (w !== client) this.whoWants = new Set([w, client]);
    } else w.add(client);
  }

  /** Removes a client from whoWants; true if it was there. */
  removeWanter(client: string): boolean {
    const w = this.whoWants;
    if (w === null) return false;
    if (typeof w === 'string') {
      if (w !== client) return false;
      this.whoWants = null;
      return true;
    }
    if (!w.delete(client)) return false;
    if (w.size === 1) this.whoWants = w.values().next().value!;
    return true;
  }

  /** The clients that want this key (a fresh array). */
  wanters(): string[] {
    const w = this.whoWants;
    return w === null ? NONE : typeof w === 'string' ? [w] : [...w];
  }
}

const NO_RESOURCES: ReadonlyMap<string, number> = new Map<string, number>();

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
  /** Registration order (the order of SchedulerState.workers). */
  order = 0;
  /** Its place in the LoadIndex (placement.ts): heap position (-1: not running) and group; whether it is a steal victim. */
  loadPos = -1;
  loadGroup = 0;
  overloaded = false;
  victimPos = -1;

  constructor(
    readonly address: string,
    readonly name: string,
    readonly nthreads: number,
    readonly memoryLimit: number,
    readonly resources: ReadonlyMap<string, number>,
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
 * earlier one in place; one made after a delete goes to the end), O(1) per operation. The
 * recommendation lives on the record itself (no map keyed by record on this hot path); the order
 * list may hold stale entries, recognised by their sequence number.
 */
export class Recommendations {
  private order: TaskRecord[] = [];
  private seqs: number[] = [];
  private head = 0;
  private seq = 0;
  private count = 0;

  get size(): number {
    return this.count;
  }

  set(ts: TaskRecord, finish: TaskStateName): void {
    if (ts.recommended === null) {
      ts.recSeq = ++this.seq;
      this.order.push(ts);
      this.seqs.push(ts.recSeq);
      this.count++;
    }
    ts.recommended = finish;
  }

  has(ts: TaskRecord): boolean {
    return ts.recommended !== null;
  }

  get(ts: TaskRecord): TaskStateName | undefined {
    return ts.recommended ?? undefined;
  }

  delete(ts: TaskRecord): void {
    if (ts.recommended === null) return;
    ts.recommended = null;
    this.count--;
  }

  /** Drops every recommendation (an event that failed); returns the tasks that had one. */
  clear(): TaskRecord[] {
    const dropped: TaskRecord[] = [];
    for (let i = this.head; i < this.order.length; i++) {
      const ts = this.order[i]!;
      if (ts.recommended === null || ts.recSeq !== this.seqs[i]) continue;
      ts.recommended = null;
      dropped.push(ts);
    }
    this.order = [];
    this.seqs = [];
    this.head = 0;
    this.count = 0;
    return dropped;
  }

  /** The oldest recommendation, removed. */
  shift(): [TaskRecord, TaskStateName] | undefined {
    while (this.head < this.order.length) {
      const i = this.head++;
      const ts = this.order[i]!;
      const finish = ts.recommended;
      if (finish === null || ts.recSeq !== this.seqs[i]) continue;
      ts.recommended = null;
      this.count--;
      if (this.head > 1024 && this.head * 2 > this.order.length) {
        this.order = this.order.slice(this.head);
        this.seqs = this.seqs.slice(this.head);
        this.head = 0;
      }
      return [ts, finish];
    }
    this.order = [];
    this.seqs = [];
    this.head = 0;
    return undefined;
  }
}

/** Bytes as a one-byte string (a loop for the short arguments of most tasks: 3x faster than a Buffer view's toString). */
function latin1(data: Uint8Array): string {
  if (data.length > 16) return Buffer.from(data.buffer, data.byteOffset, data.length).toString('latin1');
  let s = '';
  for (let i = 0; i < data.length; i++) s += String.fromCharCode(data[i]!);
  return s;
}

import { InvalidTransitionError, TransitionLog, pureKeyMatches, taskError, type ErrorInfo } from '@skein/common/lite';
import { NOT_PURE, PURE_UNCHECKED, PURE_VERIFIED, Recommendations, TaskHeap, TaskRecord, WorkerRecord } from './records.js';
import { SchedulerTelemetry } from './telemetry.js';
import { LoadIndex } from './placement.js';
import { TASK_STATES } from './types.js';
import type {
  ClientReport,
  FinishedTask,
  FunctionId,
  SchedulerAction,
  SchedulerEvent,
  SchedulerStateOptions,
  TaskDef,
  TaskStateName,
  TransitionRecord,
  WhoHasInfo,
  WorkerSpec,
} from './types.js';

export { InvalidTransitionError };

type Transition = (ts: TaskRecord) => TaskStateName;

/** The task keys an event names (for `recover`; worker- and cluster-level events name none). */
function* eventKeys(e: SchedulerEvent): Iterable<string> {
  switch (e.type) {
    case 'GraphUpdated':
      for (const d of e.tasks) yield d.key;
      yield* e.wanted;
      return;
    case 'ClientReleasedKeys':
    case 'ClientCancelledKeys':
    case 'ClientWantsKeys':
    case 'WorkerReleasedKeys':
      yield* e.keys;
      return;
    case 'TaskFinished':
    case 'TaskErred':
    case 'MissingData':
    case 'RescheduleRequested':
    case 'StealResponse':
      yield e.key;
      return;
    case 'TasksFinished':
      for (const t of e.tasks) yield t.key;
      return;
    case 'ReplicasAdded':
      for (const k of e.keys) yield k.key;
      return;
    case 'ClientConnected':
    case 'ClientDisconnected':
    case 'WorkerAdded':
    case 'WorkerRemoved':
    case 'Heartbeat':
    case 'TransferDone':
    case 'RetireWorkers':
    case 'ClusterRestarted':
    case 'Tick':
      return;
    default: {
      const never: never = e;
      throw new Error(`unknown scheduler event ${JSON.stringify(never)}`);
    }
  }
}

/** A key shortened for an error message (keys are user data, possibly huge). */
function clip(key: string): string {
  return key.length > 80 ? `${key.slice(0, 80)}…` : key;
}

function tooLong(key: string, limit: number): string {
  return `key "${clip(key)}" is ${key.length} characters long, over the scheduler's limit of ${limit} (scheduler option maxKeyLength, --max-key-length)`;
}

const NO_WHO_HAS: WhoHasInfo[] = Object.freeze([]) as unknown as WhoHasInfo[];
const NO_INLINE_INPUTS: Array<[string, { encoding: number; data: Uint8Array }]> = Object.freeze([]) as unknown as Array<[string, { encoding: number; data: Uint8Array }]>;
const ACTIVE: ReadonlySet<TaskStateName> = new Set(['waiting', 'queued', 'no-worker', 'processing']);
const STEALABLE_WORKER_STATES = new Set(['ready', 'waiting', 'fetch', 'flight', 'constrained', 'released', 'missing', 'cancelled', 'unknown']);
const BYTES_PER_MS = 100_000; // assumed network bandwidth for placement (100 MB/s)
const MAX_TRANSITIONS_PER_EVENT = 10_000_000;
const HISTORY_SAMPLES = 600;
/** Tasks of one victim looked at per steal attempt (the rest wait for the next attempt). */
const MAX_STEAL_SCAN = 1000;
/** Victims asked per steal attempt. */
const MAX_STEAL_VICTIMS = 32;

/** Whether two lists hold the same tasks in the same order. */
function sameTasks(a: readonly TaskRecord[], b: readonly TaskRecord[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Whether the tasks do not all have the same priority. */
function mixedPriorities(tasks: readonly TaskRecord[]): boolean {
  const first = tasks[0]?.priority;
  for (const ts of tasks) if (ts.priority !== first) return true;
  return false;
}

/**
 * The scheduler's logic as a pure state machine: `handle(event)` returns the actions the shell
 * must perform. No I/O, no timers; the clock is injected.
 */
export class SchedulerState {
  readonly tasks = new Map<string, TaskRecord>();
  readonly workers = new Map<string, WorkerRecord>();
  readonly clients = new Map<string, Set<TaskRecord>>();
  /**
   * Per client, the keys of its pure tasks that an existing task of another client's definition
   * held (see updateGraph): they erred for it, and so do its later tasks that use them.
   */
  private readonly pureConflicts = new Map<string, Set<string>>();
  /** Interned function ids and group names (a few per graph; they live as long as the scheduler). */
  private readonly functions = new Map<string, FunctionId>();
  private readonly groups = new Map<string, string>();
  private lastFunction: FunctionId | null = null;
  private lastGroup = '';
  readonly counts: Record<TaskStateName, number> = {
    released: 0, waiting: 0, 'no-worker': 0, queued: 0, processing: 0, memory: 0, erred: 0, forgotten: 0,
  };
  private readonly queue = new TaskHeap();
  /** Tasks in no-worker, with the time they became unrunnable (for noWorkersTimeoutMs). */
  private readonly unrunnable = new Map<TaskRecord, number>();
  /** No-worker tasks reported to their clients, with the reason (see reportNoWorker). */
  private readonly noWorkerReasons = new Map<TaskRecord, string>();
  /** Since when there has been work but no running worker (ms), or -1. */
  private noWorkersSince = -1;
  private readonly log: TransitionLog<TaskStateName>;
  private sequence = 0;
  private readonly groupDurationMs = new Map<string, number>();
  private avgDurationMs = -1;
  private actions: SchedulerAction[] = [];
  private runningCache: WorkerRecord[] | null = null;
  /** The running workers by load and the steal victims (rebuilt with runningCache). */
  private readonly load = new LoadIndex();
  private workerSeq = 0;
  private readonly victimsScratch: WorkerRecord[] = [];
  private readonly pendingFrees = new Map<string, Extract<SchedulerAction, { type: 'FreeKeys' }>>();
  /** Retiring workers that wait for copies of their results (pendingReplicas set). */
  private readonly retiringWithCopies = new Set<WorkerRecord>();
  private readonly recs = new Recommendations();
  private freedSlots = new Set<WorkerRecord>();
  private stimulusId = '';
  /** Steal requests made (their stimulus ids). */
  private stealSeq = 0;
  /** The clock, read once per event. */
  private nowMs = 0;
  /** Transitions by start, then finish state (no string building per transition). */
  private readonly table: Partial<Record<TaskStateName, Partial<Record<TaskStateName, Transition>>>>;
  readonly opts: SchedulerStateOptions;
  /** Counts per task group, task stream and errors for the dashboard (telemetry.ts). */
  readonly telemetry = new SchedulerTelemetry();

  constructor(opts: Partial<SchedulerStateOptions> & Pick<SchedulerStateOptions, 'now'>) {
    this.opts = {
      workerSaturation: 1.1,
      inlineBytes: 64 * 1024,
      allowedFailures: 3,
      workerTtlMs: 30_000,
      logSize: 100_000,
      validate: false,
      noWorkersTimeoutMs: Infinity,
      maxKeyLength: 8192,
      maxKeysPerUpdate: 1_000_000,
      ...opts,
    };
    this.log = new TransitionLog(this.opts.logSize, TASK_STATES);
    const place = this.place;
    const toReleased = this.activeToReleased;
    const toErred = this.toErred;
    this.table = {
      released: { waiting: this.releasedToWaiting, forgotten: this.toForgotten, erred: toErred },
      waiting: { processing: place, released: toReleased, erred: toErred },
      queued: { processing: place, released: toReleased, erred: toErred },
      'no-worker': { processing: place, released: toReleased, erred: toErred },
      processing: { released: toReleased, erred: toErred, memory: this.processingToMemory },
      memory: { released: this.memoryToReleased },
      erred: { released: this.erredToReleased, forgotten: this.toForgotten },
    };
  }

  // ------------------------------------------------------------------ public API

  /**
   * Test-only fault injection: when set, called after the event's own changes (`dispatched`,
   * recommendations pending) and after they settled (`drained`, actions decided but not yet
   * returned); a throw from it is handled as any bug in `handle` (see `recover`). Unset, it costs
   * two property reads per event.
   */
  faultHook: ((event: SchedulerEvent, point: 'dispatched' | 'drained') => void) | undefined = undefined;
  /** Told of every task transition (scheduler plugins' transition hook); undefined: none to tell. */
  onTransition: ((key: string, start: TaskStateName, finish: TaskStateName, stimulusId: string, worker: string) => void) | undefined = undefined;

  /**
   * Handles one event and returns the actions for the shell. A throw inside (a bug) never leaves
   * the event half-applied: see `recover`.
   */
  handle(event: SchedulerEvent): SchedulerAction[] {
    this.actions = [];
    this.stimulusId = event.stimulusId;
    this.nowMs = this.opts.now();
    this.pendingFrees.clear();
    const mark = this.log.pushed;
    try {
      this.dispatch(event);
      if (this.faultHook !== undefined) this.faultHook(event, 'dispatched');
      this.drain();
      // A copy a retirement waits for may have become needless meanwhile (released, forgotten).
      if (this.retiringWithCopies.size > 0) this.checkRetirements();
      if (this.faultHook !== undefined) this.faultHook(event, 'drained');
    } catch (err) {
      this.recover(event, err, mark);
    }
    this.pendingFrees.clear();
    if (this.opts.validate) this.validateState();
    return this.actions;
  }

  /**
   * The failure policy for a throw inside `handle` (a bug in Skein; packages/protocol/README.md,
   * "Internal errors"): no recommendation of the failed event survives into the next one, and the
   * tasks the event touched are failed with an InternalError naming the event, its stimulus id,
   * the cause and the task's story, reported to the clients that want them through the normal
   * `erred` transition (their dependents err with it; every other task and client carries on).
   * Touched: the keys the event names, the tasks it transitioned (the log since `mark`), and the
   * tasks with a recommendation pending when it threw. Of those, tasks in memory or erred keep
   * their state (a fact a worker reported); the others (released but still needed, waiting,
   * queued, no-worker, processing) err. Compute actions for tasks no longer processing there are
   * dropped. If failing them throws too, the state is beyond repair here: that error propagates.
   */
  private recover(event: SchedulerEvent, err: unknown, mark: number): void {
    const pending = this.recs.clear();
    this.freedSlots.clear();
    const touched = this.log.keysSince(mark);
    for (const ts of pending) touched.add(ts.key);
    for (const key of eventKeys(event)) touched.add(key);
    const cause = err instanceof Error ? err.message : String(err);
    const stimulusId = event.stimulusId;
    const failure = (key: string, state: string): ErrorInfo =>
      taskError(
        key,
        'internal',
        `The scheduler hit an internal error while handling ${event.type} (stimulus ${stimulusId}): ${cause}. ` +
          `Task ${key} (${state} then) is failed rather than left half-done. This is a bug in Skein: please report it with ` +
          "this error's details (its story). Submit the task again under a new key to retry it.",
        { key, stimulusId, event: event.type, cause, story: this.story([key]) },
      );
    let failed = 0;
    // Keys a client asked for in this event that the state does not know (it threw before adding them).
    if (event.type === 'GraphUpdated' || event.type === 'ClientWantsKeys') {
      for (const key of event.type === 'GraphUpdated' ? event.wanted : event.keys) {
        if (this.tasks.has(key)) continue;
        this.report(event.client, { type: 'erred', key, error: failure(key, 'unknown') });
        failed++;
      }
    }
    for (const key of touched) {
      const ts = this.tasks.get(key);
      if (!ts || ts.state === 'memory' || ts.state === 'erred' || ts.state === 'forgotten') continue;
      if (ts.state === 'released' && !this.needed(ts)) continue;
      ts.exception = failure(key, ts.state);
      ts.exceptionBlame = key;
      this.recs.set(ts, 'erred');
      failed++;
    }
    this.drain();
    this.actions = this.actions.filter((a) => a.type !== 'Compute' || this.tasks.get(a.key)?.processingOn?.address === a.worker);
    const stack = err instanceof Error ? (err.stack ?? '') : '';
    this.actions.push({ type: 'StateError', event: event.type, message: cause, stack, failed, stimulusId });
  }

  story(keys: Iterable<string>): TransitionRecord[] {
    return this.log.select(new Set(keys));
  }

  /** Where each key's result is held now (none unless in memory on workers); Dask's who_has. */
  whoHas(keys: readonly string[]): WhoHasInfo[] {
    return keys.map((key) => {
      const ts = this.tasks.get(key);
      const held = ts !== undefined && ts.state === 'memory';
      return { key, workers: held ? ts.whoHas.map((w) => w.address) : [], nbytes: held ? ts.nbytes : -1 };
    });
  }

  /**
   * The number of workers the current load calls for (Dask's adaptive_target): enough threads to
   * finish the queued and running work within `targetDurationMs`, twice the workers when managed
   * memory passes 60% of the cluster's limit, at least one while there is work; and, when fewer
   * workers would do, the idle ones to retire first (least data held first).
   */
  adaptiveTarget(targetDurationMs = 5_000): { target: number; workersToClose: string[]; current: number; reason: string } {
    const workers = [...this.workers.values()].filter((w) => w.status !== 'retiring');
    const current = workers.length;
    const threads = workers.reduce((n, w) => n + w.nthreads, 0);
    const threadsPerWorker = current ? threads / current : 1;
    let workMs = 0;
    for (const w of workers) for (const ts of w.processing) workMs += this.expectedDuration(ts);
    for (const ts of this.queue) workMs += this.expectedDuration(ts);
    for (const ts of this.unrunnable.keys()) workMs += this.expectedDuration(ts);
    const pending = this.counts.processing + this.counts.queued + this.counts['no-worker'];
    let target = Math.ceil(workMs / Math.max(1, targetDurationMs) / threadsPerWorker);
    // Never more workers than there are tasks to run.
    target = Math.min(target, Math.ceil(pending / threadsPerWorker));
    let reason = target > 0 ? 'cpu' : 'none';
    const limit = workers.reduce((n, w) => n + w.memoryLimit, 0);
    const managed = workers.reduce((n, w) => n + w.metrics.managedBytes, 0);
    if (limit > 0 && managed > 0.6 * limit && 2 * current > target) {
      target = 2 * current;
      reason = 'memory';
    }
    if (pending > 0 && target < 1) target = 1;
    // Keep the workers that hold data someone still needs.
    const holding = workers.filter((w) => w.processing.size > 0 || [...w.hasWhat].some((ts) => this.needed(ts) && ts.whoHas.length === 1 && !ts.inline)).length;
    if (target < holding) target = holding;
    const workersToClose: string[] = [];
    if (target < current) {
      reason = reason === 'none' ? 'idle' : reason;
      const idle = workers.filter((w) => w.processing.size === 0).sort((a, b) => a.nbytes - b.nbytes);
      for (const w of idle.slice(0, current - target)) workersToClose.push(w.address);
    }
    return { target, workersToClose, current, reason };
  }

  /** Throws if an invariant is broken. Run after every event in tests. */
  validateState(): void {
    const fail = (msg: string): never => {
      throw new Error(`SchedulerState invariant broken: ${msg}`);
    };
    const counted: Record<string, number> = {};
    for (const [key, ts] of this.tasks) {
      counted[ts.state] = (counted[ts.state] ?? 0) + 1;
      if (ts.key !== key) fail(`task map key ${key} holds ${ts.key}`);
      if (ts.state === 'forgotten') fail(`${key} is forgotten but still known`);
      if ((ts.state === 'processing') !== (ts.processingOn !== null)) fail(`${key} ${ts.state} processingOn=${ts.processingOn?.address}`);
      if (ts.processingOn && !ts.processingOn.processing.has(ts)) fail(`${key} not in its worker's processing set`);
      if (ts.stealingFrom && ts.stealingFrom !== ts.processingOn) fail(`${key} ${ts.state} on ${ts.processingOn?.address} is being stolen from ${ts.stealingFrom.address}`);
      if ((ts.state === 'memory') !== ts.hasData) fail(`${key} is ${ts.state} with hasData=${ts.hasData}`);
      if ((ts.state === 'queued') !== (ts.heapIndex >= 0)) fail(`${key} ${ts.state} heapIndex=${ts.heapIndex}`);
      if ((ts.state === 'no-worker') !== this.unrunnable.has(ts)) fail(`${key} ${ts.state} vs unrunnable set`);
      if (this.noWorkerReasons.has(ts) && ts.state !== 'no-worker') fail(`${key} reported no-worker in ${ts.state}`);
      if (ts.state === 'waiting') {
        const notInMemory = ts.dependencies.filter((d) => d.state !== 'memory').length;
        if (ts.waitingCount === 0) fail(`${key} waiting on nothing`);
        if (ts.waitingCount !== notInMemory) fail(`${key} waits on ${ts.waitingCount} inputs but ${notInMemory} are not in memory`);
      }
      for (const d of ts.dependencies) {
        if (!d.dependents.includes(ts)) fail(`${d.key} lacks dependent ${key}`);
        if (!this.tasks.has(d.key)) fail(`${key} depends on forgotten ${d.key}`);
        if (ACTIVE.has(ts.state) && !d.waiters?.has(ts)) fail(`${d.key} lacks waiter ${key} (${ts.state})`);
      }
      for (const w of ts.waiters ?? []) if (!ACTIVE.has(w.state)) fail(`${key} has waiter ${w.key} in ${w.state}`);
      for (const ws of ts.whoHas) {
        if (!ws.hasWhat.has(ts)) fail(`${ws.address} lacks ${key} in hasWhat`);
        if (this.workers.get(ws.address) !== ws) fail(`${key} held by removed worker ${ws.address}`);
      }
      for (const c of ts.wanters()) if (!this.clients.get(c)?.has(ts)) fail(`client ${c} lacks ${key}`);
    }
    for (const s of Object.keys(this.counts) as TaskStateName[]) {
      if (s !== 'forgotten' && (counted[s] ?? 0) !== this.counts[s]) fail(`count of ${s}: ${this.counts[s]} != ${counted[s] ?? 0}`);
    }
    const index = this.load.problem(this.workers, this.runningCache);
    if (index !== null) fail(index);
    for (const ws of this.workers.values()) {
      for (const ts of ws.processing) if (ts.processingOn !== ws) fail(`${ws.address} processing ${ts.key} owned by ${ts.processingOn?.address}`);
      for (const ts of ws.hasWhat) if (!ts.whoHas.includes(ws)) fail(`${ws.address} hasWhat ${ts.key} without whoHas`);
    }
  }

  // ------------------------------------------------------------------ events

  private dispatch(e: SchedulerEvent): void {
    switch (e.type) {
      case 'ClientConnected':
        if (!this.clients.has(e.client)) this.clients.set(e.client, new Set());
        return;
      case 'ClientDisconnected': {
        const wanted = this.clients.get(e.client);
        if (!wanted) return;
        this.releaseWants(e.client, [...wanted].map((t) => t.key));
        this.clients.delete(e.client);
        this.pureConflicts.delete(e.client);
        return;
      }
      case 'GraphUpdated':
        return this.updateGraph(e.client, e.tasks, e.wanted, e.broadcast, e.problem);
      case 'ClientReleasedKeys':
        return this.releaseWants(e.client, e.keys);
      case 'ClientCancelledKeys':
        return this.cancelKeys(e.client, e.keys);
      case 'ClientWantsKeys':
        return this.addWants(e.client, e.keys);
      case 'WorkerAdded':
        return this.addWorker(e.worker);
      case 'WorkerRemoved':
        return this.removeWorker(e.worker, e.expected, e.reason);
      case 'TaskFinished':
        return this.taskFinished(e.worker, e);
      case 'TasksFinished':
        // One event for a worker's whole batch: the transitions settle once, at the end.
        for (const t of e.tasks) this.taskFinished(e.worker, t);
        return;
      case 'TaskErred': {
        const ts = this.tasks.get(e.key);
        if (!ts || ts.state !== 'processing' || ts.processingOn?.address !== e.worker) {
          const ws = this.workers.get(e.worker);
          // Released or forgotten while it ran is a race; anything else was not this worker's to report.
          if (ws && ts && ts.state !== 'released' && ts.state !== 'erred') this.refuse(ws, ts, 'TaskErred');
          return;
        }
        this.recordDuration(ts, e.stopMs - e.startMs);
        this.telemetry.taskRan(e.worker, ts.key, ts.group, e.startMs, e.stopMs, true); // dashboard
        if (ts.retriesLeft > 0) {
          ts.retriesLeft--;
          this.recs.set(ts, 'released');
        } else {
          ts.exception = { ...e.error, key: ts.key };
          ts.exceptionBlame = ts.key;
          this.recs.set(ts, 'erred');
        }
        return;
      }
      case 'ReplicasAdded': {
        const ws = this.workers.get(e.worker);
        if (!ws) return;
        const stale: string[] = [];
        for (const info of e.keys) {
          const ts = this.tasks.get(info.key);
          if (!ts || ts.state !== 'memory') {
            // A copy reported before this worker was asked to compute the key again: freeing it
            // would cancel that run (a report of the run follows, with its value if the copy is still there).
            if (ts?.processingOn !== ws) stale.push(info.key);
            continue;
          }
          // Only a copy this worker was asked for (AcquireReplicas): no worker adds itself as a holder.
          if (!ts.replicaTargets?.delete(ws) && !ts.whoHas.includes(ws)) {
            this.refuse(ws, ts, 'ReplicasAdded');
            continue;
          }
          if (ts.replicaTargets?.size === 0) ts.replicaTargets = null;
          this.addReplica(ts, ws, info.nbytes);
        }
        if (stale.length) this.emit({ type: 'FreeKeys', worker: ws.address, keys: stale, stimulusId: this.stimulusId });
        this.checkRetirements();
        return;
      }
      case 'WorkerReleasedKeys': {
        const ws = this.workers.get(e.worker);
        if (!ws) return;
        for (const key of e.keys) {
          const ts = this.tasks.get(key);
          if (ts) this.dropReplica(ts, ws);
        }
        return;
      }
      case 'MissingData': {
        const ts = this.tasks.get(e.key);
        const errant = this.workers.get(e.errant);
        if (ts && errant && ts.whoHas.includes(errant)) {
          this.dropReplica(ts, errant);
          // A failed fetch does not prove the copy gone (the connection may have broken on the
          // way): the errant worker drops whatever it still has, or nothing would ever free it.
          this.emit({ type: 'FreeKeys', worker: errant.address, keys: [ts.key], stimulusId: this.stimulusId });
        }
        return;
      }
      case 'RescheduleRequested': {
        const ts = this.tasks.get(e.key);
        if (ts && ts.state === 'processing' && ts.processingOn?.address === e.worker) this.recs.set(ts, 'released');
        return;
      }
      case 'StealResponse': {
        const ts = this.tasks.get(e.key);
        // A reply to an earlier request (for a run that ended since, the task given to this
        // worker again and asked back again) is stale: the current request's reply follows it.
        if (!ts || ts.stealingFrom?.address !== e.worker || ts.stealId !== e.stimulusId) return;
        ts.stealingFrom = null;
        if (ts.state === 'processing' && ts.processingOn?.address === e.worker && STEALABLE_WORKER_STATES.has(e.state)) {
          this.recs.set(ts, 'released');
        }
        return;
      }
      case 'Heartbeat': {
        const ws = this.workers.get(e.worker);
        if (!ws) return;
        const now = this.opts.now();
        ws.lastSeenMs = now;
        ws.metrics = e.metrics;
        const m = e.metrics;
        ws.history.push({ timeMs: now, memoryRss: m.memoryRss, managedBytes: m.managedBytes, spilledBytes: m.spilledBytes, cpuPercent: m.cpuPercent, executing: m.executing });
        if (ws.history.length > HISTORY_SAMPLES) ws.history.splice(0, ws.history.length - HISTORY_SAMPLES);
        // A paused worker (memory past its pause threshold) gets no new tasks until it resumes.
        if (m.paused && ws.status === 'running') {
          ws.status = 'paused';
          this.runningCache = null;
        } else if (!m.paused && ws.status === 'paused') {
          ws.status = 'running';
          this.runningCache = null;
          this.freedSlots.add(ws);
          for (const ts of this.unrunnable.keys()) this.recs.set(ts, 'processing');
        }
        return;
      }
      case 'RetireWorkers':
        return this.retireWorkers(e.workers, e.n);
      case 'TransferDone': {
        const first = e.keys[0] ?? '';
        this.telemetry.transferred(e.worker, first, this.tasks.get(first)?.group ?? first, e.startMs, e.stopMs, e.nbytes); // dashboard
        return;
      }
      case 'ClusterRestarted':
        return this.forgetEverything(e.reason);
      case 'Tick': {
        const now = this.opts.now();
        for (const ws of [...this.workers.values()]) {
          if (now - ws.lastSeenMs > this.opts.workerTtlMs) {
            const reason = `no heartbeat for ${Math.round((now - ws.lastSeenMs) / 1000)} s`;
            this.emit({ type: 'CloseWorker', worker: ws.address, reason, stimulusId: this.stimulusId });
            this.removeWorker(ws.address, false, reason);
          }
        }
        if (this.opts.noWorkersTimeoutMs < Infinity) this.checkNoWorkers(now);
        this.balance();
        return;
      }
      default: {
        const never: never = e;
        throw new Error(`unknown scheduler event ${JSON.stringify(never)}`);
      }
    }
  }

  private updateGraph(client: string, defs: TaskDef[], wanted: string[], broadcast: string[], problem?: string): void {
    const refused = problem ?? this.checkUpdate(defs, wanted);
    if (refused !== null) return this.refuseUpdate(client, wanted, refused);
    if (!this.clients.has(client)) this.clients.set(client, new Set());
    const added: TaskRecord[] = [];
    const addedDefs: TaskDef[] = [];
    const first = this.sequence;
    let refusedNow: string[] | null = null;
    for (const def of defs) {
      const existing = this.tasks.get(def.key);
      if (existing) {
        if (existing.sequence >= first) {
          // Listed twice in this update: nothing of it stays (only `tasks` was touched so far).
          for (const ts of added) this.tasks.delete(ts.key);
          return this.refuseUpdate(client, wanted, `key "${clip(def.key)}" is defined twice in one update; every task of an update needs its own key`);
        }
        // Known before this update: the first definition stays. A pure key is shared only with a
        // task whose key is its definition's (tenancy): another client's task of that key with
        // another definition, or built on one, is not this client's result.
        if (def.pure && existing.owner !== client && !this.verifiedPure(existing)) (refusedNow ??= []).push(def.key);
        continue;
      }
      const ts = new TaskRecord(def, this.internFunction(def.fn), this.internGroup(def.key), this.sequence++);
      ts.owner = client;
      this.tasks.set(def.key, ts);
      added.push(ts);
      addedDefs.push(def);
    }
    // This client's conflict marks: its keys of this update that stand for another definition,
    // and none for the keys it defines anew (an old mark of a key since forgotten goes).
    let conflicts = this.pureConflicts.get(client);
    if (refusedNow) {
      if (!conflicts) this.pureConflicts.set(client, (conflicts = new Set()));
      for (const key of refusedNow) conflicts.add(key);
    }
    for (const ts of added) {
      conflicts?.delete(ts.key);
      this.counts.released++;
      this.telemetry.added(ts.group); // dashboard
      if (ts.restrictions !== null) this.checkResources(ts);
    }
    // Linked once the whole batch exists: a graph may list a task before its inputs.
    // Inputs that are not older than their task (a graph listing a task before its inputs, or a
    // cycle) need the cycle check; a graph in dependency order, the usual case, costs nothing.
    let unordered = false;
    let lastDeps: TaskRecord[] | null = null;
    for (let i = 0; i < added.length; i++) {
      const ts = added[i]!;
      const depKeys = addedDefs[i]!.dependencies;
      if (depKeys.length === 0) continue;
      const deps: TaskRecord[] = new Array(depKeys.length);
      let nDeps = 0;
      let missing: string[] | null = null;
      let conflicting: string | undefined;
      for (const depKey of depKeys) {
        const dep = this.tasks.get(depKey);
        if (dep) {
          deps[nDeps++] = dep;
          if (dep.sequence >= ts.sequence) unordered = true;
        } else (missing ??= []).push(depKey);
        if (conflicts?.has(depKey)) conflicting ??= depKey;
      }
      if (missing) deps.length = nDeps;
      // Consecutive tasks with the same inputs (a map over one shared input) share one list.
      if (lastDeps !== null && sameTasks(lastDeps, deps)) ts.setDependencies(lastDeps);
      else ts.setDependencies((lastDeps = deps));
      for (const dep of deps) dep.addDependent(ts);
      if (conflicting !== undefined && !missing) {
        ts.exception = this.pureConflict(conflicting, `Task ${ts.key} uses ${conflicting}, whose result is not this client's: `);
        ts.exceptionBlame = ts.key;
        ts.refused = true;
      }
      if (missing) {
        ts.exception = taskError(
          ts.key,
          'invalid_argument',
          `Task ${ts.key} depends on ${missing.map((k) => `"${k}"`).join(', ')}, which the scheduler does not know ` +
            '(never submitted, or already released). Keep a future for every input you pass to a task until it is submitted.',
          { missing },
        );
        ts.exceptionBlame = ts.key;
        ts.refused = true;
      }
    }
    // Old tasks never depend on new ones, so a cycle lies within one update.
    if (unordered) this.refuseCycles(added);
    for (const key of broadcast) {
      const ts = this.tasks.get(key);
      if (ts) ts.broadcast = true;
    }
    if (refusedNow) {
      const refused = new Set(refusedNow);
      wanted = wanted.filter((k) => !refused.has(k));
      for (const key of refused) this.report(client, { type: 'erred', key, error: this.pureConflict(key, '') });
    }
    this.addWants(client, mixedPriorities(added) ? this.bestFirst(wanted) : wanted);
    // Tasks nobody wants and nothing depends on are dropped again.
    for (const ts of added) {
      if (ts.state === 'released' && !this.needed(ts) && ts.dependents.length === 0) this.recs.set(ts, 'forgotten');
    }
  }

  /**
   * What makes a graph update unacceptable as a whole, before anything changes (O(keys), no
   * allocation): too many tasks or wanted keys, a key over the length limit, a task without a function. null: fine.
   * Duplicate keys are found while adding (updateGraph); a missing dependency fails only its task.
   */
  private checkUpdate(defs: readonly TaskDef[], wanted: readonly string[]): string | null {
    const { maxKeysPerUpdate, maxKeyLength } = this.opts;
    if (defs.length > maxKeysPerUpdate || wanted.length > maxKeysPerUpdate) {
      return `it has ${defs.length} tasks and ${wanted.length} wanted keys, more than the scheduler's limit of ${maxKeysPerUpdate} keys per update (scheduler option maxKeysPerUpdate, --max-keys-per-update); submit the graph in parts`;
    }
    for (const def of defs) {
      if (def.key.length > maxKeyLength) return tooLong(def.key, maxKeyLength);
      if (def.fn.registered === '' && def.fn.inlineHash === '') return `task "${clip(def.key)}" has no function (neither a registered name nor an inline function hash)`;
    }
    for (const key of wanted) if (key.length > maxKeyLength) return tooLong(key, maxKeyLength);
    return null;
  }

  /** Refuses a whole graph update: each key it wants errs for its client; nothing else changes (Dask's update_graph failing). */
  private refuseUpdate(client: string, wanted: readonly string[], problem: string): void {
    const message =
      `The scheduler refused graph update ${this.stimulusId} from client ${client}: ${problem}. ` +
      'Nothing of this update was added; fix it and submit again.';
    for (const key of wanted) this.report(client, { type: 'erred', key, error: taskError(key, 'invalid_argument', message, { problem }) });
  }

  /**
   * Refuses the dependency cycles among the tasks of one update, self-dependencies included
   * (Kahn's algorithm, O(tasks + edges)): the tasks on a cycle, and those that depend on one, err
   * with an InvalidArgumentError that names the cycle, and lose their dependencies, so nothing
   * waits forever and they are forgotten like any erred task once released.
   */
  private refuseCycles(added: TaskRecord[]): void {
    // Inputs of each task from this same update (counted with repeats, as `dependents` lists them).
    const indegree = new Map<TaskRecord, number>();
    for (const ts of added) indegree.set(ts, 0);
    for (const ts of added) {
      for (const d of ts.dependencies) if (indegree.has(d)) indegree.set(ts, indegree.get(ts)! + 1);
    }
    const ready: TaskRecord[] = [];
    for (const ts of added) if (indegree.get(ts) === 0) ready.push(ts);
    for (let i = 0; i < ready.length; i++) {
      for (const d of ready[i]!.dependents) {
        const n = indegree.get(d)! - 1;
        indegree.set(d, n);
        if (n === 0) ready.push(d);
      }
    }
    if (ready.length === added.length) return;
    // Every task left has an input left: walking inputs from one of them must come round.
    let ts = added.find((t) => indegree.get(t)! > 0)!;
    const path: TaskRecord[] = [];
    const onPath = new Map<TaskRecord, number>();
    while (!onPath.has(ts)) {
      onPath.set(ts, path.length);
      path.push(ts);
      ts = ts.dependencies.find((d) => (indegree.get(d) ?? 0) > 0)!;
    }
    const cycle = path.slice(onPath.get(ts)).map((t) => t.key);
    const shown = cycle.length > 10 ? [...cycle.slice(0, 10), '…'] : cycle;
    const text =
      cycle.length === 1
        ? `task "${cycle[0]}" depends on itself`
        : `the tasks ${[...shown, cycle[0]!].map((k) => `"${k}"`).join(' -> ')} depend on each other in a cycle`;
    const inCycle = new Set(cycle);
    for (const t of added) {
      if (indegree.get(t)! === 0) continue;
      t.exception = taskError(
        t.key,
        'invalid_argument',
        `Task ${t.key} ${inCycle.has(t.key) ? 'is on' : 'depends on'} a dependency cycle: ${text}, so none of them can ever run. ` +
          'A task cannot need its own result, directly or through other tasks: check the keys of the graph.',
        { cycle },
      );
      t.exceptionBlame = t.key;
      t.refused = true;
      for (const d of t.dependencies) {
        for (let i = d.dependents.indexOf(t); i >= 0; i = d.dependents.indexOf(t)) d.dependents.splice(i, 1);
      }
      t.setDependencies([]);
    }
  }

  private pureConflict(key: string, prefix: string): ErrorInfo {
    return taskError(
      key,
      'already_exists',
      `${prefix}the scheduler already has a task ${key} that another client defined, and its key is not the pure key of its ` +
        'definition (it was submitted with another function or arguments, under an explicit key, or uses such a task): ' +
        "a pure key shares only a result its key stands for, so this client does not get that one. Submit under another key (key: '...') " +
        'or with pure: false, or find out who submits that key.',
      { key },
    );
  }

  /**
   * Whether a task's key is the pure key of its definition (pureKeyMatches) and so is every
   * input's, transitively: then its result is what the key stands for, whoever submitted it.
   * Checked once per task, when another client submits its key as pure (memoized in `purity`).
   */
  private verifiedPure(root: TaskRecord): boolean {
    const stack = [root];
    while (stack.length > 0) {
      const ts = stack[stack.length - 1]!;
      if (ts.purity !== PURE_UNCHECKED) {
        stack.pop();
        continue;
      }
      let ok = pureKeyMatches(ts.key, ts.fn, ts.resultEncoding, ts.toDef().args.data);
      let pending = false;
      for (const d of ts.dependencies) {
        if (!ok) break;
        if (d.purity === PURE_UNCHECKED) {
          stack.push(d);
          pending = true;
        } else if (d.purity !== PURE_VERIFIED) ok = false;
      }
      if (ok && pending) continue; // again once its inputs are settled
      ts.purity = ok ? PURE_VERIFIED : NOT_PURE;
      stack.pop();
    }
    return root.purity === PURE_VERIFIED;
  }

  /** A resource quantity must be a finite number, 0 or more; anything else is refused. */
  private checkResources(ts: TaskRecord): void {
    const resources = ts.restrictions!.resources;
    for (const [name, q] of resources) {
      if (typeof q === 'number' && Number.isFinite(q) && q >= 0) continue;
      ts.exception = taskError(
        ts.key,
        'invalid_argument',
        `Task ${ts.key} asks for ${String(q)} of resource "${name}": a resource quantity must be a finite number, 0 or more.`,
        { resource: name, quantity: String(q) },
      );
      ts.exceptionBlame = ts.key;
      ts.refused = true;
      return;
    }
  }

  private addWants(client: string, keys: string[]): void {
    let mine = this.clients.get(client);
    if (!mine) this.clients.set(client, (mine = new Set()));
    for (const key of keys) {
      const ts = this.tasks.get(key);
      if (!ts) {
        this.report(client, {
          type: 'cancelled',
          key,
          reason: 'the scheduler does not know this key (it was released, or never submitted)',
        });
        continue;
      }
      ts.addWanter(client);
      mine.add(ts);
      if (ts.state === 'memory') this.report(client, this.inMemoryReport(ts));
      else if (ts.state === 'erred') this.report(client, { type: 'erred', key, error: ts.exception! });
      else if (ts.state === 'no-worker') {
        const reason = this.noWorkerReasons.get(ts);
        if (reason !== undefined) this.report(client, { type: 'no-worker', key, reason, resolved: false });
      } else if (ts.state === 'released') {
        if (ts.refused) {
          this.recs.set(ts, 'erred');
        } else {
          this.recs.set(ts, 'waiting');
        }
      }
    }
  }

  /**
   * A client cancels keys (Dask's cancel_key). The client gets one 'cancelled' report per key it
   * names, whether the scheduler knows the key or not, so it can tell the reports of the
   * cancelled task from those of a resubmission of the same key that follows (they come after
   * that report). A key nobody else wants any more is released, and with it each of its
   * dependents that has no result yet, transitively, for every client that wants them.
   */
  private cancelKeys(client: string, keys: string[]): void {
    const mine = this.clients.get(client);
    let orphans: TaskRecord[] | null = null;
    for (const key of keys) {
      this.report(client, { type: 'cancelled', key, reason: 'cancelled by the client' });
      const ts = this.tasks.get(key);
      if (!ts || !ts.removeWanter(client)) continue;
      mine?.delete(ts);
      if (ts.whoWants === null) (orphans ??= []).push(ts);
      else this.releaseIfUnneeded(ts);
    }
    if (!orphans) return;
    // Dependents after every key of the message left this client: it is not told twice.
    const cancelled = new Set<TaskRecord>();
    const stack: Array<[TaskRecord, string]> = [];
    for (const ts of orphans) for (const d of ts.dependents) stack.push([d, ts.key]);
    while (stack.length > 0) {
      const [d, cause] = stack.pop()!;
      if (cancelled.has(d) || d.state === 'memory' || d.state === 'erred') continue;
      cancelled.add(d);
      const reason = `its input ${cause} was cancelled`;
      for (const c of d.wanters()) {
        this.report(c, { type: 'cancelled', key: d.key, reason });
        this.clients.get(c)?.delete(d);
      }
      d.whoWants = null;
      for (const dd of d.dependents) stack.push([dd, d.key]);
    }
    for (const ts of orphans) this.releaseIfUnneeded(ts);
    for (const d of cancelled) this.releaseIfUnneeded(d);
  }

  private releaseWants(client: string, keys: string[]): void {
    const mine = this.clients.get(client);
    for (const key of keys) {
      const ts = this.tasks.get(key);
      if (!ts || !ts.removeWanter(client)) continue;
      mine?.delete(ts);
      this.releaseIfUnneeded(ts);
    }
  }

  private releaseIfUnneeded(ts: TaskRecord): void {
    if (this.needed(ts) || this.recs.has(ts)) return;
    switch (ts.state) {
      case 'released':
      case 'erred':
        if (ts.dependents.length === 0) this.recs.set(ts, 'forgotten');
        return;
      case 'forgotten':
        return;
      case 'waiting':
      case 'no-worker':
      case 'queued':
      case 'processing':
      case 'memory':
        this.recs.set(ts, 'released');
    }
  }

  private addWorker(spec: WorkerSpec): void {
    const existing = this.workers.get(spec.address);
    if (existing) this.removeWorker(spec.address, true, 'replaced by a new connection from the same address');
    const ws = new WorkerRecord(
      spec.address,
      spec.name || spec.address,
      Math.max(1, spec.nthreads),
      spec.memoryLimit,
      spec.resources,
      new Set(spec.registeredFunctions),
      spec.pid,
      spec.nannyAddress,
      this.opts.now(),
    );
    ws.order = ++this.workerSeq;
    this.workers.set(ws.address, ws);
    this.runningCache = null;
    // What a (re)connecting worker says it holds is not taken: nothing shows it computed or was
    // sent those results (the scheduler dropped this address's holdings when it removed it), and
    // a holder is what clients and dependents fetch from. It drops them; the results stay where
    // the scheduler knows them to be.
    if (spec.held.length) this.emit({ type: 'FreeKeys', worker: ws.address, keys: spec.held.map((h) => h.key), stimulusId: this.stimulusId });
    for (const ts of this.unrunnable.keys()) this.recs.set(ts, 'processing');
    this.freedSlots.add(ws);
    this.stealFor(ws);
  }

  private removeWorker(address: string, expected: boolean, reason: string): void {
    const ws = this.workers.get(address);
    if (!ws) return;
    this.workers.delete(address);
    this.retiringWithCopies.delete(ws);
    this.runningCache = null;
    this.load.forget(ws);
    for (const ts of ws.processing) {
      if (!expected) {
        ts.suspicious++;
        ts.lastDeathReason = reason;
      }
      if (ts.suspicious > this.opts.allowedFailures) {
        ts.exception = taskError(
          ts.key,
          'killed_worker',
          `Task ${ts.key} was running on ${ts.suspicious} workers that died (last: ${reason}); it is not retried again. ` +
            'Check the task for crashes or memory use, or raise allowed-failures.',
          { key: ts.key, deaths: ts.suspicious, reason },
        );
        ts.exceptionBlame = ts.key;
        this.recs.set(ts, 'erred');
      } else {
        this.recs.set(ts, 'released');
      }
    }
    // A retired worker's clients were told the new holders already (checkRetirements).
    const retired = ws.status === 'retiring' && ws.pendingReplicas === null;
    for (const ts of ws.hasWhat) {
      ts.removeHolder(ws);
      if (!ts.hasData && ts.state === 'memory') this.recs.set(ts, 'released');
      else if (!retired && ts.state === 'memory' && ts.whoWants !== null && !ts.inline) this.reportHolders(ts, null);
    }
    ws.hasWhat.clear();
    ws.nbytes = 0;
    // Tasks still listed as processing on the removed worker leave it in their transitions.
    for (const other of this.workers.values()) this.freedSlots.add(other);
    // Copies a retiring worker waits for may have been asked of the removed worker: ask again
    // (a worker that has one or is fetching it already ignores the repeat); with no running
    // worker left, the retirement waits for nothing, as when it began with none.
    for (const other of this.workers.values()) {
      if (other.status !== 'retiring' || !other.pendingReplicas || other.pendingReplicas.size === 0) continue;
      const remaining = this.running();
      if (remaining.length === 0) other.pendingReplicas.clear();
      else this.planReplicas(other, [...other.pendingReplicas], remaining);
    }
    this.checkRetirements();
  }

  private taskFinished(worker: string, e: FinishedTask): void {
    const ws = this.workers.get(worker);
    const ts = this.tasks.get(e.key);
    if (!ws) return;
    if (!ts || ts.state === 'released' || ts.state === 'forgotten' || ts.state === 'erred') {
      // Released (or never known) while it ran: the worker drops its copy.
      this.emit({ type: 'FreeKeys', worker: ws.address, keys: [e.key], stimulusId: this.stimulusId });
      return;
    }
    // A worker reports only on the tasks it was given (Dask drops a finish with a stale run id):
    // a result from any other, a worker the task was taken back from or one that never had it,
    // reaches no client and names no holder. (A victim gives a stolen task up before it starts.)
    if (ts.processingOn !== ws) {
      if (!ts.whoHas.includes(ws)) this.refuse(ws, ts, 'TaskFinished');
      return; // else: a repeated report of a result it holds
    }
    this.recordDuration(ts, e.stopMs - e.startMs);
    ts.typeName = e.typeName;
    if (e.value && e.value.data.byteLength <= this.opts.inlineBytes) ts.inline = e.value;
    this.addReplica(ts, ws, e.nbytes);
    this.telemetry.taskRan(ws.address, ts.key, ts.group, e.startMs, e.stopMs, false); // dashboard
    this.recs.set(ts, 'memory');
  }

  /** A report about `ts` that `ws` had no business sending: not used, the worker drops the key. */
  private refuse(ws: WorkerRecord, ts: TaskRecord, report: 'TaskFinished' | 'TaskErred' | 'ReplicasAdded'): void {
    const where = ts.processingOn ? `it runs on ${ts.processingOn.address}` : ts.state === 'memory' ? `${ws.address} was not asked for a copy` : `it is ${ts.state}`;
    if (!ts.whoHas.includes(ws)) this.emit({ type: 'FreeKeys', worker: ws.address, keys: [ts.key], stimulusId: this.stimulusId });
    this.emit({ type: 'ReportRefused', worker: ws.address, key: ts.key, report, reason: `${ws.address} was not given task ${ts.key} (${where})`, stimulusId: this.stimulusId });
  }

  private retireWorkers(names: string[], n: number): void {
    let chosen: WorkerRecord[] = [];
    if (names.length) {
      for (const name of names) {
        const ws = this.findWorker(name);
        if (ws && ws.status === 'running') chosen.push(ws);
      }
    } else if (n > 0) {
      chosen = [...this.workers.values()]
        .filter((w) => w.status === 'running')
        .sort((a, b) => a.processing.size - b.processing.size || a.nbytes - b.nbytes)
        .slice(0, n);
    }
    for (const ws of chosen) ws.status = 'retiring';
    this.runningCache = null;
    const remaining = [...this.workers.values()].filter((w) => w.status === 'running');
    for (const ws of chosen) {
      if (remaining.length) for (const ts of ws.processing) this.recs.set(ts, 'released');
      ws.pendingReplicas = new Set();
      this.retiringWithCopies.add(ws);
      this.planReplicas(ws, ws.hasWhat, remaining);
    }
    this.checkRetirements();
  }

  /**
   * Asks the `remaining` running workers for copies of the results of `tasks` that only the
   * retiring `ws` holds (and that are still needed), the least loaded first; each planned copy
   * joins ws.pendingReplicas.
   */
  private planReplicas(ws: WorkerRecord, tasks: Iterable<TaskRecord>, remaining: readonly WorkerRecord[]): void {
    const plan = new Map<WorkerRecord, WhoHasInfo[]>();
    for (const ts of tasks) {
      if (ts.inline || ts.whoHas.some((o) => o !== ws && o.status === 'running')) continue;
      if (!this.needed(ts) && ts.dependents.every((d) => d.state === 'memory' || d.state === 'erred')) continue;
      const target = remaining.reduce<WorkerRecord | undefined>((best, w) => (!best || w.nbytes < best.nbytes ? w : best), undefined);
      if (!target) break;
      target.nbytes += Math.max(0, ts.nbytes);
      ws.pendingReplicas!.add(ts);
      (ts.replicaTargets ??= new Set()).add(target);
      let list = plan.get(target);
      if (!list) plan.set(target, (list = []));
      list.push({ key: ts.key, workers: [ws.address], nbytes: ts.nbytes });
    }
    for (const [target, whoHas] of plan) {
      target.nbytes -= whoHas.reduce((s, w) => s + Math.max(0, w.nbytes), 0);
      this.emit({ type: 'AcquireReplicas', worker: target.address, whoHas, stimulusId: this.stimulusId });
    }
  }

  /**
   * noWorkersTimeoutMs (Dask's no-workers-timeout): a task unrunnable for longer fails with
   * NoValidWorkerError, or NoWorkerError when no worker has been running since before it became
   * unrunnable; queued tasks fail with NoWorkerError once no worker has run for that long.
   */
  private checkNoWorkers(now: number): void {
    const timeout = this.opts.noWorkersTimeoutMs;
    if (this.running().length > 0 || (this.queue.size === 0 && this.unrunnable.size === 0)) this.noWorkersSince = -1;
    else if (this.noWorkersSince < 0) this.noWorkersSince = now;
    const since = this.noWorkersSince;
    const fail = (ts: TaskRecord, type: 'NoWorkerError' | 'NoValidWorkerError', message: string) => {
      ts.exception = taskError(ts.key, 'unavailable', message, { timeoutMs: timeout }, type);
      ts.exceptionBlame = ts.key;
      this.recs.set(ts, 'erred');
    };
    const failNoWorker = (ts: TaskRecord) =>
      fail(ts, 'NoWorkerError', `Task ${ts.key} waited ${timeout} ms (noWorkersTimeoutMs) with no running worker. Start workers, or raise the timeout.`);
    for (const [ts, unrunnableSince] of this.unrunnable) {
      if (now <= unrunnableSince + timeout) continue;
      // Without restrictions a task is unrunnable only for want of any worker.
      const noWorkers = since >= 0 && (since <= unrunnableSince || (ts.restrictions === null && !ts.fn.registered));
      if (!noWorkers) {
        fail(
          ts,
          'NoValidWorkerError',
          `Task ${ts.key} ${this.restrictionText(ts)}, and no running worker satisfied that for ${timeout} ms ` +
            '(noWorkersTimeoutMs). Start a worker that does, or change the restrictions.',
        );
      } else {
        failNoWorker(ts);
      }
    }
    if (since >= 0 && now > since + timeout) {
      for (const ts of this.queue) failNoWorker(ts);
    }
  }

  /** What a task's restrictions ask for, for messages. */
  private restrictionText(ts: TaskRecord): string {
    const r = ts.restrictions;
    const parts: string[] = [];
    if (r && r.workers.length) parts.push(`the workers ${JSON.stringify(r.workers)}`);
    if (r && r.resources.size > 0) parts.push(`the resources ${JSON.stringify(Object.fromEntries(r.resources))}`);
    if (ts.fn.registered) parts.push(`a worker with the function "${ts.fn.registered}"`);
    return parts.length ? `needs ${parts.join(' and ')}` : 'needs a worker';
  }

  private forgetEverything(reason: string): void {
    this.pureConflicts.clear();
    for (const [client, wanted] of this.clients) {
      for (const ts of wanted) this.report(client, { type: 'cancelled', key: ts.key, reason });
      wanted.clear();
    }
    for (const ts of this.tasks.values()) {
      this.log.push(ts.key, ts.state, 'forgotten', this.stimulusId, this.nowMs, '');
      if (this.onTransition !== undefined) this.onTransition(ts.key, ts.state, 'forgotten', this.stimulusId, '');
      this.telemetry.transition(ts.group, ts.state, 'forgotten'); // dashboard
      ts.state = 'forgotten';
    }
    this.tasks.clear();
    while (this.queue.pop());
    this.unrunnable.clear();
    this.noWorkerReasons.clear();
    for (const ws of this.workers.values()) {
      ws.processing.clear();
      ws.hasWhat.clear();
      ws.nbytes = 0;
      this.load.forget(ws);
    }
    this.runningCache = null;
    for (const s of Object.keys(this.counts) as TaskStateName[]) this.counts[s] = 0;
  }

  private checkRetirements(): void {
    for (const ws of this.workers.values()) {
      if (ws.status !== 'retiring' || !ws.pendingReplicas) continue;
      for (const ts of ws.pendingReplicas) {
        if (ts.state !== 'memory' || ts.inline || ts.whoHas.some((o) => o !== ws)) ws.pendingReplicas.delete(ts);
      }
      if (ws.pendingReplicas.size === 0) {
        ws.pendingReplicas = null;
        this.retiringWithCopies.delete(ws);
        // Clients fetch from the new holders (Dask's clients ask the scheduler's who_has).
        for (const ts of ws.hasWhat) {
          if (ts.state === 'memory' && ts.whoWants !== null && !ts.inline && ts.whoHas.length > 1) this.reportHolders(ts, ws);
        }
        this.emit({ type: 'WorkerRetired', worker: ws.address, stimulusId: this.stimulusId });
        this.emit({ type: 'CloseWorker', worker: ws.address, reason: 'retired', stimulusId: this.stimulusId });
      }
    }
  }

  // ------------------------------------------------------------------ transitions

  private drain(): void {
    let guard = 0;
    for (;;) {
      for (let next = this.recs.shift(); next; next = this.recs.shift()) {
        this.transition(next[0], next[1]);
        if (++guard > MAX_TRANSITIONS_PER_EVENT) throw new Error('scheduler transition loop did not settle');
      }
      if (this.freedSlots.size === 0) break;
      const freed = [...this.freedSlots];
      this.freedSlots.clear();
      for (const ws of freed) this.fillFromQueue(ws);
      if (this.recs.size === 0) break;
    }
  }

  private transition(ts: TaskRecord, finish: TaskStateName): void {
    const start = ts.state;
    if (start === finish || start === 'forgotten') return;
    const fn = this.table[start]?.[finish];
    if (fn) {
      const actual = fn(ts);
      this.setState(ts, start, actual);
      return;
    }
    // Two steps through released, as in Dask.
    const a = this.table[start]?.released;
    const b = this.table.released?.[finish];
    if (a && b) {
      this.setState(ts, start, a(ts));
      this.recs.delete(ts);
      if (ts.state === 'released') this.setState(ts, 'released', b(ts));
      return;
    }
    throw new InvalidTransitionError('scheduler', ts.key, start, finish, this.story([ts.key]));
  }

  private setState(ts: TaskRecord, start: TaskStateName, finish: TaskStateName): void {
    if (start === finish) return;
    ts.state = finish;
    this.counts[start]--;
    this.counts[finish]++;
    this.telemetry.transition(ts.group, start, finish); // dashboard
    if (finish === 'forgotten') this.counts.forgotten = 0;
    this.log.push(ts.key, start, finish, this.stimulusId, this.nowMs, ts.processingOn?.address ?? ts.whoHas[0]?.address ?? '');
    if (this.onTransition !== undefined) this.onTransition(ts.key, start, finish, this.stimulusId, ts.processingOn?.address ?? ts.whoHas[0]?.address ?? '');
  }

  private readonly releasedToWaiting: Transition = (ts) => {
    if (ts.refused) {
      this.recs.set(ts, 'erred');
      return 'released';
    }
    ts.waitingCount = 0;
    let erredDep: TaskRecord | undefined;
    for (const dep of ts.dependencies) {
      (dep.waiters ??= new Set()).add(ts);
      if (dep.state === 'memory') continue;
      if (dep.state === 'erred') erredDep ??= dep;
      ts.waitingCount++;
      if (dep.state === 'released') this.recs.set(dep, 'waiting');
    }
    if (erredDep) {
      ts.exception = erredDep.exception;
      ts.exceptionBlame = erredDep.exceptionBlame;
      this.recs.set(ts, 'erred');
    } else if (ts.waitingCount === 0) {
      this.recs.set(ts, 'processing');
    }
    return 'waiting';
  };

  /** Places a ready task: processing on a worker, queued (root task, no free slot) or no-worker. */
  private readonly place: Transition = (ts) => {
    const from = ts.state;
    let unrunnableSince: number | undefined;
    if (from === 'queued') this.queue.remove(ts);
    else if (from === 'no-worker') {
      unrunnableSince = this.unrunnable.get(ts);
      this.unrunnable.delete(ts);
    }
    ts.waitingCount = 0;
    const valid = this.validWorkers(ts);
    if (typeof valid === 'string') {
      ts.exception = taskError(ts.key, 'not_found', valid);
      ts.exceptionBlame = ts.key;
      this.recs.set(ts, 'erred');
      return this.parkUnrunnable(ts, unrunnableSince);
    }
    if (valid.length === 0) {
      // Workers run, but none will do: tell the clients now rather than leave them waiting.
      if (ts.whoWants !== null && !this.noWorkerReasons.has(ts) && this.running().length > 0) this.reportNoWorker(ts);
      return this.parkUnrunnable(ts, unrunnableSince);
    }
    if (from === 'no-worker') this.leaveNoWorker(ts, true);
    let ws: WorkerRecord | undefined;
    if (ts.dependencies.length === 0 && !ts.restricted) {
      ws = this.leastBusyWithSlot(valid);
      if (!ws) {
        this.queue.push(ts);
        return 'queued';
      }
    } else {
      ws = this.bestWorkerFor(ts, valid);
    }
    this.assign(ts, ws);
    return 'processing';
  };

  /** Keeps the time a task first became unrunnable across retries (a worker joining that will not do). */
  private parkUnrunnable(ts: TaskRecord, since = this.nowMs): TaskStateName {
    this.unrunnable.set(ts, since);
    return 'no-worker';
  }

  private reportNoWorker(ts: TaskRecord): void {
    const timeout = this.opts.noWorkersTimeoutMs;
    const reason =
      `no running worker can run it: it ${this.restrictionText(ts)}. It waits until such a worker joins` +
      (timeout < Infinity ? `, and fails after ${timeout} ms (noWorkersTimeoutMs).` : ' (no noWorkersTimeoutMs is set).');
    this.noWorkerReasons.set(ts, reason);
    for (const c of ts.wanters()) this.report(c, { type: 'no-worker', key: ts.key, reason, resolved: false });
  }

  /** The task leaves no-worker; the clients told it had no worker hear that it runs again. */
  private leaveNoWorker(ts: TaskRecord, runs: boolean): void {
    if (!this.noWorkerReasons.delete(ts) || !runs) return;
    for (const c of ts.wanters()) this.report(c, { type: 'no-worker', key: ts.key, reason: '', resolved: true });
  }

  private assign(ts: TaskRecord, ws: WorkerRecord): void {
    ts.processingOn = ws;
    ws.processing.add(ts);
    this.loadChanged(ws);
    // Most tasks of a map have no inputs: they share the frozen empty lists.
    const hasDeps = ts.dependencies.length > 0;
    const whoHas: WhoHasInfo[] = hasDeps ? [] : NO_WHO_HAS;
    const inlineInputs: Array<[string, { encoding: number; data: Uint8Array }]> = hasDeps ? [] : NO_INLINE_INPUTS;
    for (const dep of ts.dependencies) {
      if (dep.inline) inlineInputs.push([dep.key, dep.inline]);
      else whoHas.push({ key: dep.key, workers: dep.whoHas.map((w) => w.address), nbytes: dep.nbytes });
    }
    this.emit({
      type: 'Compute',
      worker: ws.address,
      key: ts.key,
      def: ts.toDef(),
      whoHas,
      inlineInputs,
      sequence: ts.sequence,
      stimulusId: this.stimulusId,
    });
  }

  private readonly activeToReleased: Transition = (ts) => {
    switch (ts.state) {
      case 'queued':
        this.queue.remove(ts);
        break;
      case 'no-worker':
        this.unrunnable.delete(ts);
        this.leaveNoWorker(ts, false);
        break;
      case 'processing': {
        const ws = ts.processingOn!;
        ws.processing.delete(ts);
        this.loadChanged(ws);
        ts.processingOn = null;
        if (ts.stealingFrom) ts.stealingFrom = null;
        if (this.workers.get(ws.address) === ws) {
          this.emit({ type: 'FreeKeys', worker: ws.address, keys: [ts.key], stimulusId: this.stimulusId });
          this.freedSlots.add(ws);
        }
        break;
      }
      case 'waiting': // holds no queue place and no worker slot
        break;
      case 'released':
      case 'memory':
      case 'erred':
      case 'forgotten':
        break; // never routed here (see this.table)
    }
    ts.waitingCount = 0;
    this.leaveDependencies(ts);
    this.afterRelease(ts);
    return 'released';
  };

  private readonly processingToMemory: Transition = (ts) => {
    const ws = ts.processingOn!;
    ws.processing.delete(ts);
    this.loadChanged(ws);
    ts.processingOn = null;
    ts.stealingFrom = null;
    this.freedSlots.add(ws);
    ts.exception = null;
    for (const d of ts.dependents) {
      if (d.state === 'waiting' && --d.waitingCount === 0) this.recs.set(d, 'processing');
    }
    this.leaveDependencies(ts);
    const wants = ts.whoWants;
    if (typeof wants === 'string') this.report(wants, this.inMemoryReport(ts));
    else if (wants !== null) for (const c of wants) this.report(c, this.inMemoryReport(ts));
    if (ts.broadcast) {
      const whoHas = [{ key: ts.key, workers: ts.whoHas.map((w) => w.address), nbytes: ts.nbytes }];
      for (const other of this.workers.values()) {
        if (!ts.whoHas.includes(other) && other.status === 'running') {
          (ts.replicaTargets ??= new Set()).add(other);
          this.emit({ type: 'AcquireReplicas', worker: other.address, whoHas, stimulusId: this.stimulusId });
        }
      }
    }
    if (!this.needed(ts)) this.recs.set(ts, 'released');
    return 'memory';
  };

  private readonly memoryToReleased: Transition = (ts) => {
    const lost = !ts.hasData;
    for (const ws of ts.whoHas) {
      ws.hasWhat.delete(ts);
      ws.nbytes -= Math.max(0, ts.nbytes);
      this.emit({ type: 'FreeKeys', worker: ws.address, keys: [ts.key], stimulusId: this.stimulusId });
    }
    ts.clearHolders();
    ts.replicaTargets = null;
    ts.inline = null;
    for (const d of ts.dependents) {
      if (d.state === 'waiting') d.waitingCount++;
      else if (d.state === 'queued' || d.state === 'no-worker' || d.state === 'processing') this.recs.set(d, 'released');
    }
    if (lost) for (const c of ts.wanters()) this.report(c, { type: 'lost', key: ts.key });
    this.afterRelease(ts);
    return 'released';
  };

  private readonly erredToReleased: Transition = (ts) => {
    ts.exception = null;
    ts.exceptionBlame = '';
    this.afterRelease(ts);
    return 'released';
  };

  private readonly toErred: Transition = (ts) => {
    const from = ts.state;
    const ranOn = ts.processingOn?.address ?? ''; // dashboard
    if (from === 'queued') this.queue.remove(ts);
    else if (from === 'no-worker') {
      this.unrunnable.delete(ts);
      this.leaveNoWorker(ts, false);
    } else if (from === 'processing') {
      const ws = ts.processingOn!;
      ws.processing.delete(ts);
      this.loadChanged(ws);
      ts.processingOn = null;
      ts.stealingFrom = null;
      if (this.workers.get(ws.address) === ws) this.freedSlots.add(ws);
    }
    ts.waitingCount = 0;
    this.leaveDependencies(ts);
    const error = ts.exception ?? taskError(ts.key, 'internal', `Task ${ts.key} failed`, undefined, 'SkeinError');
    ts.exception = error;
    if ((ts.exceptionBlame || ts.key) === ts.key) this.telemetry.taskErred(ts.key, ts.group, ranOn, error, this.opts.now()); // dashboard
    for (const c of ts.wanters()) this.report(c, { type: 'erred', key: ts.key, error });
    for (const d of ts.dependents) {
      if (ACTIVE.has(d.state) || (d.state === 'released' && this.needed(d))) {
        d.exception = error;
        d.exceptionBlame = ts.exceptionBlame || ts.key;
        this.recs.set(d, 'erred');
      }
    }
    if (!this.needed(ts) && ts.dependents.length === 0) this.recs.set(ts, 'forgotten');
    return 'erred';
  };

  private readonly toForgotten: Transition = (ts) => {
    this.tasks.delete(ts.key);
    for (const dep of ts.dependencies) {
      const i = dep.dependents.indexOf(ts);
      if (i >= 0) dep.dependents.splice(i, 1);
      dep.waiters?.delete(ts);
      if (dep.dependents.length === 0 && !this.needed(dep)) {
        if (dep.state === 'released' || dep.state === 'erred') this.recs.set(dep, 'forgotten');
        else this.releaseIfUnneeded(dep);
      }
    }
    return 'forgotten';
  };

  /** The task no longer waits on its dependencies; release those nobody needs any more. */
  private leaveDependencies(ts: TaskRecord): void {
    for (const dep of ts.dependencies) {
      if (dep.waiters?.delete(ts) && dep.waiters.size === 0) dep.waiters = null;
      if (!this.needed(dep)) {
        // A result nobody needs any more is freed; its lineage stays while dependents exist.
        if (dep.state === 'memory' || ACTIVE.has(dep.state)) this.recs.set(dep, 'released');
      }
    }
  }

  private afterRelease(ts: TaskRecord): void {
    if (this.needed(ts)) this.recs.set(ts, 'waiting');
    else if (ts.dependents.length === 0) this.recs.set(ts, 'forgotten');
  }

  // ------------------------------------------------------------------ placement

  /** Workers that accept new tasks (cached until a worker joins, leaves or changes status). */
  private running(): WorkerRecord[] {
    if (this.runningCache === null) {
      this.runningCache = [...this.workers.values()].filter((w) => w.status === 'running');
      this.load.rebuild(this.runningCache);
    }
    return this.runningCache;
  }

  private validWorkers(ts: TaskRecord): WorkerRecord[] | string {
    const running = this.running();
    const registered = ts.fn.registered;
    let valid = running;
    if (registered) {
      valid = valid.filter((w) => w.registeredFunctions.has(registered));
      if (valid.length === 0 && running.length > 0) {
        return (
          `No worker has a function registered as "${registered}" (task ${ts.key}). ` +
          'Start workers with --module pointing at a module that exports it.'
        );
      }
    }
    const r = ts.restrictions;
    if (!r) return valid;
    if (r.resources.size > 0) {
      const needs = [...r.resources];
      valid = valid.filter((w) => needs.every(([r, q]) => (w.resources.get(r) ?? 0) >= q));
    }
    if (r.workers.length) {
      const named = valid.filter((w) => r.workers.includes(w.address) || r.workers.includes(w.name));
      // Loose restrictions (allowOtherWorkers): any worker once every named one is busy.
      valid = !r.allowOtherWorkers || (named.length > 0 && named.some((w) => w.processing.size < w.nthreads)) ? named : valid;
    }
    return valid;
  }

  /**
   * Keys in the order their tasks should start: higher priority first, then submission order
   * (as Dask sorts the runnable tasks of an update), so that the best tasks of one update take
   * the free slots and lower ones queue.
   */
  private bestFirst(keys: string[]): string[] {
    const known: TaskRecord[] = [];
    const unknown: string[] = [];
    for (const k of keys) {
      const ts = this.tasks.get(k);
      if (ts) known.push(ts);
      else unknown.push(k);
    }
    known.sort((a, b) => b.priority - a.priority || a.sequence - b.sequence);
    return [...known.map((ts) => ts.key), ...unknown];
  }

  private slots(ws: WorkerRecord): number {
    const sat = this.opts.workerSaturation;
    if (!Number.isFinite(sat)) return Infinity;
    let slots = Math.max(1, Math.ceil(ws.nthreads * sat));
    // Keep about 10 ms of work per thread in flight, so short tasks do not wait on round trips
    // and reach the worker in batches large enough to share the per-message costs.
    if (this.avgDurationMs >= 0) slots += ws.nthreads * Math.min(1000, Math.floor(10 / Math.max(this.avgDurationMs, 0.01)));
    return slots;
  }

  private leastBusyWithSlot(valid: WorkerRecord[]): WorkerRecord | undefined {
    // Any running worker will do (the common case): the index, not a scan of every worker.
    if (valid === this.runningCache) return this.load.leastBusy(this.hasSlot);
    let best: WorkerRecord | undefined;
    let bestLoad = Infinity;
    for (const ws of valid) {
      const n = ws.processing.size;
      if (n >= this.slots(ws)) continue;
      const load = n / ws.nthreads;
      if (load < bestLoad) {
        best = ws;
        bestLoad = load;
      }
    }
    return best;
  }

  private readonly hasSlot = (ws: WorkerRecord): boolean => ws.processing.size < this.slots(ws);

  /** `ws.processing` changed: keep the load index and the steal victims up to date. */
  private loadChanged(ws: WorkerRecord): void {
    this.load.changed(ws, this.workers.get(ws.address) === ws);
  }

  private bestWorkerFor(ts: TaskRecord, valid: WorkerRecord[]): WorkerRecord {
    const candidates = new Set<WorkerRecord>();
    const validSet = valid.length > 32 ? new Set(valid) : null;
    for (const dep of ts.dependencies) {
      for (const w of dep.whoHas) if (validSet ? validSet.has(w) : valid.includes(w)) candidates.add(w);
    }
    if (candidates.size === 0 || valid.length <= 32) for (const w of valid) candidates.add(w);
    else {
      let idle = valid === this.runningCache ? this.load.leastBusy() : undefined;
      if (idle === undefined) {
        idle = valid[0]!;
        for (const w of valid) if (w.processing.size / w.nthreads < idle.processing.size / idle.nthreads) idle = w;
      }
      candidates.add(idle);
    }
    let best: WorkerRecord | undefined;
    let bestCost = Infinity;
    // Never zero: tasks measured at 0 ms still queue behind the ones ahead of them.
    const dur = Math.max(this.expectedDuration(ts), 0.01);
    for (const ws of candidates) {
      let bytes = 0;
      for (const dep of ts.dependencies) if (!dep.inline && !dep.whoHas.includes(ws)) bytes += Math.max(0, dep.nbytes);
      const cost = bytes / BYTES_PER_MS + ((ws.processing.size + 1) * dur) / ws.nthreads;
      if (cost < bestCost) {
        best = ws;
        bestCost = cost;
      }
    }
    return best!;
  }

  private expectedDuration(ts: TaskRecord): number {
    return this.groupDurationMs.get(ts.group) ?? (this.avgDurationMs >= 0 ? this.avgDurationMs : 500);
  }

  private recordDuration(ts: TaskRecord, ms: number): void {
    if (!(ms >= 0)) return;
    const prev = this.groupDurationMs.get(ts.group);
    this.groupDurationMs.set(ts.group, prev === undefined ? ms : prev * 0.9 + ms * 0.1);
    this.avgDurationMs = this.avgDurationMs < 0 ? ms : this.avgDurationMs * 0.95 + ms * 0.05;
  }

  private fillFromQueue(ws: WorkerRecord): void {
    if (ws.status !== 'running' || this.workers.get(ws.address) !== ws) return;
    let free = this.slots(ws) - ws.processing.size;
    while (free > 0 && this.queue.size > 0) {
      const ts = this.queue.peek()!;
      if (this.recs.get(ts) === 'processing') break;
      this.queue.remove(ts);
      this.setState(ts, 'queued', 'processing');
      this.assign(ts, ws);
      free--;
    }
    // A thread free and nothing queued here: take over work waiting on busy workers.
    if (ws.processing.size < ws.nthreads) this.stealFor(ws);
  }

  /**
   * Moves not-yet-started tasks to `idle` (a new worker, or one with a thread free and nothing
   * queued on the scheduler) from workers holding more tasks than threads: up to half of what
   * waits there for a thread, passing over the oldest (the ones running). The victim gives a task
   * up only if it has not started it (StealResponse).
   */
  private stealFor(idle: WorkerRecord): void {
    if (this.queue.size > 0 || idle.status !== 'running') return;
    let want = this.slots(idle) - idle.processing.size;
    if (want <= 0) return;
    // Called whenever a thread frees with nothing queued (hot): no allocation unless there is a victim.
    if (this.load.overloadedCount === 0 || (this.load.overloadedCount === 1 && idle.overloaded)) return;
    // The most loaded first, the first registered among equals; a bounded number per call (the
    // next freed thread or Tick asks the next ones), so a call costs the same with 1,000 workers.
    this.load.topVictims(idle, MAX_STEAL_VICTIMS, this.victimsScratch);
    for (const victim of this.victimsScratch) {
      let excess = Math.ceil((victim.processing.size - victim.nthreads) / 2);
      // The oldest ones are the ones most likely running; a bounded look at the rest.
      let skip = victim.nthreads;
      let scan = MAX_STEAL_SCAN;
      for (const ts of victim.processing) {
        if (want <= 0 || excess <= 0 || --scan < 0) break;
        if (skip > 0) {
          skip--;
          continue;
        }
        if (ts.stealingFrom || !this.mayRunOn(ts, idle)) continue;
        ts.stealingFrom = victim;
        // Its own id, as Dask's (the event's may be shared by several requests for this task).
        ts.stealId = `steal-${++this.stealSeq}`;
        this.emit({ type: 'StealRequest', worker: victim.address, key: ts.key, stimulusId: ts.stealId });
        want--;
        excess--;
      }
      if (want <= 0) return;
    }
  }

  /** Whether `ts` may move to `ws` (its restrictions allow it, loose ones included). */
  private mayRunOn(ts: TaskRecord, ws: WorkerRecord): boolean {
    if (!ts.restricted && !ts.fn.registered) return true;
    const r = ts.restrictions;
    if (r && r.workers.length > 0 && !r.allowOtherWorkers && !r.workers.includes(ws.address) && !r.workers.includes(ws.name)) return false;
    const valid = this.validWorkers(ts);
    return typeof valid !== 'string' && valid.includes(ws);
  }

  private balance(): void {
    for (const ws of this.workers.values()) {
      if (ws.status === 'running' && ws.processing.size === 0) this.stealFor(ws);
    }
  }

  // ------------------------------------------------------------------ helpers

  /** One FunctionId object per function, shared by all its tasks. */
  private internFunction(fn: FunctionId): FunctionId {
    const last = this.lastFunction;
    if (last && last.inlineHash === fn.inlineHash && last.registered === fn.registered) return last;
    this.lastFunction = this.internFunctionSlow(fn);
    return this.lastFunction;
  }

  private internFunctionSlow(fn: FunctionId): FunctionId {
    const id = fn.registered ? `r:${fn.registered}` : `i:${fn.inlineHash}`;
    let shared = this.functions.get(id);
    if (!shared) this.functions.set(id, (shared = { registered: fn.registered, inlineHash: fn.inlineHash }));
    return shared;
  }

  /** One string per task group (the key before its last '-'), shared by all its tasks. */
  private internGroup(key: string): string {
    const dash = key.lastIndexOf('-');
    // Consecutive tasks mostly share a group (a map): compare in place, no slice per task.
    const last = this.lastGroup;
    if (dash > 0 && dash === last.length && key.startsWith(last)) return last;
    const group = dash > 0 ? key.slice(0, dash) : key;
    let shared = this.groups.get(group);
    if (shared === undefined) this.groups.set(group, (shared = group));
    if (dash > 0) this.lastGroup = shared;
    return shared;
  }

  private needed(ts: TaskRecord): boolean {
    return ts.whoWants !== null || (ts.waiters !== null && ts.waiters.size > 0);
  }

  private addReplica(ts: TaskRecord, ws: WorkerRecord, nbytes: number): void {
    if (nbytes >= 0) ts.nbytes = nbytes;
    if (!ts.whoHas.includes(ws)) {
      ts.addHolder(ws);
      ws.hasWhat.add(ts);
      ws.nbytes += Math.max(0, ts.nbytes);
    }
  }

  private dropReplica(ts: TaskRecord, ws: WorkerRecord): void {
    if (!ts.removeHolder(ws)) return;
    ws.hasWhat.delete(ts);
    ws.nbytes -= Math.max(0, ts.nbytes);
    if (ts.state === 'memory' && !ts.hasData) this.recs.set(ts, 'released');
  }

  private findWorker(nameOrAddress: string): WorkerRecord | undefined {
    const byAddr = this.workers.get(nameOrAddress);
    if (byAddr) return byAddr;
    for (const ws of this.workers.values()) if (ws.name === nameOrAddress) return ws;
    return undefined;
  }

  private inMemoryReport(ts: TaskRecord): ClientReport {
    return {
      type: 'in-memory',
      key: ts.key,
      value: ts.inline,
      workers: ts.whoHas.map((w) => w.address),
      nbytes: ts.nbytes,
      typeName: ts.typeName,
    };
  }

  /** Tells the clients that want a key where it is now (the holders but `leaving`). */
  private reportHolders(ts: TaskRecord, leaving: WorkerRecord | null): void {
    const r = this.inMemoryReport(ts) as Extract<ClientReport, { type: 'in-memory' }>;
    if (leaving) r.workers = r.workers.filter((a) => a !== leaving.address);
    for (const c of ts.wanters()) this.report(c, r);
  }

  private report(client: string, report: ClientReport): void {
    this.emit({ type: 'ReportToClient', client, report, stimulusId: this.stimulusId });
  }

  private emit(a: SchedulerAction): void {
    if (a.type === 'FreeKeys') {
      // One FreeKeys per worker per event, however many keys it frees.
      const pending = this.pendingFrees.get(a.worker);
      if (pending) {
        for (const k of a.keys) pending.keys.push(k);
        return;
      }
      const own = { ...a, keys: a.keys.slice() };
      this.pendingFrees.set(a.worker, own);
      this.actions.push(own);
      return;
    }
    this.actions.push(a);
  }
}

/**
 * The worker's pure state machine: events in, actions out. No I/O, no timers, no gRPC; the clock
 * is injected. The shell (src/worker.ts) feeds it scheduler commands and the results of task
 * executions and transfers, and performs the actions it returns.
 *
 * Task states (after Dask's worker):
 *   released → waiting → ready → executing → memory | error      (tasks computed here)
 *   released → fetch → flight → memory                           (inputs fetched from peers)
 *   fetch | flight → missing                                      (no holder has it any more)
 *   executing | flight → cancelled                                (freed while running/in transfer)
 *   any → released → forgotten                                    (dropped)
 *
 * Memory: the data store holds, for every key in memory, either the encoded value or a marker
 * for a value the shell spilled to disk (DataSpilled / DataUnspilled). Values in memory form an
 * intrusive LRU list (links on the task records, so a touch allocates nothing); the shell picks
 * spill candidates from its cold end with `spillCandidates`.
 */
import { InternalError, InvalidTransitionError, SkeinError, TransitionLog, taskError, toRemoteError } from '@skein/common/lite';
import { Heap } from './heap.js';
import { TASK_STATES, isSpilled, storedBytes } from './types.js';
import type {
  ComputeTaskEvent,
  Encoded,
  StoredValue,
  TaskCall,
  ErrorInfo,
  TaskStateName,
  TransitionRecord,
  WorkerAction,
  WorkerEvent,
  WorkerStateConfig,
  SchedulerMessage,
  WhoHasEntry,
} from './types.js';

/** One task known to this worker. */
export interface TaskRecord {
  readonly key: string;
  state: TaskStateName;
  /** Set when the scheduler assigned this task to be computed here. */
  call: TaskCall | undefined;
  priority: number;
  sequence: number;
  resources: ReadonlyMap<string, number>;
  /** Tasks this one needs (only while it has not finished). */
  dependencies: Set<string>;
  /** Unfinished tasks here that need this one. */
  dependents: Set<string>;
  /** Dependencies not yet in memory. */
  waitingFor: Set<string>;
  /** Peers holding this key. */
  whoHas: Set<string>;
  nbytes: number;
  typeName: string;
  /** The scheduler knows this key here: assigned, a replica, or held across a reconnect. */
  wanted: boolean;
  /** The scheduler asked for a copy of this key (AcquireReplicas). */
  replica: boolean;
  /** The peer this key is being fetched from (flight). */
  flightWorker: string | undefined;
  /** For cancelled: what is still going on. */
  previous: 'executing' | 'flight' | undefined;
  /** A result handed to the next transition (memory or error). */
  staged:
    | { kind: 'value'; value: Encoded; typeName: string; startMs: number; stopMs: number }
    | { kind: 'error'; error: ErrorInfo; startMs: number; stopMs: number }
    | undefined;
  /** Identifies the current entry of this task in the ready queue. */
  readyToken: number;
  /** Neighbours in the LRU list of values held in memory (towards older / newer). */
  lruOlder: TaskRecord | undefined;
  lruNewer: TaskRecord | undefined;
}

export { InvalidTransitionError };

/** An invariant of the worker state is broken (validateState). */
export class InvalidStateError extends InternalError {
  constructor(problems: string[]) {
    super(`Worker state is inconsistent: ${problems.slice(0, 10).join('; ')}`, { details: { problems } });
  }
}

interface Ctx {
  recs: Map<string, TaskStateName>;
  actions: WorkerAction[];
  stimulusId: string;
  /** The clock, read once per handle() (transitions of one call share a time). */
  nowMs: number;
}

type TransitionFn = (this: WorkerState, ts: TaskRecord, ctx: Ctx) => void;

function byStartAndFinish(table: Readonly<Record<string, TransitionFn>>): Partial<Record<string, Partial<Record<string, TransitionFn>>>> {
  const out: Partial<Record<string, Partial<Record<string, TransitionFn>>>> = {};
  for (const [name, fn] of Object.entries(table)) {
    const [start, finish] = name.split('->') as [string, string];
    (out[start] ??= {})[finish] = fn;
  }
  return out;
}

const MAX_TRANSITIONS_PER_HANDLE_FACTOR = 50;

function better(a: TaskRecord, b: TaskRecord): boolean {
  if (a.priority !== b.priority) return a.priority > b.priority;
  return a.sequence < b.sequence;
}

interface ReadyEntry {
  ts: TaskRecord;
  token: number;
}

/**
 * The set every task starts with for its dependencies, dependents, inputs still awaited and peers
 * holding it, until it needs one of its own (addTo): most tasks of a map have none of them, and
 * four Sets per task were a large share of a worker's garbage. Deleting from it or clearing it does
 * nothing; adding to it is a bug and throws.
 */
const NONE: Set<string> = new (class EmptySet extends Set<string> {
  override add(): this {
    throw new SkeinError('internal', 'a task added to the shared empty set; use addTo');
  }
})();

/** Resources of a task that needs none (shared; never mutated). */
const NO_RESOURCES: ReadonlyMap<string, number> = new Map();

type SetField = 'dependencies' | 'dependents' | 'waitingFor' | 'whoHas';

/** Adds to one of a task's sets, giving it a set of its own first if it still has the shared one. */
function addTo(ts: TaskRecord, field: SetField, value: string): void {
  let set = ts[field];
  if (set === NONE) ts[field] = set = new Set();
  set.add(value);
}

/** The worker's pure state machine: events in, actions out (no I/O, no timers; the clock is injected). */
export class WorkerState {
  readonly tasks = new Map<string, TaskRecord>();
  /**
   * The data store: key → encoded value, or a marker for a value spilled to disk. Held exactly
   * for tasks in state memory.
   */
  readonly data = new Map<string, StoredValue>();
  /** Keys in state executing, and cancelled ones whose execution still runs. */
  readonly executing = new Set<string>();
  /** Keys to fetch (state fetch), in arrival order. */
  readonly dataNeeded = new Set<string>();
  /** Peers being fetched from → keys in that transfer. */
  readonly inFlight = new Map<string, Set<string>>();
  /**
   * ComputeTasks for keys that were being fetched as copies when they came (the fetch goes on):
   * what such a task needs to run here if the fetch fails (onMissing).
   */
  private readonly computeWhileFetching = new Map<string, ComputeTaskEvent>();
  /** Resources not held by executing tasks. */
  readonly availableResources: Map<string, number>;
  readonly totalResources: ReadonlyMap<string, number>;
  paused = false;
  /** Bytes of values held in memory. */
  managedBytes = 0;
  /** Bytes of values spilled to disk. */
  spilledBytes = 0;
  /** Least recently used value in memory (spilled first). */
  private lruOldest: TaskRecord | undefined;
  private lruNewest: TaskRecord | undefined;

  private readonly readyQueue = new Heap<ReadyEntry>((a, b) => better(a.ts, b.ts));
  /** Ready tasks that need resources, best first. */
  private constrained: TaskRecord[] = [];
  private readyCount = 0;
  private tokens = 0;
  /** Every transition, column by column in a bounded ring (no object per transition). */
  private readonly log: TransitionLog<TaskStateName>;
  /** Tasks handed to threads at once: more while tasks are tiny (see executionWindow). */
  maxExecuting: number;
  private readonly baseExecuting: number;
  /** Moving average of task run times (ms), or -1 before the first. */
  private avgTaskMs = -1;
  private readonly maxIncomingTransfers: number;
  private readonly targetGatherBytes: number;

  constructor(readonly config: WorkerStateConfig) {
    this.totalResources = new Map(Object.entries(config.resources ?? {}));
    this.availableResources = new Map(this.totalResources);
    this.baseExecuting = Math.max(1, config.nthreads) * Math.max(1, config.pipelineDepth ?? 1);
    this.maxExecuting = this.baseExecuting;
    this.maxIncomingTransfers = config.maxIncomingTransfers ?? 8;
    this.targetGatherBytes = config.targetGatherBytes ?? 50e6;
    this.log = new TransitionLog(config.logLength ?? 100_000, TASK_STATES);
  }

  /** Tasks waiting for a thread. */
  get readyLength(): number {
    return this.readyCount;
  }

  /** Keys in memory with their sizes (the `held` list of a reconnect hello). */
  held(): WhoHasEntry[] {
    const out: WhoHasEntry[] = [];
    for (const [key, v] of this.data) out.push({ key, workers: [this.config.address], nbytes: storedBytes(v) });
    return out;
  }

  /**
   * Values in memory to spill to free at least `bytes`, least recently used first (keys in
   * `exclude`, e.g. being written already, are skipped). Read-only: the shell writes them and
   * reports each with DataSpilled.
   */
  spillCandidates(bytes: number, exclude?: ReadonlySet<string>): Array<[string, Encoded]> {
    const out: Array<[string, Encoded]> = [];
    let total = 0;
    for (let ts = this.lruOldest; ts && total < bytes; ts = ts.lruNewer) {
      if (exclude?.has(ts.key)) continue;
      const v = this.data.get(ts.key);
      if (!v || isSpilled(v)) continue;
      out.push([ts.key, v]);
      total += v.data.byteLength;
    }
    return out;
  }

  /**
   * Test-only fault injection: when set, called with every event before it is handled; a throw
   * from it is an internal error like any other (the shell closes the worker). Unset, it costs
   * one property read per event.
   */
  faultHook: ((event: WorkerEvent) => void) | undefined = undefined;
  /** Told of every task transition (worker plugins' transition hook); undefined: none to tell. */
  onTransition: ((key: string, start: TaskStateName, finish: TaskStateName, stimulusId: string) => void) | undefined = undefined;

  /**
   * Handles events in order and returns the actions for the shell. A throw (other than while
   * setting up one ComputeTask, which errs that task alone) is an internal error: the state is
   * then unknown, and the shell closes the worker (Worker.failHard).
   */
  handle(...events: WorkerEvent[]): WorkerAction[] {
    const ctx: Ctx = { recs: new Map(), actions: [], stimulusId: '', nowMs: this.config.now() };
    for (const ev of events) {
      ctx.stimulusId = ev.stimulusId;
      if (this.faultHook !== undefined) this.faultHook(ev);
      try {
        this.handleEvent(ev, ctx);
      } catch (err) {
        // Setting up one task from its command reads that command's user data (keys, holders,
        // inline values): a throw there fails that task alone, not the other commands of the
        // message nor the actions already produced for them.
        if (ev.type !== 'ComputeTask') throw err;
        this.failSetup(ev.key, err, ctx);
      }
      this.drain(ctx);
    }
    this.ensureCommunicating(ctx);
    this.ensureComputing(ctx);
    this.drain(ctx);
    if (this.config.validate) this.validateState();
    return ctx.actions;
  }

  /** Every recorded transition of `key`, oldest first. */
  story(key: string): TransitionRecord[] {
    return this.records(new Set([key]));
  }

  /** Every recorded transition of any of these keys, oldest first (WorkerService.GetStory). */
  storyOf(keys: Iterable<string>): TransitionRecord[] {
    return this.records(new Set(keys));
  }

  /** The bounded transition log, oldest first. */
  transitionLog(): TransitionRecord[] {
    return this.records();
  }

  private records(keys?: ReadonlySet<string>): TransitionRecord[] {
    return this.log.select(keys).map((r) => ({ key: r.key, start: r.start, finish: r.finish, stimulusId: r.stimulusId, timeMs: r.timeMs }));
  }

  // ------------------------------------------------------------------------------------------
  // Events

  private handleEvent(ev: WorkerEvent, ctx: Ctx): void {
    switch (ev.type) {
      case 'ComputeTask': {
        let ts = this.tasks.get(ev.key);
        if (!ts) ts = this.newTask(ev.key);
        ts.call = ev.call;
        ts.wanted = true;
        switch (ts.state) {
          case 'memory':
            // Fetched here earlier (or computed twice): report it.
            this.send(ctx, {
              type: 'TaskFinished',
              key: ts.key,
              value: this.inlineValue(ts.key),
              nbytes: ts.nbytes,
              typeName: ts.typeName,
              startMs: this.config.now(),
              stopMs: this.config.now(),
              stimulusId: ctx.stimulusId,
            });
            return;
          case 'waiting':
          case 'ready':
          case 'executing':
            return; // already under way
          case 'fetch':
          case 'flight':
            // Being fetched as a copy: the fetch goes on (its value is as good as a run). Should it
            // come back without the value, the task runs here, and needs its inputs (onMissing).
            this.computeWhileFetching.set(ts.key, ev);
            return;
          case 'cancelled':
            if (ts.previous === 'flight') this.computeWhileFetching.set(ts.key, ev);
            ctx.recs.set(ts.key, ts.previous ?? 'executing');
            return;
          case 'released':
          case 'missing':
          case 'error':
          case 'forgotten':
            break;
        }
        this.setUpCompute(ts, ev, ctx);
        ctx.recs.set(ts.key, 'waiting');
        return;
      }

      case 'FreeKeys': {
        const released: string[] = [];
        for (const key of ev.keys) {
          const ts = this.tasks.get(key);
          if (!ts) continue;
          ts.wanted = false;
          ts.replica = false;
          if (ts.state === 'memory') released.push(key);
          if (ts.dependents.size > 0) continue; // still an input of a task here
          this.recommendDrop(ts, ctx);
        }
        if (released.length > 0) this.send(ctx, { type: 'KeysReleased', keys: released, stimulusId: ctx.stimulusId });
        return;
      }

      case 'AcquireReplicas': {
        const have: WhoHasEntry[] = [];
        for (const [key, workers] of ev.whoHas) {
          const ts = this.tasks.get(key) ?? this.newTask(key);
          ts.wanted = true;
          ts.replica = true;
          for (const w of workers) if (w !== this.config.address) addTo(ts, 'whoHas', w);
          const nb = ev.nbytes.get(key);
          if (nb !== undefined && ts.state !== 'memory') ts.nbytes = nb;
          switch (ts.state) {
            case 'memory':
              have.push({ key, workers: [this.config.address], nbytes: ts.nbytes });
              break;
            case 'released':
            case 'missing':
              ctx.recs.set(key, ts.whoHas.size > 0 ? 'fetch' : 'missing');
              break;
            case 'cancelled':
              if (ts.previous === 'flight') ctx.recs.set(key, 'flight');
              break;
            case 'waiting':
            case 'fetch':
            case 'flight':
            case 'ready':
            case 'executing':
              break; // coming anyway: reported with add_keys when it lands
            case 'error':
            case 'forgotten':
              break; // left as they are (not fetched)
          }
        }
        if (have.length > 0) this.send(ctx, { type: 'AddKeys', keys: have, stimulusId: ctx.stimulusId });
        return;
      }

      case 'StealRequest': {
        const ts = this.tasks.get(ev.key);
        const state = ts ? ts.state : 'released';
        this.send(ctx, { type: 'StealResponse', key: ev.key, state, stimulusId: ctx.stimulusId });
        if (!ts || !ts.call) return;
        if (state === 'waiting' || state === 'ready' || state === 'fetch' || state === 'flight' || state === 'missing') {
          // The scheduler takes it back.
          this.giveBack(ts, ctx);
        }
        return;
      }

      case 'ExecutionRevoked': {
        const ts = this.tasks.get(ev.key);
        if (ts?.state === 'executing') ctx.recs.set(ts.key, 'ready');
        else if (ts?.state === 'cancelled' && ts.previous === 'executing') this.endCancelledRun(ts, ctx);
        return;
      }

      case 'ExecuteSuccess':
        this.executionWindow(ev.stopMs - ev.startMs);
      // falls through
      case 'ExecuteFailure': {
        const ts = this.tasks.get(ev.key);
        if (!ts) return;
        if (ts.state === 'executing') {
          ts.staged =
            ev.type === 'ExecuteSuccess'
              ? { kind: 'value', value: ev.value, typeName: ev.typeName, startMs: ev.startMs, stopMs: ev.stopMs }
              : { kind: 'error', error: ev.error, startMs: ev.startMs, stopMs: ev.stopMs };
          ctx.recs.set(ts.key, ev.type === 'ExecuteSuccess' ? 'memory' : 'error');
        } else if (ts.state === 'cancelled' && ts.previous === 'executing') {
          this.endCancelledRun(ts, ctx);
        }
        return;
      }

      case 'GatherDepSuccess':
      case 'GatherDepFailure': {
        const keys = this.inFlight.get(ev.worker);
        if (!keys) return;
        this.inFlight.delete(ev.worker);
        const failed = ev.type === 'GatherDepFailure';
        if (failed) {
          // The peer is gone for us: stop asking it for anything.
          for (const key of this.dataNeeded) {
            const t = this.tasks.get(key);
            if (t && t.whoHas.delete(ev.worker) && t.whoHas.size === 0) ctx.recs.set(key, 'missing');
          }
        }
        const missing = new Set(ev.type === 'GatherDepSuccess' ? ev.missing : []);
        for (const key of keys) {
          const ts = this.tasks.get(key);
          if (!ts || ts.flightWorker !== ev.worker) continue;
          const value = ev.type === 'GatherDepSuccess' ? ev.data.get(key) : undefined;
          if (ts.state === 'cancelled') {
            ts.flightWorker = undefined;
            ctx.recs.set(key, 'forgotten');
            continue;
          }
          if (ts.state !== 'flight') continue;
          if (value) {
            ts.staged = { kind: 'value', value, typeName: ts.typeName, startMs: 0, stopMs: 0 };
            ctx.recs.set(key, 'memory');
            continue;
          }
          if (failed || missing.has(key) || !value) {
            ts.whoHas.delete(ev.worker);
            this.send(ctx, { type: 'MissingData', key, worker: ev.worker, stimulusId: ctx.stimulusId });
            ctx.recs.set(key, ts.whoHas.size > 0 ? 'fetch' : 'missing');
          }
        }
        return;
      }

      case 'PauseChanged':
        this.paused = ev.paused;
        return;

      case 'DataSpilled': {
        const ts = this.tasks.get(ev.key);
        if (!ts || ts.state !== 'memory' || this.data.get(ev.key) !== ev.value) {
          // Freed or replaced while being written: the copy on disk is stale.
          ctx.actions.push({ type: 'RemoveSpilled', files: [ev.file], stimulusId: ctx.stimulusId });
          return;
        }
        const nbytes = ev.value.data.byteLength;
        this.data.set(ev.key, { spilled: true, encoding: ev.value.encoding, nbytes, file: ev.file });
        this.managedBytes -= nbytes;
        this.spilledBytes += nbytes;
        this.lruRemove(ts);
        return;
      }

      case 'DataUnspilled': {
        const ts = this.tasks.get(ev.key);
        const cur = this.data.get(ev.key);
        // Otherwise the key was freed meanwhile (its file is already being removed).
        if (!ts || ts.state !== 'memory' || !isSpilled(cur) || cur.file !== ev.file) return;
        this.data.set(ev.key, ev.value);
        this.spilledBytes -= cur.nbytes;
        this.managedBytes += ev.value.data.byteLength;
        this.lruPush(ts);
        ctx.actions.push({ type: 'RemoveSpilled', files: [ev.file], stimulusId: ctx.stimulusId });
        return;
      }

      case 'SchedulerLost': {
        // First the tasks to compute (which lets go of their inputs), then what is left.
        for (const ts of this.tasks.values()) {
          if (ts.state === 'memory') {
            ts.wanted = true;
            continue;
          }
          if (ts.call) {
            ts.call = undefined;
            ts.wanted = false;
            ts.replica = false;
            this.recommendDrop(ts, ctx);
          }
        }
        this.drain(ctx);
        for (const ts of this.tasks.values()) {
          if (ts.state === 'memory' || ts.dependents.size > 0) continue;
          ts.wanted = false;
          ts.replica = false;
          this.recommendDrop(ts, ctx);
        }
        return;
      }

      default: {
        const never: never = ev;
        throw new SkeinError('internal', `Unknown worker event ${JSON.stringify(never)}`);
      }
    }
  }

  // ------------------------------------------------------------------------------------------
  // Transitions

  private static readonly TRANSITIONS: Readonly<Record<string, TransitionFn>> = {
    'released->waiting': function (ts, ctx) {
      if (ts.resources !== NO_RESOURCES && [...ts.resources].some(([r, n]) => n > (this.totalResources.get(r) ?? 0))) {
        this.setState(ts, 'waiting', ctx);
        const error = taskError(
          ts.key,
          'failed_precondition',
          `Task ${ts.key} needs resources ${JSON.stringify(Object.fromEntries(ts.resources))} but worker ${this.config.address} has ` +
            `${JSON.stringify(Object.fromEntries(this.totalResources))}. Start workers with --resources, or change the task's resources.`,
        );
        const now = this.config.now();
        ts.staged = { kind: 'error', error, startMs: now, stopMs: now };
        ctx.recs.set(ts.key, 'error');
        return;
      }
      ts.waitingFor.clear();
      for (const dep of ts.dependencies) {
        const d = this.tasks.get(dep)!;
        if (d.state === 'memory' || ctx.recs.get(dep) === 'memory') {
          if (d.state !== 'memory') addTo(ts, 'waitingFor', dep);
          continue;
        }
        addTo(ts, 'waitingFor', dep);
        if (d.state === 'released' || d.state === 'missing') {
          if (!ctx.recs.has(dep)) ctx.recs.set(dep, d.whoHas.size > 0 ? 'fetch' : 'missing');
        } else if (d.state === 'cancelled' && d.previous === 'flight') {
          ctx.recs.set(dep, 'flight');
        } // (a cancelled run goes on without its call: the input is fetched when it ends, endCancelledRun)
      }
      this.setState(ts, 'waiting', ctx);
      if (ts.waitingFor.size === 0) ctx.recs.set(ts.key, 'ready');
    },
    'released->fetch': function (ts, ctx) {
      this.setState(ts, 'fetch', ctx);
      this.dataNeeded.add(ts.key);
    },
    'released->missing': function (ts, ctx) {
      this.setState(ts, 'missing', ctx);
      this.onMissing(ts, ctx);
    },
    'released->memory': function (ts, ctx) {
      this.putInMemory(ts, ctx);
    },
    'released->error': function (ts, ctx) {
      this.putInError(ts, ctx);
    },
    'released->forgotten': function (ts, ctx) {
      this.computeWhileFetching.delete(ts.key);
      for (const dep of ts.dependencies) this.tasks.get(dep)?.dependents.delete(ts.key);
      ts.dependencies.clear();
      this.setState(ts, 'forgotten', ctx);
      this.tasks.delete(ts.key);
    },
    'waiting->ready': function (ts, ctx) {
      this.setState(ts, 'ready', ctx);
      this.enqueueReady(ts);
    },
    'waiting->error': function (ts, ctx) {
      this.putInError(ts, ctx);
    },
    'waiting->released': function (ts, ctx) {
      ts.waitingFor.clear();
      this.unlinkDependencies(ts, ctx);
      this.setState(ts, 'released', ctx);
    },
    'ready->executing': function (ts, ctx) {
      this.readyCount--;
      if (ts.resources !== NO_RESOURCES) for (const [r, n] of ts.resources) this.availableResources.set(r, (this.availableResources.get(r) ?? 0) - n);
      this.executing.add(ts.key);
      this.setState(ts, 'executing', ctx);
      const inputs: Array<[string, StoredValue]> = [];
      for (const dep of ts.dependencies) {
        const v = this.data.get(dep)!;
        inputs.push([dep, v]);
        if (!isSpilled(v)) this.lruTouch(this.tasks.get(dep)!);
      }
      ctx.actions.push({ type: 'Execute', key: ts.key, call: ts.call!, inputs, priority: ts.priority, sequence: ts.sequence, stimulusId: ctx.stimulusId });
    },
    'ready->released': function (ts, ctx) {
      this.readyCount--;
      ts.readyToken = -1;
      if (ts.resources.size > 0) this.constrained = this.constrained.filter((t) => t !== ts);
      this.unlinkDependencies(ts, ctx);
      this.setState(ts, 'released', ctx);
    },
    'executing->memory': function (ts, ctx) {
      this.finishExecution(ts);
      this.putInMemory(ts, ctx);
    },
    'executing->error': function (ts, ctx) {
      this.finishExecution(ts);
      this.putInError(ts, ctx);
    },
    'executing->ready': function (ts, ctx) {
      // Taken back from the runtime before it started (ExecutionRevoked).
      this.finishExecution(ts);
      this.setState(ts, 'ready', ctx);
      this.enqueueReady(ts);
    },
    'executing->cancelled': function (ts, ctx) {
      ts.previous = 'executing';
      this.setState(ts, 'cancelled', ctx);
    },
    'cancelled->executing': function (ts, ctx) {
      ts.previous = undefined;
      this.setState(ts, 'executing', ctx);
    },
    'cancelled->flight': function (ts, ctx) {
      ts.previous = undefined;
      this.setState(ts, 'flight', ctx);
    },
    'cancelled->released': function (ts, ctx) {
      if (ts.previous === 'executing') this.finishExecution(ts);
      ts.previous = undefined;
      ts.flightWorker = undefined;
      this.unlinkDependencies(ts, ctx);
      this.setState(ts, 'released', ctx);
    },
    'fetch->flight': function (ts, ctx) {
      this.dataNeeded.delete(ts.key);
      this.setState(ts, 'flight', ctx);
    },
    'fetch->missing': function (ts, ctx) {
      this.dataNeeded.delete(ts.key);
      this.setState(ts, 'missing', ctx);
      this.onMissing(ts, ctx);
    },
    'fetch->released': function (ts, ctx) {
      this.dataNeeded.delete(ts.key);
      this.setState(ts, 'released', ctx);
    },
    'fetch->memory': function (ts, ctx) {
      this.dataNeeded.delete(ts.key);
      this.putInMemory(ts, ctx);
    },
    'flight->memory': function (ts, ctx) {
      if (ts.flightWorker) this.inFlight.get(ts.flightWorker)?.delete(ts.key);
      ts.flightWorker = undefined;
      this.putInMemory(ts, ctx);
    },
    'flight->fetch': function (ts, ctx) {
      ts.flightWorker = undefined;
      this.setState(ts, 'fetch', ctx);
      this.dataNeeded.add(ts.key);
    },
    'flight->missing': function (ts, ctx) {
      ts.flightWorker = undefined;
      this.setState(ts, 'missing', ctx);
      this.onMissing(ts, ctx);
    },
    'flight->cancelled': function (ts, ctx) {
      ts.previous = 'flight';
      this.setState(ts, 'cancelled', ctx);
    },
    'missing->fetch': function (ts, ctx) {
      this.setState(ts, 'fetch', ctx);
      this.dataNeeded.add(ts.key);
    },
    'missing->released': function (ts, ctx) {
      this.setState(ts, 'released', ctx);
    },
    'memory->released': function (ts, ctx) {
      const v = this.data.get(ts.key);
      let nbytes = 0;
      if (isSpilled(v)) {
        this.spilledBytes -= v.nbytes;
        ctx.actions.push({ type: 'RemoveSpilled', files: [v.file], stimulusId: ctx.stimulusId });
      } else if (v) {
        nbytes = v.data.byteLength;
        this.managedBytes -= nbytes;
        this.lruRemove(ts);
      }
      this.data.delete(ts.key);
      ctx.actions.push({ type: 'ReleaseData', keys: [ts.key], nbytes, stimulusId: ctx.stimulusId });
      this.setState(ts, 'released', ctx);
    },
    'error->released': function (ts, ctx) {
      this.setState(ts, 'released', ctx);
    },
  };

  /** TRANSITIONS by start and finish state (no string building per transition). */
  private static readonly TABLE = byStartAndFinish(WorkerState.TRANSITIONS);

  private transition(ts: TaskRecord, finish: TaskStateName, ctx: Ctx): void {
    const start = ts.state;
    if (start === finish) return;
    const direct = WorkerState.TABLE[start]?.[finish];
    if (direct) {
      direct.call(this, ts, ctx);
      return;
    }
    const toReleased = WorkerState.TABLE[start]?.released;
    const fromReleased = WorkerState.TABLE.released?.[finish];
    if (start !== 'released' && toReleased && fromReleased) {
      toReleased.call(this, ts, ctx);
      if (ts.state === 'released') fromReleased.call(this, ts, ctx);
      return;
    }
    throw new InvalidTransitionError('worker', ts.key, start, finish, this.story(ts.key));
  }

  private drain(ctx: Ctx): void {
    let guard = 0;
    const limit = MAX_TRANSITIONS_PER_HANDLE_FACTOR * (this.tasks.size + 100);
    // Iterating the map while deleting visited entries also visits entries added on the way, in
    // order. (Taking entries().next() of a fresh iterator each time walks over all the deleted
    // slots at the front: quadratic in a big batch.)
    for (const [key, finish] of ctx.recs) {
      ctx.recs.delete(key);
      const ts = this.tasks.get(key);
      if (!ts) continue;
      if (finish === 'forgotten' && (ts.wanted || ts.dependents.size > 0) && ts.state !== 'cancelled') continue;
      this.transition(ts, finish, ctx);
      if (++guard > limit) {
        throw new SkeinError('internal', `Worker state: transitions did not settle after ${guard} steps (last: ${key} -> ${finish}).`);
      }
    }
  }

  private setState(ts: TaskRecord, finish: TaskStateName, ctx: Ctx): void {
    this.log.push(ts.key, ts.state, finish, ctx.stimulusId, ctx.nowMs);
    if (this.onTransition !== undefined) this.onTransition(ts.key, ts.state, finish, ctx.stimulusId);
    ts.state = finish;
  }

  // ------------------------------------------------------------------------------------------
  // Helpers used by transitions

  private newTask(key: string): TaskRecord {
    const ts: TaskRecord = {
      key,
      state: 'released',
      call: undefined,
      priority: 0,
      sequence: 0,
      resources: NO_RESOURCES,
      dependencies: NONE,
      dependents: NONE,
      waitingFor: NONE,
      whoHas: NONE,
      nbytes: 0,
      typeName: '',
      wanted: false,
      replica: false,
      flightWorker: undefined,
      previous: undefined,
      staged: undefined,
      readyToken: -1,
      lruOlder: undefined,
      lruNewer: undefined,
    };
    this.tasks.set(key, ts);
    return ts;
  }

  /** Recommends dropping a task nobody needs any more (in-progress work is cancelled). */
  private recommendDrop(ts: TaskRecord, ctx: Ctx): void {
    switch (ts.state) {
      case 'executing':
      case 'flight':
        ctx.recs.set(ts.key, 'cancelled');
        return;
      case 'cancelled':
      case 'forgotten':
        return;
      case 'released':
      case 'waiting':
      case 'fetch':
      case 'missing':
      case 'ready':
      case 'memory':
      case 'error':
        ctx.recs.set(ts.key, 'forgotten');
    }
  }

  /** A task is done or dropped: it no longer needs its inputs; drop inputs nobody else needs. */
  private unlinkDependencies(ts: TaskRecord, ctx: Ctx): void {
    for (const dep of ts.dependencies) {
      const d = this.tasks.get(dep);
      if (!d) continue;
      d.dependents.delete(ts.key);
      if (!d.wanted && d.dependents.size === 0) this.recommendDrop(d, ctx);
    }
    ts.dependencies.clear();
    ts.waitingFor.clear();
  }

  private finishExecution(ts: TaskRecord): void {
    this.executing.delete(ts.key);
    if (ts.resources !== NO_RESOURCES) for (const [r, n] of ts.resources) this.availableResources.set(r, (this.availableResources.get(r) ?? 0) + n);
  }

  private inlineValue(key: string): Encoded | undefined {
    const v = this.data.get(key);
    return v && !isSpilled(v) && v.data.byteLength <= this.config.inlineBytes ? v : undefined;
  }

  /** Appends a value just put in memory at the newest end of the LRU list. */
  private lruPush(ts: TaskRecord): void {
    ts.lruOlder = this.lruNewest;
    ts.lruNewer = undefined;
    if (this.lruNewest) this.lruNewest.lruNewer = ts;
    else this.lruOldest = ts;
    this.lruNewest = ts;
  }

  private lruRemove(ts: TaskRecord): void {
    if (ts.lruOlder) ts.lruOlder.lruNewer = ts.lruNewer;
    else if (this.lruOldest === ts) this.lruOldest = ts.lruNewer;
    if (ts.lruNewer) ts.lruNewer.lruOlder = ts.lruOlder;
    else if (this.lruNewest === ts) this.lruNewest = ts.lruOlder;
    ts.lruOlder = undefined;
    ts.lruNewer = undefined;
  }

  /** A value in memory was used: it becomes the most recently used. */
  private lruTouch(ts: TaskRecord): void {
    if (this.lruNewest === ts) return;
    this.lruRemove(ts);
    this.lruPush(ts);
  }

  private putInMemory(ts: TaskRecord, ctx: Ctx): void {
    const start = ts.state;
    const staged = ts.staged;
    if (!staged || staged.kind !== 'value') throw new InvalidTransitionError('worker', ts.key, start, 'memory', this.story(ts.key));
    ts.staged = undefined;
    this.computeWhileFetching.delete(ts.key);
    this.data.set(ts.key, staged.value);
    ts.nbytes = staged.value.data.byteLength;
    this.managedBytes += ts.nbytes;
    this.lruPush(ts);
    if (staged.typeName) ts.typeName = staged.typeName;
    this.setState(ts, 'memory', ctx);
    if (start === 'executing' || (start !== 'released' && ts.call && ts.wanted)) {
      if (ts.wanted) {
        this.send(ctx, {
          type: 'TaskFinished',
          key: ts.key,
          value: ts.nbytes <= this.config.inlineBytes ? staged.value : undefined,
          nbytes: ts.nbytes,
          typeName: ts.typeName,
          startMs: staged.startMs || this.config.now(),
          stopMs: staged.stopMs || this.config.now(),
          stimulusId: ctx.stimulusId,
        });
      }
    } else if (start !== 'released' && ts.replica) {
      this.send(ctx, {
        type: 'AddKeys',
        keys: [{ key: ts.key, workers: [this.config.address], nbytes: ts.nbytes }],
        stimulusId: ctx.stimulusId,
      });
    }
    for (const d of ts.dependents) {
      const dt = this.tasks.get(d);
      if (!dt) continue;
      dt.waitingFor.delete(ts.key);
      // (One without a call was given back earlier in this event: what becomes of it is decided.)
      if (dt.state === 'waiting' && dt.waitingFor.size === 0 && dt.call) ctx.recs.set(d, 'ready');
    }
    this.unlinkDependencies(ts, ctx);
    ts.call = undefined;
  }

  private putInError(ts: TaskRecord, ctx: Ctx): void {
    const staged = ts.staged;
    if (!staged || staged.kind !== 'error') throw new InvalidTransitionError('worker', ts.key, ts.state, 'error', this.story(ts.key));
    ts.staged = undefined;
    this.setState(ts, 'error', ctx);
    if (ts.wanted) {
      this.send(ctx, {
        type: 'TaskErred',
        key: ts.key,
        error: staged.error,
        startMs: staged.startMs,
        stopMs: staged.stopMs,
        stimulusId: ctx.stimulusId,
      });
    }
    this.unlinkDependencies(ts, ctx);
    ts.call = undefined;
  }

  /**
   * A ComputeTask that could not be set up: the task errs (reported to the scheduler, which
   * reports it to the client) with an internal error saying what failed, and lets go of the
   * inputs it had linked.
   */
  private failSetup(key: string, err: unknown, ctx: Ctx): void {
    const ts = this.tasks.get(key);
    if (!ts) throw err;
    if (ts.state !== 'released') this.transition(ts, 'released', ctx);
    const e = new InternalError(
      `Worker ${this.config.address} could not set up task ${key}: ${err instanceof Error ? err.message : String(err)}. This is a bug in Skein (or a malformed ComputeTask); please report it with the task's story.`,
      { details: { key, stimulusId: ctx.stimulusId } },
    );
    if (err instanceof Error && err.stack) e.stack = err.stack;
    ts.wanted = true;
    ts.staged = {
      kind: 'error',
      error: toRemoteError(e, key),
      startMs: ctx.nowMs,
      stopMs: ctx.nowMs,
    };
    this.putInError(ts, ctx);
  }

  /** No holder has this key: give back the tasks that need it; compute it here if assigned. */
  /** Records what a task to compute here needs: its priority, resources and inputs. */
  private setUpCompute(ts: TaskRecord, ev: ComputeTaskEvent, ctx: Ctx): void {
    // Set up (again): the spec of a task already under way is not changed.
    ts.priority = ev.priority;
    ts.sequence = ev.sequence;
    ts.resources = ev.resources.size > 0 ? new Map(ev.resources) : NO_RESOURCES;
    for (const dep of ev.dependencies) {
      if (dep === ev.key) continue;
      const d = this.tasks.get(dep) ?? this.newTask(dep);
      addTo(d, 'dependents', ts.key);
      addTo(ts, 'dependencies', dep);
      for (const w of ev.whoHas.get(dep) ?? []) if (w !== this.config.address) addTo(d, 'whoHas', w);
      const nb = ev.nbytes.get(dep);
      if (nb !== undefined && d.state !== 'memory') d.nbytes = nb;
      const inline = ev.inlineInputs.get(dep);
      if (inline && (d.state === 'released' || d.state === 'fetch' || d.state === 'missing' || d.state === 'flight')) {
        d.staged = { kind: 'value', value: inline, typeName: '', startMs: 0, stopMs: 0 };
        ctx.recs.set(dep, 'memory');
      }
    }
  }

  private onMissing(ts: TaskRecord, ctx: Ctx): void {
    // Assigned here while it was being fetched: set it up to run here instead.
    const compute = ts.call && ts.wanted ? this.computeWhileFetching.get(ts.key) : undefined;
    if (compute) {
      this.computeWhileFetching.delete(ts.key);
      this.setUpCompute(ts, compute, ctx);
    }
    for (const d of [...ts.dependents]) {
      const dt = this.tasks.get(d);
      if (!dt || dt.state !== 'waiting') continue;
      this.send(ctx, { type: 'Reschedule', key: d, stimulusId: ctx.stimulusId });
      ts.dependents.delete(d);
      dt.dependencies.delete(ts.key);
      dt.waitingFor.delete(ts.key);
      this.giveBack(dt, ctx);
    }
    if (ts.call && ts.wanted) {
      ctx.recs.set(ts.key, 'waiting');
      return;
    }
    ts.wanted = false;
    ts.replica = false;
    if (ts.dependents.size === 0) ctx.recs.set(ts.key, 'forgotten');
  }

  /**
   * A cancelled run ended (or the runtime took it back unstarted): its result is not used (nobody
   * asked this worker for it any more). A key still needed here, as an input of a task assigned
   * since or as a copy asked for, is fetched (Dask's resumed task, which fetches after a failed
   * run); any other is forgotten.
   */
  private endCancelledRun(ts: TaskRecord, ctx: Ctx): void {
    if (ts.dependents.size === 0 && !ts.wanted) ctx.recs.set(ts.key, 'forgotten');
    else ctx.recs.set(ts.key, ts.whoHas.size > 0 ? 'fetch' : 'missing');
  }

  /**
   * The scheduler takes a task back (stolen or rescheduled): forget the assignment. If tasks here
   * still need its value, it becomes an input to fetch (or missing, which gives them back too).
   */
  private giveBack(ts: TaskRecord, ctx: Ctx): void {
    ts.call = undefined;
    ts.wanted = ts.replica;
    if (!ts.wanted && ts.dependents.size === 0) {
      this.recommendDrop(ts, ctx);
    } else if (ts.state === 'waiting' || ts.state === 'ready') {
      ctx.recs.set(ts.key, ts.whoHas.size > 0 ? 'fetch' : 'missing');
    }
  }

  private send(ctx: Ctx, message: SchedulerMessage): void {
    ctx.actions.push({ type: 'SendToScheduler', message, stimulusId: ctx.stimulusId });
  }

  private enqueueReady(ts: TaskRecord): void {
    this.readyCount++;
    if (ts.resources.size > 0) {
      let i = this.constrained.length;
      while (i > 0 && better(ts, this.constrained[i - 1]!)) i--;
      this.constrained.splice(i, 0, ts);
    } else {
      ts.readyToken = ++this.tokens;
      this.readyQueue.push({ ts, token: ts.readyToken });
    }
  }

  private fits(ts: TaskRecord): boolean {
    for (const [r, n] of ts.resources) if ((this.availableResources.get(r) ?? 0) < n) return false;
    return true;
  }

  /** The best ready task that can run now, removed from its queue. */
  private nextReady(): TaskRecord | undefined {
    let top = this.readyQueue.peek();
    while (top && (top.ts.state !== 'ready' || top.ts.readyToken !== top.token)) {
      this.readyQueue.pop();
      top = this.readyQueue.peek();
    }
    const ci = this.constrained.findIndex((t) => this.fits(t));
    const c = ci >= 0 ? this.constrained[ci] : undefined;
    if (c && (!top || better(c, top.ts))) {
      this.constrained.splice(ci, 1);
      return c;
    }
    if (top) {
      this.readyQueue.pop();
      top.ts.readyToken = -1;
      return top.ts;
    }
    return undefined;
  }

  private ensureComputing(ctx: Ctx): void {
    while (!this.paused && this.executing.size < this.maxExecuting && this.readyCount > 0) {
      const ts = this.nextReady();
      if (!ts) break;
      this.transition(ts, 'executing', ctx);
    }
  }

  private ensureCommunicating(ctx: Ctx): void {
    if (this.paused) return;
    for (const key of this.dataNeeded) {
      if (this.inFlight.size >= this.maxIncomingTransfers) break;
      const ts = this.tasks.get(key)!;
      let worker: string | undefined;
      for (const w of ts.whoHas) {
        if (!this.inFlight.has(w)) {
          worker = w;
          break;
        }
      }
      if (worker === undefined) continue;
      const keys: string[] = [];
      let total = 0;
      for (const k of this.dataNeeded) {
        const t = this.tasks.get(k)!;
        if (!t.whoHas.has(worker)) continue;
        keys.push(k);
        total += t.nbytes;
        if (total >= this.targetGatherBytes) break;
      }
      this.inFlight.set(worker, new Set(keys));
      for (const k of keys) {
        const t = this.tasks.get(k)!;
        t.flightWorker = worker;
        this.transition(t, 'flight', ctx);
      }
      ctx.actions.push({ type: 'GatherDep', worker, keys, totalNbytes: total, stimulusId: ctx.stimulusId });
    }
  }

  // ------------------------------------------------------------------------------------------
  // Invariants

  /**
   * Keeps threads fed in proportion to how short tasks are: tiny tasks (under 0.2 ms on average)
   * go to the threads hundreds at a time, so no task pays a thread round trip of its own; longer
   * ones keep the configured pipeline depth.
   */
  private executionWindow(ms: number): void {
    if (!(ms >= 0)) return;
    this.avgTaskMs = this.avgTaskMs < 0 ? ms : this.avgTaskMs * 0.9 + ms * 0.1;
    const tiny = this.avgTaskMs < 0.2;
    this.maxExecuting = tiny ? Math.max(this.baseExecuting, this.config.nthreads * 256) : this.baseExecuting;
  }

  /** Checks the invariants; throws InvalidStateError listing what is wrong. */
  validateState(): void {
    const problems: string[] = [];
    let ready = 0;
    let bytes = 0;
    let spilled = 0;
    let inMemory = 0;
    const used = new Map<string, number>();
    for (const [key, ts] of this.tasks) {
      if (ts.key !== key) problems.push(`${key}: record key ${ts.key}`);
      if ((ts.state === 'memory') !== this.data.has(key)) problems.push(`${key}: state ${ts.state} but data ${this.data.has(key) ? 'held' : 'absent'}`);
      if (ts.state === 'released' || ts.state === 'forgotten') problems.push(`${key}: left in transient state ${ts.state}`);
      if (ts.state === 'missing') problems.push(`${key}: left in missing`);
      const runs = ts.state === 'executing' || (ts.state === 'cancelled' && ts.previous === 'executing');
      if (runs !== this.executing.has(key)) problems.push(`${key}: state ${ts.state}, executing set ${this.executing.has(key)}`);
      if (runs) for (const [r, n] of ts.resources) used.set(r, (used.get(r) ?? 0) + n);
      if ((ts.state === 'fetch') !== this.dataNeeded.has(key)) problems.push(`${key}: state ${ts.state}, dataNeeded ${this.dataNeeded.has(key)}`);
      const inFlight = ts.state === 'flight' || (ts.state === 'cancelled' && ts.previous === 'flight');
      if (inFlight && (!ts.flightWorker || !this.inFlight.get(ts.flightWorker)?.has(key))) problems.push(`${key}: in flight but not tracked`);
      if (ts.state === 'ready') ready++;
      if (ts.state === 'waiting' && ts.waitingFor.size === 0) problems.push(`${key}: waiting for nothing`);
      if (ts.state === 'ready' || ts.state === 'executing') {
        for (const dep of ts.dependencies) if (!this.data.has(dep)) problems.push(`${key}: ${ts.state} without input ${dep}`);
        if (!ts.call) problems.push(`${key}: ${ts.state} without a call`);
      }
      for (const dep of ts.dependencies) {
        const d = this.tasks.get(dep);
        if (!d) problems.push(`${key}: dependency ${dep} unknown`);
        else if (!d.dependents.has(key)) problems.push(`${key}: dependency ${dep} does not list it`);
      }
      for (const dep of ts.dependents) {
        const d = this.tasks.get(dep);
        if (!d) problems.push(`${key}: dependent ${dep} unknown`);
        else if (!d.dependencies.has(key)) problems.push(`${key}: dependent ${dep} does not list it`);
      }
      if (!ts.wanted && ts.dependents.size === 0 && ts.state !== 'cancelled' && ts.state !== 'executing') {
        problems.push(`${key}: state ${ts.state}, neither wanted nor needed`);
      }
    }
    for (const [key, v] of this.data) {
      if (!this.tasks.has(key)) problems.push(`${key}: data without a task`);
      if (isSpilled(v)) spilled += v.nbytes;
      else {
        bytes += v.data.byteLength;
        inMemory++;
      }
    }
    if (bytes !== this.managedBytes) problems.push(`managedBytes ${this.managedBytes} != ${bytes}`);
    if (spilled !== this.spilledBytes) problems.push(`spilledBytes ${this.spilledBytes} != ${spilled}`);
    let listed = 0;
    let prev: TaskRecord | undefined;
    for (let t = this.lruOldest; t && listed <= inMemory; t = t.lruNewer) {
      listed++;
      if (t.lruOlder !== prev) problems.push(`${t.key}: LRU links broken`);
      const v = this.data.get(t.key);
      if (!v || isSpilled(v) || this.tasks.get(t.key) !== t) problems.push(`${t.key}: in the LRU list but not in memory`);
      prev = t;
    }
    if (prev !== this.lruNewest) problems.push('LRU list: newest end broken');
    if (listed !== inMemory) problems.push(`LRU list has ${listed} entries, ${inMemory} values in memory`);
    if (ready !== this.readyCount) problems.push(`readyCount ${this.readyCount} != ${ready}`);
    for (const [r, total] of this.totalResources) {
      if ((this.availableResources.get(r) ?? 0) + (used.get(r) ?? 0) !== total) problems.push(`resource ${r}: accounting off`);
      if ((this.availableResources.get(r) ?? 0) < 0) problems.push(`resource ${r}: over-committed`);
    }
    if (this.executing.size > Math.max(this.maxExecuting, this.config.nthreads * 256)) problems.push(`executing ${this.executing.size} > ${this.maxExecuting}`);
    for (const [w, keys] of this.inFlight) {
      for (const k of keys) {
        const t = this.tasks.get(k);
        if (t && t.flightWorker !== w && t.state !== 'memory') problems.push(`${k}: in flight from ${w} but flightWorker ${t.flightWorker}`);
      }
    }
    if (problems.length > 0) throw new InvalidStateError(problems);
  }
}

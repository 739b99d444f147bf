import './polyfill.js';
import { randomUUID } from 'node:crypto';
import {
  LOCAL_CLIENT_SESSION,
  Batcher,
  CancelledError,
  CommClosedError,
  InvalidArgumentError,
  Lifecycle,
  SkeinError,
  decodeValue,
  encodeValue,
  formatAddress,
  fromRemoteError,
  inlineFunction,
  Security,
  mapTemplate,
  parseAddress,
  skeinDefaults,
  taskError,
  typeName,
  KEEP,
  WALK,
  checkPackageNames,
  checkVersions,
  fromVersionsMessage,
  type Versions,
  PluginSetupError,
  pluginResultFromWire,
} from '@skein/common';
import { pluginSpec, type PluginDescription, type PluginRegistration, type RegisterPluginOptions } from './plugins.js';
import { Encoding, WorkerServiceClient } from '@skein/protocol';
import { SchedulerConnection, deadlineIn, unary, type LocalSessionOpener } from './connection.js';
import { Future, KeyState, releasedError, type FutureHost } from './future.js';
import {
  Delayed,
  buildTask,
  compileTaskOptions,
  flattenDelayed,
  replaceLazy,
  resolveFunction,
  type CompiledTaskOptions,
  type LazyArgs,
  type ResolvedFunction,
  type TaskFunction,
  type Lazy,
} from './graph.js';
import { fetchFromWorker, type Cancellable } from './transfer.js';
import { AsCompleted, wait, type AsCompletedOptions, type DoneAndNotDone, type WaitOptions } from './waiting.js';
import type {
  ClientOptions,
  ClientStatus,
  CompiledClientOptions,
  Incoming,
  Outgoing,
  SchedulerInfo,
  TaskDef,
  TaskOptions,
  Story,
  StorySkip,
  Transition,
  FunctionSource,
  ClusterVersions,
  GetVersionsOptions,
} from './types.js';
import { fromGetStory, fromRunResponse, fromWorkerStory, toRunRequest } from './wire.js';
import { clientVersions, processesOf, warnOnMismatch } from './versions.js';

/** The result type of a structure of futures: each Future<T> replaced by T, at any depth. */
export type Gathered<T> =
  T extends Future<infer U>
    ? U
    : T extends readonly unknown[]
      ? { -readonly [K in keyof T]: Gathered<T[K]> }
      : T extends Record<string, unknown>
        ? { [K in keyof T]: Gathered<T[K]> }
        : T;

/** The futures of `compute`/`persist` for a tuple or array of Delayed. */
export type ComputedFutures<T extends readonly Delayed<unknown>[]> = {
  -readonly [K in keyof T]: T[K] extends Delayed<infer U> ? Future<U> : never;
};

/** Options of `scatter`. */
export interface ScatterOptions {
  /** Copy the data to every worker once it is stored. */
  broadcast?: boolean;
  /** True (default): keys are a hash of the data, so scattering equal data twice gives the same key. */
  hash?: boolean;
  /** Worker addresses or names to place the data on. */
  workers?: string | readonly string[];
  /** How the data travels: 'v8' (default) or 'json'. */
  encoding?: 'v8' | 'json';
}

/** Options of `runWith`. */
export interface RunOptions {
  /** Only these worker addresses (default: every worker). */
  workers?: readonly string[];
  /** How arguments travel: 'v8' (default) or 'json'. */
  encoding?: 'v8' | 'json';
  /** Per-worker deadline. */
  timeoutMs?: number;
}

/** Options of `storyWith`. */
export interface StoryOptions {
  /** How long to wait for each worker's transitions (ms, default 5000). */
  timeoutMs?: number;
}

/**
 * Merges transition lists that are each in time order into one, by time; ties keep the order of
 * `lists` (the scheduler first). Each list keeps its own order even where its clock stepped back.
 */
function mergeByTime(lists: Transition[][]): Transition[] {
  const out: Transition[] = [];
  const at = lists.map(() => 0);
  for (;;) {
    let best = -1;
    let bestTime = Infinity;
    for (let i = 0; i < lists.length; i++) {
      const t = lists[i]![at[i]!];
      if (t && (best < 0 || t.timeMs < bestTime)) {
        best = i;
        bestTime = t.timeMs;
      }
    }
    if (best < 0) return out;
    out.push(lists[best]![at[best]!++]!);
  }
}

/** What `adaptiveTarget` returns. */
export interface AdaptiveTarget {
  /** Recommended number of workers. */
  target: number;
  /** When target is below current: idle workers (addresses) to retire first, best first. */
  workersToClose: string[];
  /** Workers the scheduler counts now (not retiring). */
  current: number;
  /** Why: 'cpu', 'memory', 'idle' or 'none'. */
  reason: string;
}

/** Options of `retireWorkers`. */
export interface RetireOptions {
  /** Worker addresses or names. */
  workers?: readonly string[];
  /** With no workers: let the scheduler choose this many. */
  n?: number;
}

type UpdateMessage = Extract<Outgoing, { type: 'UpdateGraph' }>;
type KeysMessage = Exclude<Outgoing, UpdateMessage>;

/** Tasks per graph update message (see #update): big enough to amortize, small enough to stream. */
const MAX_UPDATE_TASKS = 2000;
/**
 * Argument and key bytes per graph update message (see #update), far below the scheduler's
 * default receive limit (64 MiB): only a single task bigger than this makes a bigger message.
 */
const MAX_UPDATE_BYTES = 1024 * 1024;
/** The Batcher weighs an update by its tasks or by its bytes in these units, whichever is more. */
const BYTES_PER_WEIGHT = MAX_UPDATE_BYTES / MAX_UPDATE_TASKS;
/** Keys per ReleaseKeys, CancelKeys or WantKeys message (about 1 MiB of keys: they weigh 1/10 each). */
const MAX_KEYS_PER_MESSAGE = 10 * MAX_UPDATE_TASKS;

/** A scattered value is stored as the result of this identity task. */
const scatterIdentity = resolveFunction(function scatter(x: unknown) {
  return x;
});

/** The key ended in an error or was cancelled (a function, so TypeScript does not narrow across awaits). */
function settledBadly(s: KeyState): boolean {
  return s.status === 'error' || s.status === 'cancelled';
}

function compileClientOptions(o: ClientOptions, clusterSecurity?: Security): CompiledClientOptions {
  const connectTimeoutMs = o.connectTimeoutMs ?? 10_000;
  if (!(connectTimeoutMs > 0)) {
    throw new InvalidArgumentError(`connectTimeoutMs must be a positive number of milliseconds, got ${connectTimeoutMs}.`);
  }
  const refetchTimeoutMs = o.refetchTimeoutMs ?? 60_000;
  if (!(refetchTimeoutMs >= 0)) {
    throw new InvalidArgumentError(`refetchTimeoutMs must be a number of milliseconds (0 or more), got ${refetchTimeoutMs}.`);
  }
  const security = o.security ?? clusterSecurity ?? Security.fromEnv() ?? Security.insecure();
  return { connectTimeoutMs, clientId: o.clientId ?? `client-${randomUUID()}`, refetchTimeoutMs, security, inProcess: o.inProcess ?? true };
}

/**
 * A connection to a Skein scheduler (Dask's Client): submit functions, map over data, build and
 * compute graphs, gather results.
 *
 * @example
 * await using client = await Client.connect('tcp://127.0.0.1:8786');
 * const x = client.submit((a: number, b: number) => a + b, 1, 2);
 * const y = client.submit((v: number) => v * 10, x);   // futures are arguments
 * console.log(await y.result());                          // 30
 */
export class Client implements FutureHost {
  /** The id this client announced to the scheduler. */
  readonly id: string;
  /** The scheduler's address, `tcp://host:port`. */
  readonly schedulerAddress: string;
  /** The scheduler's dashboard address (empty when it runs none). */
  dashboardLink = '';
  /** The scheduler's id, from its Welcome. */
  schedulerId = '';

  readonly #opts: CompiledClientOptions;
  readonly #lifecycle = new Lifecycle('Client');
  readonly #conn: SchedulerConnection;
  readonly #states = new Map<string, KeyState>();
  /**
   * Keys this client cancelled whose acknowledgement (the scheduler's 'cancelled' report for each
   * key of a CancelKeys) has not arrived, with how many are due. Reports about such a key belong
   * to the cancelled task, not to a resubmission of the key, which only the scheduler's later
   * reports are about.
   */
  readonly #cancelAcks = new Map<string, number>();
  readonly #sentFunctions = new Set<string>();
  readonly #batcher: Batcher<Outgoing>;
  #lastOut: Outgoing | undefined;
  #stimulus = 0;
  readonly #workers = new Map<string, WorkerServiceClient>();
  readonly #calls = new Set<Cancellable>();
  readonly #registry: FinalizationRegistry<KeyState>;

  private constructor(schedulerAddress: string, opts: CompiledClientOptions, local?: LocalSessionOpener) {
    this.schedulerAddress = schedulerAddress;
    this.#opts = opts;
    this.id = opts.clientId;
    this.#conn = new SchedulerConnection(schedulerAddress, this.id, opts.security, {
      update: (ev) => this.#handle(ev),
      lost: (error) => this.#sessionLost(error),
      closing: () => this.#lifecycle.closing,
    }, local);
    // Weighed in tasks, so a map of 100k tasks leaves as ~50 messages the scheduler can start on
    // one by one, and no receive buffer has to hold the whole graph.
    this.#batcher = new Batcher<Outgoing>(
      (batch) => this.#flush(batch),
      MAX_UPDATE_TASKS,
      (m) => (m.type === 'UpdateGraph' ? Math.max(1, m.tasks.length, m.bytes / BYTES_PER_WEIGHT) : Math.max(1, m.keys.length / 10)),
    );
    this.#registry = new FinalizationRegistry((state) => this.#decrefState(state));
  }

  /**
   * Connects to a scheduler: `tcp://host:port` (port 8786 by default) or `{ schedulerAddress }`
   * (for example a LocalCluster). Rejects with CommClosedError when nothing answers within
   * `connectTimeoutMs` (10 s), or ProtocolVersionError when the scheduler speaks another protocol.
   */
  static async connect(
    address: string | { schedulerAddress: string; security?: Security; [LOCAL_CLIENT_SESSION]?: LocalSessionOpener },
    options: ClientOptions = {},
  ): Promise<Client> {
    const opts = compileClientOptions(options, typeof address === 'object' ? address?.security : undefined);
    const raw = typeof address === 'string' ? address : address?.schedulerAddress;
    if (typeof raw !== 'string') {
      throw new InvalidArgumentError('Client.connect needs an address such as tcp://127.0.0.1:8786, or an object with schedulerAddress.');
    }
    const parsed = parseAddress(raw, skeinDefaults().schedulerPort);
    opts.security.dial(parsed, 'client', 'scheduler'); // a tls:// address without TLS credentials fails here, clearly
    const addr = formatAddress(parsed, opts.security.tls);
    // A LocalCluster's scheduler runs in this process: it offers a session without a socket.
    const offer = typeof address === 'object' && opts.inProcess ? address[LOCAL_CLIENT_SESSION] : undefined;
    const local = typeof offer === 'function' ? () => offer.call(address) : undefined;
    const client = new Client(addr, opts, local);
    try {
      await client.#start();
    } catch (err) {
      await client.close().catch(() => undefined);
      throw err;
    }
    return client;
  }

  /**
   * True when the session with the scheduler is held in-process, without a socket: a client of a
   * LocalCluster in the process that runs its scheduler (ClientOptions.inProcess).
   */
  get inProcess(): boolean {
    return this.#conn.inProcess;
  }

  /** 'connecting', 'running', 'closing' or 'closed'. */
  get status(): ClientStatus {
    switch (this.#lifecycle.status) {
      case 'created':
      case 'starting':
        return 'connecting';
      case 'running':
        return 'running';
      case 'closing':
        return 'closing';
      case 'closed':
      case 'failed':
        return 'closed';
    }
  }

  // ------------------------------------------------------------------ session and outgoing messages

  async #start(): Promise<void> {
    this.#lifecycle.beginStart();
    const timeoutMs = this.#opts.connectTimeoutMs;
    const deadline = deadlineIn(timeoutMs);
    await this.#conn.open(deadline, timeoutMs);
    this.schedulerId = this.#conn.schedulerId;
    try {
      const info = await this.#conn.getInfo(Math.max(1000, deadline.getTime() - Date.now()));
      this.dashboardLink = info.dashboardAddress;
      warnOnMismatch(info);
    } catch {
      this.dashboardLink = '';
    }
    this.#lifecycle.started();
  }

  /** The session broke without close(): every pending future fails with `error` (a CommClosedError). */
  #sessionLost(error: CommClosedError): void {
    this.#failAll('error', () => error);
    void this.close().catch(() => undefined);
  }

  /** The batcher's flush: the messages being assembled leave (the next ones start anew). */
  #flush(batch: Outgoing[]): void {
    this.#lastOut = undefined;
    const limit = this.#conn.maxMessageBytes;
    let bytes = 0;
    for (const m of batch) if (m.type === 'UpdateGraph') bytes += m.bytes;
    if (limit <= 0 || bytes <= limit / 2) return this.#conn.send(batch);
    // Near the scheduler's limit: each message alone, and one over it is refused here, because
    // the scheduler would end the whole session (RESOURCE_EXHAUSTED) on reading it.
    for (const m of batch) {
      const size = m.type === 'UpdateGraph' && m.bytes > limit / 2 ? this.#conn.encodedSize([m]) : 0;
      if (size <= limit) {
        this.#conn.send([m]);
        continue;
      }
      const update = m as UpdateMessage;
      const message =
        `This graph update is ${size} bytes, more than the scheduler at ${this.schedulerAddress} accepts in one message (${limit} bytes), so it was not sent. ` +
        'Scatter large arguments first (client.scatter) and pass the futures, or raise the scheduler\'s --max-message-size.';
      for (const key of update.wantedKeys) this.#handle({ type: 'KeyErred', key, error: taskError(key, 'invalid_argument', message, { size, limit }) });
    }
  }

  #stimulusId(kind: string): string {
    return `${kind}-${this.id}-${++this.#stimulus}`;
  }

  /**
   * The UpdateGraph being assembled for the next flush (created and queued on demand); a new one
   * once it holds MAX_UPDATE_TASKS tasks. Only tasks the client wants may be split across updates
   * (map, submit, scatter): the scheduler forgets a task nobody wants and nothing depends on at
   * the end of an update, so compute() keeps each delayed graph in one update.
   */
  #update(): UpdateMessage {
    const last = this.#lastOut;
    const maxTasks = Math.min(MAX_UPDATE_TASKS, this.#conn.maxKeysPerUpdate || MAX_UPDATE_TASKS);
    if (last?.type === 'UpdateGraph' && last.tasks.length < maxTasks && last.wantedKeys.length < maxTasks && last.bytes < MAX_UPDATE_BYTES) return last;
    const u: UpdateMessage = {
      type: 'UpdateGraph',
      tasks: [],
      wantedKeys: [],
      functions: [],
      broadcastKeys: [],
      stimulusId: this.#stimulusId('update-graph'),
      bytes: 0,
    };
    this.#lastOut = u;
    this.#batcher.push(u);
    return u;
  }

  /** Queues keys for a Release/Cancel/Want message, merged with the previous one of its kind. */
  #queueKeys(type: KeysMessage['type'], keys: readonly string[]): void {
    if (keys.length === 0 || this.#conn.lost) return;
    const last = this.#lastOut;
    if (last?.type === type && last.keys.length + keys.length <= MAX_KEYS_PER_MESSAGE) {
      for (const k of keys) last.keys.push(k);
      return;
    }
    if (keys.length > MAX_KEYS_PER_MESSAGE) {
      for (let i = 0; i < keys.length; i += MAX_KEYS_PER_MESSAGE) this.#queueKeys(type, keys.slice(i, i + MAX_KEYS_PER_MESSAGE));
      return;
    }
    const kind = type === 'ReleaseKeys' ? 'release-keys' : type === 'CancelKeys' ? 'cancel-keys' : 'want-keys';
    const m: KeysMessage = { type, keys: [...keys], stimulusId: this.#stimulusId(kind) };
    this.#lastOut = m;
    this.#batcher.push(m);
  }

  #ensureRunning(what: string): void {
    const s = this.#lifecycle.status;
    if (s === 'running') return;
    if (this.#conn.lost) {
      throw new CommClosedError(this.schedulerAddress, `Cannot ${what}: the connection to the scheduler at ${this.schedulerAddress} was lost. Connect a new client.`);
    }
    throw new SkeinError('failed_precondition', `Cannot ${what}: the client is ${this.status}. Connect a new client with Client.connect().`);
  }

  #handle(ev: Incoming): void {
    if (ev.type === 'Welcome') return;
    const due = this.#cancelAcks.size > 0 ? this.#cancelAcks.get(ev.key) : undefined;
    if (due !== undefined) {
      // A report about the cancelled task: dropped; its 'cancelled' acknowledgement counts down.
      if (ev.type !== 'KeyCancelled') return;
      if (due > 1) this.#cancelAcks.set(ev.key, due - 1);
      else this.#cancelAcks.delete(ev.key);
      return;
    }
    switch (ev.type) {
      case 'KeyInMemory': {
        const s = this.#states.get(ev.key);
        if (!s) return;
        // Same key, same computation: a value already decoded, or fetched and not decoded yet,
        // stays valid (a report of new holders, as after a retirement, carries no value).
        if (!s.hasValue && ev.value !== undefined) s.inline = ev.value;
        s.workers = ev.workers;
        s.nbytes = ev.nbytes;
        s.typeName = ev.typeName;
        s.generation++;
        s.settle('finished');
        return;
      }
      case 'KeyErred': {
        const s = this.#states.get(ev.key);
        if (!s) return;
        s.settle('error', fromRemoteError({ ...ev.error, key: ev.error.key || ev.key }));
        return;
      }
      case 'KeyCancelled': {
        // The scheduler dropped this client's want of the key (a restart, or an input of it was
        // cancelled): the futures are done, and submitting the key again starts afresh.
        const s = this.#states.get(ev.key);
        if (!s) return;
        this.#states.delete(ev.key);
        s.detached = true;
        s.settle('cancelled', new CancelledError(ev.key, ev.reason || 'cancelled on the scheduler'));
        return;
      }
      case 'KeyNoWorker': {
        const s = this.#states.get(ev.key);
        if (!s || (s.status !== 'pending' && s.status !== 'no-worker')) return;
        s.status = ev.resolved ? 'pending' : 'no-worker';
        s.noWorkerReason = ev.resolved ? '' : ev.reason;
        return;
      }
      case 'KeyLost': {
        const s = this.#states.get(ev.key);
        if (!s) return;
        s.status = 'lost';
        s.workers = [];
        s.changed();
        return;
      }
      default: {
        const never: never = ev;
        throw new Error(`unhandled update ${JSON.stringify(never)}`);
      }
    }
  }

  /** Settles every non-terminal key (close or connection loss). */
  #failAll(status: 'error' | 'cancelled', error: (key: string) => SkeinError): void {
    for (const s of this.#states.values()) {
      s.detached = true;
      if (!s.terminal) s.settle(status, error(s.key));
    }
    this.#states.clear();
  }

  // ------------------------------------------------------------------ futures

  /** A new Future for `key`, wanting it on the scheduler when it is new to this client. */
  #future<T>(key: string, update: UpdateMessage): Future<T> {
    let s = this.#states.get(key);
    if (!s) {
      s = new KeyState(key);
      this.#states.set(key, s);
      update.wantedKeys.push(key);
    }
    s.refs++;
    const f = new Future<T>(this, s);
    this.#registry.register(f, s, f);
    return f;
  }

  /** @internal */
  _decref(state: KeyState, future: Future<unknown>): void {
    this.#registry.unregister(future);
    this.#decrefState(state);
  }

  #decrefState(state: KeyState): void {
    if (--state.refs > 0) return;
    if (state.detached) return;
    if (this.#states.get(state.key) === state) {
      this.#states.delete(state.key);
      state.detached = true;
      if (!this.#lifecycle.closing) this.#queueKeys('ReleaseKeys', [state.key]);
    }
    if (!state.terminal) state.settle('cancelled', () => releasedError(state.key));
  }

  #addFunction(update: UpdateMessage, source: FunctionSource | undefined): void {
    if (!source || this.#sentFunctions.has(source.hash)) return;
    this.#sentFunctions.add(source.hash);
    update.functions.push(source);
  }

  #addTask(update: UpdateMessage, def: TaskDef, rf: ResolvedFunction, delayedArgs: Delayed<unknown>[]): void {
    this.#addFunction(update, rf.source);
    if (delayedArgs.length > 0) this.#addDelayed(update, delayedArgs);
    // A key this client already wants is known to the scheduler: do not send it again.
    if (!this.#states.has(def.key)) {
      update.tasks.push(def);
      update.bytes += def.args.data.length + def.key.length;
    }
  }

  #addDelayed(update: UpdateMessage, roots: readonly Delayed<unknown>[]): void {
    const { tasks, sources } = flattenDelayed(roots);
    for (const src of sources) this.#addFunction(update, src);
    for (const t of tasks) {
      update.tasks.push(t);
      update.bytes += t.args.data.length + t.key.length;
    }
  }

  /**
   * Runs `fn(...args)` on a worker. Arguments may hold Futures, Delayed values and references made
   * with `makeRef(key)` at any depth inside arrays and objects (cycles included); the task waits
   * for them and receives their values. Everything else is data, passed as it is.
   */
  submit<A extends unknown[], R>(fn: TaskFunction<A, R>, ...args: NoInfer<LazyArgs<A>>): Future<Awaited<R>> {
    return this.submitWith(undefined, fn, ...args);
  }

  /** `submit` with options: key, pure, priority, retries, resources, workers, allowOtherWorkers, encoding. */
  submitWith<A extends unknown[], R>(
    options: TaskOptions | undefined,
    fn: TaskFunction<A, R>,
    ...args: NoInfer<LazyArgs<A>>
  ): Future<Awaited<R>> {
    this.#ensureRunning('submit a task');
    const opts = compileTaskOptions(options);
    const key = options?.key;
    if (key !== undefined && typeof key !== 'string') {
      throw new InvalidArgumentError('submitWith({ key }) takes one key string; use mapWith for a list of keys.');
    }
    const rf = resolveFunction(fn);
    const built = buildTask(rf, args as unknown[], opts, key);
    const update = this.#update();
    this.#addTask(update, built.def, rf, built.delayed);
    return this.#future(built.def.key, update);
  }

  /**
   * Applies `fn` to each element of the iterables, zipped like Dask's map (stopping at the
   * shortest). One task per element, all sent in one graph update.
   */
  map<A extends unknown[], R>(
    fn: TaskFunction<A, R>,
    ...iterables: NoInfer<{ [K in keyof A]: Iterable<Lazy<A[K]>> }>
  ): Future<Awaited<R>>[] {
    return this.mapWith(undefined, fn, ...iterables);
  }

  /** `map` with options; `key` is a key prefix (string) or one key per element (array). */
  mapWith<A extends unknown[], R>(
    options: TaskOptions | undefined,
    fn: TaskFunction<A, R>,
    ...iterables: NoInfer<{ [K in keyof A]: Iterable<Lazy<A[K]>> }>
  ): Future<Awaited<R>>[] {
    this.#ensureRunning('map');
    if (iterables.length === 0) throw new InvalidArgumentError('map(fn, ...iterables) needs at least one iterable.');
    const opts = compileTaskOptions(options);
    const rf = resolveFunction(fn);
    const columns = (iterables as unknown as Iterable<unknown>[]).map((it) => {
      if (it == null || typeof (it as Iterable<unknown>)[Symbol.iterator] !== 'function') {
        throw new InvalidArgumentError('map(fn, ...iterables): every argument after the function must be iterable (an array, a Set, a generator…).');
      }
      return Array.isArray(it) ? (it as unknown[]) : [...it];
    });
    let n = Infinity;
    for (const c of columns) n = Math.min(n, c.length);
    const keyOpt = options?.key;
    const keys = Array.isArray(keyOpt) ? (keyOpt as readonly string[]) : undefined;
    const prefix = typeof keyOpt === 'string' ? keyOpt : undefined;
    if (keys && keys.length < n) {
      throw new InvalidArgumentError(`mapWith({ key: [...] }) gave ${keys.length} keys for ${n} elements; give one key per element.`);
    }
    const futures = new Array<Future<Awaited<R>>>(n);
    const single = columns.length === 1 ? columns[0]! : undefined;
    for (let i = 0; i < n; i++) {
      const args = single ? [single[i]] : columns.map((c) => c[i]);
      const built = buildTask(rf, args, opts, keys?.[i], prefix);
      const update = this.#update();
      this.#addTask(update, built.def, rf, built.delayed);
      futures[i] = this.#future(built.def.key, update);
    }
    return futures;
  }

  /**
   * Sends data to the workers; returns a Future per value. An array scatters each element
   * (Dask-like): wrap it, `scatter([array])`, to scatter the array as one value.
   */
  scatter<T>(data: readonly T[], options?: ScatterOptions): Future<T>[];
  scatter<T>(data: T, options?: ScatterOptions): Future<T>;
  scatter(data: unknown, options: ScatterOptions = {}): Future<unknown> | Future<unknown>[] {
    this.#ensureRunning('scatter data');
    const items = Array.isArray(data) ? data : [data];
    const opts: CompiledTaskOptions = compileTaskOptions({
      pure: options.hash ?? true,
      ...(options.workers === undefined ? {} : { workers: options.workers }),
      ...(options.encoding === undefined ? {} : { encoding: options.encoding }),
    });
    const futures = items.map((item) => {
      if (item instanceof Future || item instanceof Delayed) {
        throw new InvalidArgumentError('scatter() takes data, not Futures or Delayed values; pass those to submit instead.');
      }
      const update = this.#update();
      const built = buildTask(scatterIdentity, [item], opts, undefined, typeName(item).toLowerCase());
      this.#addTask(update, built.def, scatterIdentity, []);
      if (options.broadcast) update.broadcastKeys.push(built.def.key);
      return this.#future<unknown>(built.def.key, update);
    });
    return Array.isArray(data) ? futures : futures[0]!;
  }

  /**
   * Submits delayed graphs in one update and returns a Future per Delayed (only the requested keys
   * are wanted; intermediate results are dropped once not needed).
   */
  compute<T>(d: Delayed<T>): Future<T>;
  compute<const T extends readonly Delayed<unknown>[]>(ds: T): ComputedFutures<T>;
  compute(d: Delayed<unknown> | readonly Delayed<unknown>[]): Future<unknown> | Future<unknown>[] {
    this.#ensureRunning('compute');
    const roots = Array.isArray(d) ? (d as readonly Delayed<unknown>[]) : [d as Delayed<unknown>];
    for (const r of roots) {
      if (!(r instanceof Delayed)) {
        throw new InvalidArgumentError('compute()/persist() take Delayed values (from delayed(fn)(...args)).');
      }
    }
    const update = this.#update();
    this.#addDelayed(update, roots);
    const futures = roots.map((r) => this.#future<unknown>(r.key, update));
    return Array.isArray(d) ? futures : futures[0]!;
  }

  /** Like compute: starts the graphs and returns futures for the same keys (results stay on the cluster). */
  persist<T>(d: Delayed<T>): Future<T>;
  persist<const T extends readonly Delayed<unknown>[]>(ds: T): ComputedFutures<T>;
  persist(d: Delayed<unknown> | readonly Delayed<unknown>[]): Future<unknown> | Future<unknown>[] {
    return this.compute(d as readonly Delayed<unknown>[]);
  }

  /** A new Future for an existing future's key (shares the key's reference count). */
  futureOf<T>(future: Future<T>): Future<T> {
    this.#ensureRunning('copy a future');
    return this.#future<T>(future.key, this.#update());
  }

  // ------------------------------------------------------------------ results

  /**
   * The values of futures inside any structure of arrays and plain objects. Rejects with the first
   * error among them.
   */
  async gather<T>(data: T): Promise<Gathered<T>> {
    const futures: Future<unknown>[] = [];
    collectFutures(data, futures);
    if (futures.length === 0) return data as Gathered<T>;
    const states = [...new Set(futures.map((f) => f._state))];
    await waitTerminal(states);
    const need: KeyState[] = [];
    for (const s of states) {
      if (s.status !== 'finished' && !(s.status === 'lost' && s.hasValue)) throw s.error;
      if (!s.hasValue && !s.inline) need.push(s);
    }
    if (need.length > 0) await this.#fetch(need);
    const values = new Map<KeyState, unknown>();
    for (const s of states) values.set(s, this.#decoded(s));
    // Futures stay reachable until here (the finalizer must not release them mid-gather).
    return replaceFutures(data, values) as Gathered<T>;
  }

  /** @internal */
  async _valueOf(state: KeyState): Promise<unknown> {
    if (!state.hasValue && !state.inline) await this.#fetch([state]);
    return this.#decoded(state);
  }

  #decoded(s: KeyState): unknown {
    if (!s.hasValue) {
      if (!s.inline) {
        throw new SkeinError('internal', `The value of ${s.key} is not available in the client.`);
      }
      s.value = decodeValue(s.inline);
      s.hasValue = true;
      s.inline = undefined;
    }
    return s.value;
  }

  /** Fetches values from workers: one GetData stream per worker for all its keys. */
  async #fetch(states: KeyState[]): Promise<void> {
    const waits: Promise<void>[] = [];
    const byWorker = new Map<string, KeyState[]>();
    for (const s of states) {
      if (s.fetching) {
        waits.push(s.fetching);
        continue;
      }
      if (s.hasValue || s.inline) continue;
      const w = s.workers.length === 1 ? s.workers[0] : s.workers[Math.floor(Math.random() * s.workers.length)];
      if (w === undefined) {
        waits.push(this.#fetchOne(s, new Set(), undefined));
        continue;
      }
      let group = byWorker.get(w);
      if (!group) byWorker.set(w, (group = []));
      group.push(s);
    }
    for (const [address, group] of byWorker) {
      const batch = this.#getData(address, group.map((s) => s.key));
      for (const s of group) {
        const tried = new Set([address]);
        const p = batch.then(
          (r) => {
            const v = r.values.get(s.key);
            if (v) {
              s.inline = v;
              return;
            }
            return this.#fetchOne(s, tried, new SkeinError('not_found', `worker ${address} does not hold it`));
          },
          (err: unknown) => this.#fetchOne(s, tried, err),
        );
        const tracked = p.finally(() => {
          if (s.fetching === tracked) s.fetching = undefined;
        });
        s.fetching = tracked;
        waits.push(tracked);
      }
    }
    await Promise.all(waits);
  }

  /**
   * Tries the key's other holders one by one. When none can hand the value over, asks the
   * scheduler where the key is now (its who_has: the value may have moved, as when a worker
   * retires) and tries those holders. Failing that (a worker died mid-transfer, say), waits up
   * to refetchTimeoutMs for the scheduler to report the key again: it notices the dead worker,
   * reports the key lost and recomputes it elsewhere.
   */
  async #fetchOne(s: KeyState, tried: Set<string>, lastError: unknown): Promise<void> {
    const deadline = Date.now() + this.#opts.refetchTimeoutMs;
    let askedScheduler = false;
    for (;;) {
      const generation = s.generation;
      if (!askedScheduler && s.workers.every((w) => tried.has(w))) {
        askedScheduler = true;
        const holders = await this.#whoHas(s.key);
        if (holders.some((w) => !tried.has(w)) && s.generation === generation) s.workers = holders;
      }
      for (const w of s.workers) {
        if (tried.has(w)) continue;
        tried.add(w);
        try {
          const r = await this.#getData(w, [s.key]);
          const v = r.values.get(s.key);
          if (v) {
            s.inline = v;
            return;
          }
          lastError = new SkeinError('not_found', `worker ${w} does not hold it`);
        } catch (err) {
          lastError = err;
        }
      }
      if (s.generation !== generation && s.status === 'finished') continue; // new holders reported meanwhile
      if (settledBadly(s)) throw s.error!;
      const left = deadline - Date.now();
      if (left > 0 && !s.detached && !this.#lifecycle.closing) {
        await s.nextChange(left);
        if (settledBadly(s)) throw s.error!;
        if (s.generation !== generation && s.status === 'finished') {
          tried.clear(); // a recomputed key may live on a worker tried before
          continue;
        }
      }
      const why = lastError instanceof Error ? lastError.message : String(lastError ?? 'no worker holds it');
      throw new SkeinError(
        'unavailable',
        `Could not fetch the result of ${s.key} from its workers (${[...tried].join(', ') || 'none reported'}): ${why}. ` +
          `The scheduler did not report it again within ${this.#opts.refetchTimeoutMs} ms (refetchTimeoutMs).`,
        { cause: lastError, details: { key: s.key } },
      );
    }
  }

  /** The scheduler's holders of a key now; none when it cannot say (the fetch goes on without). */
  async #whoHas(key: string): Promise<string[]> {
    if (this.#lifecycle.closing) return [];
    const sch = this.#conn.stub;
    try {
      const res = await unary(sch.getWhoHas.bind(sch), { keys: [key] }, `GetWhoHas from the scheduler at ${this.schedulerAddress}`, 10_000);
      return res.whoHas[0]?.workers ?? [];
    } catch {
      return [];
    }
  }

  #getData(address: string, keys: string[]) {
    if (this.#lifecycle.closing) {
      return Promise.reject(new SkeinError('cancelled', `The client is closed; cannot fetch ${keys.length} value(s) from ${address}.`));
    }
    return fetchFromWorker(this.#worker(address), address, keys, (c) => {
      this.#calls.add(c);
      return () => this.#calls.delete(c);
    });
  }

  #worker(address: string): WorkerServiceClient {
    let w = this.#workers.get(address);
    if (!w) {
      const dial = this.#opts.security.dial(address, 'client', 'worker');
      w = new WorkerServiceClient(dial.target, dial.credentials, dial.options);
      this.#workers.set(address, w);
    }
    return w;
  }

  /** Stops the futures' tasks; they become 'cancelled' at once. */
  async cancel(futures: Future<unknown> | readonly Future<unknown>[]): Promise<void> {
    const list = Array.isArray(futures) ? (futures as readonly Future<unknown>[]) : [futures as Future<unknown>];
    const keys: string[] = [];
    for (const f of list) {
      const s = f._state;
      if (s.detached) continue;
      if (this.#states.get(s.key) === s) this.#states.delete(s.key);
      s.detached = true;
      keys.push(s.key);
      if (s.status !== 'cancelled') s.settle('cancelled', new CancelledError(s.key, 'cancelled by the client'));
    }
    if (keys.length > 0 && this.#lifecycle.status === 'running' && !this.#conn.lost) {
      if (this.#conn.cancelAcked) for (const k of keys) this.#cancelAcks.set(k, (this.#cancelAcks.get(k) ?? 0) + 1);
      this.#queueKeys('CancelKeys', keys);
    }
  }

  /** Waits for futures (see the standalone `wait`). */
  wait<T>(futures: Iterable<Future<T>>, options?: WaitOptions): Promise<DoneAndNotDone<T>> {
    return wait(futures, options);
  }

  /** Futures in completion order (see the standalone `asCompleted`). */
  asCompleted<T>(futures: Iterable<Future<T>>, options: { withResults: true }): AsCompleted<T, [Future<T>, T]>;
  asCompleted<T>(futures: Iterable<Future<T>>, options?: { withResults?: false }): AsCompleted<T, Future<T>>;
  asCompleted<T>(futures: Iterable<Future<T>>, options: AsCompletedOptions = {}): AsCompleted<T, unknown> {
    return new AsCompleted<T, unknown>(futures, options);
  }

  /** Releases futures (the same as calling release() on each). */
  release(futures: Future<unknown> | readonly Future<unknown>[]): void {
    const list = Array.isArray(futures) ? (futures as readonly Future<unknown>[]) : [futures as Future<unknown>];
    for (const f of list) f.release();
  }

  // ------------------------------------------------------------------ cluster calls

  /** The scheduler, its workers and task counts. */
  schedulerInfo(): Promise<SchedulerInfo> {
    this.#ensureRunning('ask the scheduler for info');
    return this.#conn.getInfo();
  }

  /**
   * Every recorded transition of these keys (or futures' keys), from the scheduler and from every
   * worker, merged by time, oldest first (each record says `where`). Workers that do not answer
   * within 5 s are left out and listed in `skipped`; see `storyWith`.
   */
  story(...keys: Array<string | Future<unknown>>): Promise<Story> {
    return this.storyWith({}, ...keys);
  }

  /**
   * `story` with options. Asks the scheduler for its transitions and its workers, then every
   * connected worker in parallel, each within `timeoutMs` (default 5 s). A worker that fails or
   * does not answer in time, and one the scheduler's records name that is gone, is noted in
   * `skipped`, not an error.
   * Each process stamps transitions with its own wall clock (Date.now), so across processes the
   * order is only as good as their clocks agree; within one process it is the order of events.
   */
  async storyWith(options: StoryOptions, ...keys: Array<string | Future<unknown>>): Promise<Story> {
    this.#ensureRunning('ask for a story');
    const timeoutMs = options.timeoutMs ?? 5_000;
    if (!(timeoutMs > 0)) throw new InvalidArgumentError(`storyWith: timeoutMs must be a positive number of ms, got ${String(timeoutMs)}.`);
    const wanted = keys.map((k) => (typeof k === 'string' ? k : k.key));
    const s = this.#conn.stub;
    const [res, info] = await Promise.all([
      unary(s.getStory.bind(s), { keys: wanted }, `GetStory from the scheduler at ${this.schedulerAddress}`, 30_000),
      this.#conn.getInfo(),
    ]);
    const scheduler = fromGetStory(res);
    const skipped: StorySkip[] = [];
    const current = new Set(info.workers.map((w) => w.address));
    const gone = new Set<string>();
    for (const t of scheduler) if (t.worker && !current.has(t.worker)) gone.add(t.worker);
    for (const worker of gone) skipped.push({ worker, reason: 'it is no longer connected to the scheduler; its transitions left with it' });
    const stories = await Promise.all(
      [...current].map(async (address) => {
        try {
          const w = this.#worker(address);
          return fromWorkerStory(await unary(w.getStory.bind(w), { keys: wanted }, `GetStory from the worker at ${address}`, timeoutMs), address);
        } catch (err) {
          skipped.push({ worker: address, reason: err instanceof Error ? err.message : String(err) });
          return [];
        }
      }),
    );
    return Object.assign(mergeByTime([scheduler, ...stories]), { skipped });
  }

  /**
   * Restarts every worker through its nanny and waits until they are back (Dask's
   * `client.restart()`). All tasks are forgotten: pending and finished futures of every client are
   * cancelled and workers start empty. Workers without a nanny are closed instead.
   */
  async restart(options: { timeoutMs?: number } = {}): Promise<{ workers: string[]; closed: string[] }> {
    this.#ensureRunning('restart the cluster');
    const timeoutMs = options.timeoutMs ?? 60_000;
    const s = this.#conn.stub;
    const res = await unary(
      s.restartWorkers.bind(s),
      { timeoutMs },
      `RestartWorkers on the scheduler at ${this.schedulerAddress}`,
      timeoutMs + 5_000,
    );
    return { workers: res.workers, closed: res.closed };
  }

  /**
   * Registers a plugin (Dask's `register_plugin`): a module that every worker, every nanny, or the
   * scheduler imports and sets up, now and on every worker or nanny that joins later (the
   * scheduler keeps the registry). The same name again replaces the plugin (teardown, then
   * setup), or with `idempotent` is a no-op. A setup that throws is reported per process: this
   * rejects with a PluginSetupError naming each one and its error (the plugin stays registered;
   * the workers keep running unless the plugin says `failWorker`); `raiseOnError: false`
   * resolves with the results instead. See README.md, "Plugins".
   */
  async registerPlugin(plugin: PluginDescription, options: RegisterPluginOptions = {}): Promise<PluginRegistration> {
    this.#ensureRunning('register a plugin');
    const spec = pluginSpec(plugin, options);
    // 0 means the default, as on the scheduler.
    const timeoutMs = options.timeoutMs || plugin.timeoutMs || 60_000;
    const s = this.#conn.stub;
    const res = await unary(
      s.registerPlugin.bind(s),
      { plugin: spec, idempotent: options.idempotent === true, timeoutMs },
      `RegisterPlugin ${JSON.stringify(spec.name)} on the scheduler at ${this.schedulerAddress}`,
      timeoutMs + 5_000,
    );
    const results = res.results.map(pluginResultFromWire);
    if ((options.raiseOnError ?? true) && results.some((r) => !r.ok)) throw new PluginSetupError(spec.name, results);
    return { name: spec.name, results, skipped: res.skipped };
  }

  /**
   * Removes a plugin: torn down on every process it was applied to (a name not registered:
   * NOT_FOUND). A teardown that throws rejects with a PluginSetupError (phase 'teardown') naming
   * each process, as Dask raises; the plugin is unregistered all the same. `raiseOnError: false`
   * resolves with the results instead.
   */
  async unregisterPlugin(name: string, options: { timeoutMs?: number; raiseOnError?: boolean } = {}): Promise<PluginRegistration> {
    this.#ensureRunning('unregister a plugin');
    const timeoutMs = options.timeoutMs || 60_000;
    const s = this.#conn.stub;
    const res = await unary(
      s.unregisterPlugin.bind(s),
      { name, timeoutMs },
      `UnregisterPlugin ${JSON.stringify(name)} on the scheduler at ${this.schedulerAddress}`,
      timeoutMs + 5_000,
    );
    const results = res.results.map(pluginResultFromWire);
    if ((options.raiseOnError ?? true) && results.some((r) => !r.ok)) throw new PluginSetupError(name, results, 'teardown');
    return { name, results, skipped: false };
  }

  /** Recent memory and CPU samples of every worker (from their heartbeats), oldest first. */
  async workerMetrics(): Promise<Record<string, Array<{ timeMs: number; memoryRss: number; managedBytes: number; spilledBytes: number; cpuPercent: number; executing: number }>>> {
    this.#ensureRunning('ask for worker metrics');
    const s = this.#conn.stub;
    const res = await unary(s.getWorkerMetrics.bind(s), {}, `GetWorkerMetrics from the scheduler at ${this.schedulerAddress}`, 30_000);
    return Object.fromEntries(res.workers.map((w) => [w.address, w.samples.map((x) => ({ ...x }))]));
  }

  /** Asks workers to leave gracefully (their unique results move to peers first); returns those retired. */
  async retireWorkers(options: RetireOptions = {}): Promise<string[]> {
    this.#ensureRunning('retire workers');
    const s = this.#conn.stub;
    const res = await unary(
      s.retireWorkers.bind(s),
      { workers: [...(options.workers ?? [])], n: options.n ?? 0 },
      `RetireWorkers on the scheduler at ${this.schedulerAddress}`,
      120_000,
    );
    return res.retired;
  }

  /**
   * How many workers the current load calls for (the scheduler's adaptive target): enough to
   * finish queued and running work within `targetDurationMs` (default 5 s), more under memory
   * pressure, and the idle workers that could be retired first when fewer would do.
   */
  async adaptiveTarget(options: { targetDurationMs?: number } = {}): Promise<AdaptiveTarget> {
    this.#ensureRunning('ask for the adaptive target');
    const s = this.#conn.stub;
    const res = await unary(
      s.getAdaptiveTarget.bind(s),
      { targetDurationMs: options.targetDurationMs ?? 0 },
      `GetAdaptiveTarget from the scheduler at ${this.schedulerAddress}`,
      30_000,
    );
    return { target: res.target, workersToClose: res.workersToClose, current: res.current, reason: res.reason };
  }

  /**
   * What the client, the scheduler and every worker run: the Node version, every Skein package,
   * and the npm packages named in `packages` (Dask's get_versions). With `check: true`, throws
   * VersionMismatchError naming who differs and what. Each worker is asked itself when
   * `packages` are named; otherwise the scheduler answers with what the workers reported.
   */
  async getVersions(options: GetVersionsOptions = {}): Promise<ClusterVersions> {
    this.#ensureRunning('ask for the versions');
    const packages = checkPackageNames(options.packages ?? [], 'client.getVersions({ packages })');
    const s = this.#conn.stub;
    const res = await unary(s.getVersions.bind(s), { packages }, `GetVersions from the scheduler at ${this.schedulerAddress}`, 30_000);
    const workers = await Promise.all(
      res.workers.map(async (w): Promise<[string, Versions]> => {
        if (packages.length === 0) return [w.address, fromVersionsMessage(w.versions)];
        const c = this.#worker(w.address);
        const r = await unary(c.getVersions.bind(c), { packages }, `GetVersions from worker ${w.address}`, 30_000);
        return [w.address, fromVersionsMessage(r.versions)];
      }),
    );
    const out: ClusterVersions = { client: clientVersions(packages), scheduler: fromVersionsMessage(res.scheduler), workers: new Map(workers) };
    if (options.check) checkVersions(processesOf(out));
    return out;
  }

  /** Runs `fn(...args)` once on every worker, outside the task graph; results keyed by worker address. */
  run<A extends unknown[], R>(fn: (...args: A) => R, ...args: A): Promise<Record<string, Awaited<R>>> {
    return this.runWith({}, fn, ...args);
  }

  /** `run` with options: a subset of workers, encoding, per-worker timeout. */
  async runWith<A extends unknown[], R>(
    options: RunOptions,
    fn: (...args: A) => R,
    ...args: A
  ): Promise<Record<string, Awaited<R>>> {
    this.#ensureRunning('run a function on the workers');
    if (typeof fn !== 'function') throw new InvalidArgumentError('run(fn, ...args) needs a JavaScript function.');
    const f = inlineFunction(fn);
    // The arguments are a template like a task's (data shaped like a marker is quoted), without inputs.
    const ctx = { dependencies: undefined as Set<string> | undefined, delayed: [] };
    const template = replaceLazy(args, ctx);
    if (ctx.dependencies) {
      throw new InvalidArgumentError(
        `client.run(fn, ...args) runs outside the task graph, so its arguments cannot hold Futures, Delayed values or references (found ${[...ctx.dependencies].join(', ')}). Pass their values: await future.result().`,
      );
    }
    const encoded = encodeValue(template, options.encoding ?? 'v8');
    const addresses = options.workers ? [...options.workers] : (await this.#conn.getInfo()).workers.map((w) => w.address);
    const results = await Promise.all(
      addresses.map(async (address) => {
        const w = this.#worker(address);
        const res = await unary(
          w.run.bind(w),
          toRunRequest(
            { hash: f.hash, source: f.source, name: f.name },
            encoded,
            options.encoding === 'json' ? Encoding.ENCODING_JSON : Encoding.ENCODING_V8,
          ),
          `Run on worker ${address}`,
          options.timeoutMs ?? 300_000,
        );
        const outcome = fromRunResponse(res);
        if (!outcome.ok) throw fromRemoteError(outcome.error);
        return [address, decodeValue(outcome.value) as Awaited<R>] as const;
      }),
    );
    // Own properties even for an address such as `__proto__` (the record is output only).
    return Object.fromEntries(results);
  }

  // ------------------------------------------------------------------ close

  /**
   * Closes the session: futures without a result fail with CancelledError ("the client was
   * closed"), the scheduler releases every key of this client. Idempotent.
   */
  close(): Promise<void> {
    return this.#lifecycle.close([
      [
        'fail pending futures',
        () =>
          this.#failAll(
            'cancelled',
            (key) => new CancelledError(key, 'the client was closed (client.close()) before the result arrived'),
          ),
      ],
      ['flush outgoing messages', () => this.#batcher.close()],
      ['end the session', () => this.#conn.end()],
      [
        'stop transfers',
        () => {
          for (const c of this.#calls) c.cancel();
          this.#calls.clear();
        },
      ],
      [
        'close channels',
        () => {
          for (const w of this.#workers.values()) w.close();
          this.#workers.clear();
          this.#conn.close();
        },
      ],
    ]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  toString(): string {
    return `<Client: ${this.status}, scheduler: ${this.schedulerAddress}>`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

/** Resolves when every state is terminal; rejects at once when one fails. */
function waitTerminal(states: readonly KeyState[]): Promise<void> {
  let pending = 0;
  for (const s of states) if (!s.terminal && !(s.status === 'lost' && s.hasValue)) pending++;
  if (pending === 0) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const unsubs: Array<() => void> = [];
    let done = false;
    const onTerminal = (s: KeyState) => {
      if (done) return;
      if (s.status !== 'finished') {
        done = true;
        for (const u of unsubs) u();
        reject(s.error);
        return;
      }
      if (--pending === 0) {
        done = true;
        resolve();
      }
    };
    for (const s of states) {
      if (done) break;
      if (!s.terminal && !(s.status === 'lost' && s.hasValue)) unsubs.push(s.whenTerminal(onTerminal));
      else if (s.status !== 'finished' && s.status !== 'lost') onTerminal(s);
    }
  });
}

function isPlainObject(v: object): boolean {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

// gather walks arrays and plain objects (any depth, cycles kept) for futures.
function visitCollect(v: object, out: Future<unknown>[]): unknown {
  if (v instanceof Future) {
    out.push(v);
    return KEEP;
  }
  return isPlainObject(v) ? WALK : KEEP;
}

function visitReplace(v: object, values: Map<KeyState, unknown>): unknown {
  if (v instanceof Future) return values.get(v._state);
  return isPlainObject(v) ? WALK : KEEP;
}

function collectFutures(v: unknown, out: Future<unknown>[]): void {
  mapTemplate(v, visitCollect, out);
}

function replaceFutures(v: unknown, values: Map<KeyState, unknown>): unknown {
  return mapTemplate(v, visitReplace, values);
}

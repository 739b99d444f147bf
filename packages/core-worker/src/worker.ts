/**
 * The Worker: the thin I/O shell around WorkerState. It wires the state machine, the thread pool,
 * the scheduler session (server/session.ts) and the memory manager (memory-manager.ts) together:
 * serves WorkerService, turns the scheduler's commands into state events, performs the state's
 * actions (run tasks on the thread pool, fetch inputs from peers, send messages through the
 * session) and feeds the results of that async work back as events.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import type { Server } from '@grpc/grpc-js';
import { WorkerServiceService, type ComputeBatch, type GetStatusResponse, type PluginSpec, type PluginResult, type WorkerCommand } from '@skein/protocol';
import {
  InternalError,
  InvalidArgumentError,
  Lifecycle,
  localVersions,
  PluginHost,
  runPreloads,
  fetchRegisteredPlugins,
  pluginResultToWire,
  SkeinError,
  bindServer,
  createLogger,
  errorInfoFromWire,
  faultHook,
  formatAddress,
  newServer,
  strictService,
  shutdownServer,
  taskError,
  toRemoteError,
  watchInvariants,
  type LifecycleStatus,
  type Logger,
} from '@skein/common';
import { compileWorkerOptions, type CompiledWorkerOptions, type WorkerOptions } from './options.js';
import { WorkerState } from './state/worker-state.js';
import { isSpilled, type Encoded, type ExecuteAction, type GatherDepAction, type WorkerAction, type WorkerEvent } from './state/types.js';
import { BulkServer, bulkCounters } from './server/bulk.js';
import { ThreadPool, type PoolResult } from './runtime/pool.js';
import { loadModules } from './runtime/execute.js';
import { PACKAGES_ROOT_ENV, exposeActivation, npmPrefix, packageDirs, packageDirsBuffer, setPackageDirs, uploadsPrefix } from './runtime/packages.js';
import { acquireReplicasEvent, computeBatchEvents, computeTaskEvent, type Outgoing } from './server/convert.js';
import { PeerClients, fetchData } from './server/fetch.js';
import type { ReleasedMemory } from './runtime/gc.js';
import { MemoryManager } from './memory-manager.js';
import { MainThreadRunner } from './server/run.js';
import { SchedulerSession, sleep } from './server/session.js';
import { createWorkerService } from './server/service.js';

export type WorkerStatus = LifecycleStatus | 'reconnecting';

/** What a worker plugin's hooks (and a worker preload module's setup/teardown) get as `ctx`. */
export interface WorkerPluginContext {
  /** The plugin's name (a preload module: `preload:<module>`). */
  name: string;
  /** The options the client registered the plugin with (parsed JSON; undefined for none). */
  options: unknown;
  worker: {
    name: string;
    address: string;
    /** The worker's own directory (spilled results; removed when the worker closes). */
    localDirectory: string;
    schedulerAddress: string;
    nthreads: number;
    pid: number;
    /** '' when the worker has no nanny. */
    nannyAddress: string;
    /** This worker's cluster package directory on this host (NpmInstall, uploads): its own, also when several workers of different clusters share a process. */
    packagesRoot: string;
  };
  log: Logger;
}

/** Why a worker closed. */
export interface WorkerClosed {
  reason: string;
  /** Set when the worker closed because of a failure (e.g. the scheduler was lost). */
  error?: SkeinError;
}

export class Worker {
  readonly options: CompiledWorkerOptions;
  /** Where peers and clients reach this worker, `tcp://ip:port`. */
  address = '';
  /** The worker's name (its address unless given). */
  name = '';
  readonly schedulerAddress: string;
  /** Resolves once the worker has closed, with the reason. */
  readonly closed: Promise<WorkerClosed>;
  /** Names of the functions registered by --module. */
  registeredFunctions: string[] = [];

  private state!: WorkerState;
  private pool: ThreadPool | undefined;
  private server: Server | undefined;
  private bulk: BulkServer | undefined;
  private readonly peers: PeerClients;
  private readonly runner = new MainThreadRunner();
  private readonly memory: MemoryManager;
  private session: SchedulerSession | undefined;
  private readonly lifecycle = new Lifecycle('worker');
  private readonly log: Logger;
  private readonly abort = new AbortController();
  private pending: WorkerEvent[] = [];
  private flushScheduled = false;
  private seq = 0;
  private readonly stimulusTag = randomBytes(3).toString('hex');
  private closeInfo: WorkerClosed | undefined;
  /** Set once an internal error closes the worker (failHard); no event is handled after it. */
  private failure: InternalError | undefined;
  private resolveClosed!: (c: WorkerClosed) => void;
  private closeCommand: (() => void) | undefined;
  /** The worker plugins applied here (client.registerPlugin) and the preload modules. */
  readonly plugins: PluginHost<WorkerPluginContext>;

  private constructor(options: CompiledWorkerOptions) {
    this.options = options;
    this.peers = new PeerClients(options.security);
    this.schedulerAddress = options.scheduler;
    this.log = createLogger('worker');
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.plugins = new PluginHost<WorkerPluginContext>({
      kind: 'worker',
      target: () => ({ target: this.address, targetName: this.name }),
      context: (name, options) => ({
        name,
        options,
        worker: {
          name: this.name,
          address: this.address,
          localDirectory: this.localDirectory,
          schedulerAddress: this.schedulerAddress,
          nthreads: this.options.nthreads,
          pid: process.pid,
          nannyAddress: this.options.nannyAddress,
          packagesRoot: this.options.packagesRoot,
        },
        log: createLogger(`worker plugin ${name}`),
      }),
      importer: (specifier) => import(specifier),
      log: this.log,
      changed: () => this.attachTransitions(),
    });
    this.memory = new MemoryManager(
      options,
      {
        handle: (events) => this.handle(events),
        enqueue: (ev) => this.enqueue(ev),
        stimulus: (prefix) => this.stimulus(prefix),
        report: () => this.session?.sendHeartbeat(),
        closing: () => this.lifecycle.closing,
        track: (p) => void this.lifecycle.track(p),
        collectThreadGarbage: () => this.pool?.collectGarbage(),
      },
      this.log,
    );
  }

  /** Starts a worker and registers it with the scheduler. */
  static async start(opts: WorkerOptions): Promise<Worker> {
    const w = new Worker(compileWorkerOptions(opts));
    await w.startInternal();
    return w;
  }

  get status(): WorkerStatus {
    if (this.session?.reconnecting && this.lifecycle.status === 'running') return 'reconnecting';
    return this.lifecycle.status;
  }

  /** The heartbeat interval in use: the scheduler's (from its Welcome) or the worker's option. */
  get heartbeatIntervalMs(): number {
    return this.session?.heartbeatIntervalMs ?? this.options.heartbeatMs;
  }

  /** The directory holding this worker's spilled results (removed at close). */
  get localDirectory(): string {
    return this.memory.localDirectory;
  }

  /** Counts released bytes and runs a full GC after large frees (runtime/gc.ts). */
  get releasedMemory(): ReleasedMemory {
    return this.memory.released;
  }

  /** The state machine (read it; do not mutate). */
  get workerState(): WorkerState {
    return this.state;
  }

  private async startInternal(): Promise<void> {
    this.lifecycle.beginStart();
    const o = this.options;
    let pool: Promise<ThreadPool> | undefined;
    try {
      // Import the modules here too: a broken module fails start with a clear message.
      // The task threads start while this thread loads the modules and binds its server.
      // Imports fall back to the cluster's package directories (NpmInstall, uploads) in each task
      // thread, and in this one when the worker command registered the hook (cli-main.ts: a
      // Worker started inside another program leaves that program's module loading alone).
      // For task threads and client.run (the built-in plugins use ctx.worker.packagesRoot: with
      // several in-process workers this variable is the last started one's).
      process.env[PACKAGES_ROOT_ENV] = o.packagesRoot;
      setPackageDirs([npmPrefix(o.packagesRoot), uploadsPrefix(o.packagesRoot)]);
      exposeActivation();
      pool = ThreadPool.start({ nthreads: o.nthreads, modules: o.modules, pipelineDepth: o.pipelineDepth, packageDirs: packageDirsBuffer() });
      pool.catch(() => undefined);
      this.registeredFunctions = [...(await loadModules(o.modules)).keys()];
      await this.memory.open();
      this.bulk = await BulkServer.start(o.listenHost, { encrypted: o.security.tls, idleTimeoutMs: o.bulkIdleTimeoutMs });
      this.server = newServer(o.maxMessageBytes);
      this.server.addService(
        strictService(WorkerServiceService),
        createWorkerService({
          security: o.security,
          getValue: (key) => {
            const v = this.state?.data.get(key);
            return isSpilled(v) ? undefined : v;
          },
          getSpilled: (key) => {
            const v = this.state?.data.get(key);
            const store = this.memory.spillStore;
            if (!isSpilled(v) || !store) return undefined;
            return { encoding: v.encoding, totalSize: v.nbytes, chunks: (n) => store.chunks(v.file, n) };
          },
          status: () => this.statusMessage(),
          versions: (packages) => localVersions(import.meta.url, '@skein/core-worker', packages, [...packageDirs(), process.cwd()]),
          story: (keys) => ({ address: this.address, transitions: this.state?.storyOf(keys) ?? [] }),
          runner: this.runner,
          chunkBytes: o.chunkBytes,
          bulk: this.bulk,
          setupPlugin: (spec) => this.setupPlugin(spec),
          teardownPlugin: async (name) => pluginResultToWire(await this.plugins.teardown(name)),
        }),
      );
      const port = await bindServer(this.server, o.listenHost, o.port, 'worker', o.security.serverCredentials('worker'));
      this.pool = await pool;
      this.address = formatAddress({ host: o.advertiseHost, port }, o.security.tls);
      this.name = o.name ?? this.address;
      this.state = new WorkerState({
        address: this.address,
        nthreads: o.nthreads,
        pipelineDepth: o.pipelineDepth,
        resources: o.resources,
        inlineBytes: o.inlineBytes,
        now: () => Date.now(),
        validate: o.validate,
      });
      if (o.testFault) this.state.faultHook = faultHook(o.testFault, 'SKEIN_TEST_FAULT', claimFault(o.testFault.once));
      if (o.validate) watchInvariants(this.state, () => `worker ${this.address}`);
      this.attachTransitions();
      await this.startPlugins();
      this.session = new SchedulerSession(
        o,
        { address: this.address, name: this.name, registeredFunctions: this.registeredFunctions },
        this.state,
        {
          commands: (commands, welcomed) => this.onCommands(commands, welcomed),
          fail: (err, context) => this.failHard(err, context),
          lost: () => this.handle([{ type: 'SchedulerLost', stimulusId: this.stimulus('scheduler-lost') }]),
          close: (error) => void this.close(error.message, error).catch(() => undefined),
          closing: () => this.lifecycle.closing,
          failed: () => this.failure !== undefined,
          track: (p) => void this.lifecycle.track(p),
        },
        this.abort.signal,
        this.log,
      );
      await this.session.start();
      this.memory.start(this.state);
      this.lifecycle.started();
    } catch (err) {
      if (pool && !this.pool) void pool.then((p) => p.close(), () => undefined);
      await this.close('failed to start').catch(() => undefined);
      throw err;
    }
  }

  // ------------------------------------------------------------------------------------------
  // Plugins

  /**
   * Before registering: runs the preload modules (one that cannot be loaded fails the start; a
   * setup that throws is logged, as Dask's) and applies the
   * worker plugins the scheduler has registered, so they are set up before any task arrives. A
   * scheduler that cannot answer (not up yet, older) is not an error: when the worker registers,
   * the scheduler sends it every registered plugin (one it has applied already is skipped by id).
   */
  private async startPlugins(): Promise<void> {
    await runPreloads(this.plugins, this.options.preload, 'worker');
    let specs: PluginSpec[];
    try {
      specs = await fetchRegisteredPlugins(this.options.security, this.options.scheduler, 'worker', Math.min(10_000, this.options.connectTimeoutMs));
    } catch (err) {
      this.log.debug(`could not fetch the registered plugins before registering (${(err as Error).message}); the scheduler sends them at registration`);
      return;
    }
    for (const spec of specs) {
      const r = await this.plugins.setup(spec);
      if (!r.ok && spec.failWorker) {
        throw new SkeinError('failed_precondition', `Plugin ${JSON.stringify(spec.name)} failed its setup (failWorker is set): ${r.error?.type}: ${r.error?.message}`);
      }
    }
  }

  /** SetupPlugin from the scheduler; a failure with failWorker set closes this worker after the answer. */
  private async setupPlugin(spec: PluginSpec): Promise<PluginResult> {
    const r = await this.plugins.setup(spec);
    if (!r.ok && spec.failWorker) {
      const reason = `plugin ${JSON.stringify(spec.name)} failed its setup and asks to close the worker (failWorker): ${r.error?.message}`;
      setImmediate(() => void this.close(reason, new SkeinError('failed_precondition', reason)).catch(() => undefined));
    }
    return pluginResultToWire(r);
  }

  /** Points the state's transition hook at the plugins' (none attached while no plugin has one: no cost per task). */
  private attachTransitions(): void {
    if (!this.state) return;
    const plugins = this.plugins;
    this.state.onTransition =
      plugins.transitionHooks.length === 0 ? undefined : (key, start, finish, stimulusId) => plugins.transition(key, start, finish, { stimulusId });
  }

  // ------------------------------------------------------------------------------------------
  // Commands from the scheduler

  /** Turns the scheduler's commands into state events (the session has handled a Welcome among them). */
  private onCommands(commands: readonly WorkerCommand[], welcomed: boolean): void {
    const events: WorkerEvent[] = [];
    let close: string | undefined;
    let rejected = false;
    for (const cmd of commands) {
      const k = cmd.kind;
      if (!k) continue;
      switch (k.$case) {
        case 'welcome':
          break;
        case 'compute': {
          const f = k.value.function;
          if (f?.source) this.pool?.addFunction(f.hash, f.source);
          try {
            events.push(computeTaskEvent(k.value));
          } catch (err) {
            // A ComputeTask without a spec names no task to err; the rest of the message still runs.
            if (!(err instanceof InvalidArgumentError)) throw err;
            rejected = true;
            this.log.error(`rejected a ComputeTask (stimulus ${k.value.stimulusId || '(none)'}): ${err.message}`);
          }
          break;
        }
        case 'computeBatch': {
          const b = k.value;
          // The source first, even for a batch rejected below: the scheduler counts it as sent.
          const f = b.function;
          if (f?.source) this.pool?.addFunction(f.hash, f.source);
          try {
            computeBatchEvents(b, events);
          } catch (err) {
            if (!(err instanceof InvalidArgumentError)) throw err;
            rejected = true;
            this.rejectBatch(b, err);
          }
          break;
        }
        case 'freeKeys':
          this.revokeUnstarted(k.value.keys, true, k.value.stimulusId, events);
          events.push({ type: 'FreeKeys', keys: k.value.keys, stimulusId: k.value.stimulusId });
          break;
        case 'acquireReplicas':
          events.push(acquireReplicasEvent(k.value.whoHas, k.value.stimulusId));
          break;
        case 'steal':
          this.revokeUnstarted([k.value.key], false, k.value.stimulusId, events);
          events.push({ type: 'StealRequest', key: k.value.key, stimulusId: k.value.stimulusId });
          break;
        case 'close':
          close = k.value.reason || 'the scheduler closed this worker';
          break;
        default: {
          const never: never = k;
          this.log.warn(`unknown command ${JSON.stringify(never)}`);
        }
      }
    }
    if (!welcomed && (events.length > 0 || close || rejected)) {
      throw new SkeinError('failed_precondition', 'The scheduler sent commands before its Welcome.');
    }
    if (events.length > 0) this.handle(events);
    if (close !== undefined) {
      this.closeCommand?.();
      void this.close(close).catch((e: unknown) => this.log.error(`closing (asked by the scheduler) failed: ${(e as Error)?.message ?? String(e)}`));
    }
  }

  /**
   * Before the scheduler frees `keys` or takes them back: tasks handed to the threads that have
   * not started are taken back from them (ExecutionRevoked), so they never run. A freed task that
   * is still an input of another task here stays (it is needed anyway).
   */
  private revokeUnstarted(keys: readonly string[], freeing: boolean, stimulusId: string, events: WorkerEvent[]): void {
    let executing: Set<string> | undefined;
    for (const key of keys) {
      const ts = this.state.tasks.get(key);
      if (ts?.state === 'executing' && !(freeing && ts.dependents.size > 0)) (executing ??= new Set()).add(key);
    }
    if (!executing || !this.pool) return;
    for (const key of this.pool.revoke(executing)) events.push({ type: 'ExecutionRevoked', key, stimulusId });
  }

  /**
   * A ComputeBatch whose columns do not agree (or that lists dependencies) is a bug in the
   * scheduler that sent it, and none of its tasks can run. Rather than drop it and leave the
   * tasks processing on the scheduler forever, the worker logs the error and reports each listed
   * key as erred with it (an InvalidArgumentError naming the field), so the client's futures fail
   * with the reason; the rest of the session carries on.
   */
  private rejectBatch(b: ComputeBatch, err: InvalidArgumentError): void {
    const keys = b.tasks?.keys ?? [];
    this.log.error(`rejected a ComputeBatch of ${keys.length} tasks (stimulus ${b.stimulusId || '(none)'}): ${err.message}`);
    const now = Date.now();
    const stimulusId = b.stimulusId || this.stimulus('compute-batch-rejected');
    for (const key of keys) this.send({ type: 'TaskErred', key, error: toRemoteError(err, key), startMs: now, stopMs: now, stimulusId });
  }

  private send(m: Outgoing): void {
    this.session?.send(m);
  }

  // ------------------------------------------------------------------------------------------
  // Events in, actions out

  /**
   * A stimulus id for an event this worker makes: unique per event here, and across workers (a
   * random tag per worker; the scheduler logs these ids too when they come with a message).
   */
  private stimulus(prefix: string): string {
    return `${prefix}-${this.stimulusTag}-${++this.seq}`;
  }

  /** Queues an event from async work; all queued events are handled together. */
  private enqueue(ev: WorkerEvent): void {
    this.pending.push(ev);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => {
        this.flushScheduled = false;
        const events = this.pending;
        this.pending = [];
        if (!this.lifecycle.closing) this.handle(events);
      });
    }
  }

  /**
   * Feeds events to the state and performs its actions. Any throw here is an internal error:
   * the state is then unknown, so the worker closes (failHard) rather than carry on.
   */
  private handle(events: WorkerEvent[]): void {
    if (this.failure) return;
    try {
      this.perform(this.state.handle(...events));
    } catch (err) {
      const what = events.map((e) => `${e.type} (${e.stimulusId})`).slice(0, 5).join(', ') + (events.length > 5 ? ', ...' : '');
      this.failHard(err, `while handling ${what}`, events.length === 1 ? events[0]!.stimulusId : '');
    }
  }

  /**
   * The failure policy for an internal error (packages/protocol/README.md, "Internal errors"), as
   * Dask's fail_hard: log it, tell the scheduler why (WorkerClosing, after what is already queued
   * for it), and close with an InternalError, so skein-worker exits with code 5 and its nanny
   * starts a fresh worker; the scheduler reschedules this worker's tasks and recomputes results
   * only it held. Never carries on in a state it cannot trust.
   */
  private failHard(err: unknown, context: string, eventStimulusId = ''): void {
    if (this.failure) return;
    // The failing event's stimulus id: the error's own if it names one, else the only event's.
    const named = err instanceof SkeinError ? err.details['stimulusId'] : undefined;
    const stimulusId = typeof named === 'string' && named !== '' ? named : eventStimulusId;
    const error = new InternalError(
      `Worker ${this.address} hit an internal error ${context}: ${err instanceof Error ? err.message : String(err)}. ` +
        'It closes; a nanny starts a fresh worker and the scheduler reschedules its tasks. This is a bug in Skein: please report it with this log.',
      { cause: err, details: { stimulusId } },
    );
    this.failure = error;
    this.log.error(`${error.message}\n${err instanceof Error ? (err.stack ?? '') : ''}`);
    const told = this.session ? this.session.sayClosing(error.message, stimulusId) : Promise.resolve();
    void told.then(() => this.close(error.message, error)).catch(() => undefined);
  }

  private perform(actions: WorkerAction[]): void {
    for (const a of actions) {
      switch (a.type) {
        case 'Execute':
          this.execute(a);
          break;
        case 'GatherDep':
          this.gather(a);
          break;
        case 'SendToScheduler':
          this.send(a.message);
          break;
        case 'ReleaseData':
          this.memory.released.add(a.nbytes);
          break;
        case 'RemoveSpilled':
          this.memory.removeSpilled(a.files);
          break;
        default: {
          const never: never = a;
          throw new SkeinError('internal', `unknown action ${JSON.stringify(never)}`);
        }
      }
    }
    this.memory.afterActions();
  }

  private execute(a: ExecuteAction): void {
    const key = a.key;
    let spilled = false;
    for (const [, v] of a.inputs) if (isSpilled(v)) spilled = true;
    if (!spilled) {
      this.pool!.run(
        { key, fn: a.call.fn, args: a.call.args, inputs: a.inputs as Array<[string, Encoded]>, resultEncoding: a.call.resultEncoding ?? 0, priority: a.priority, sequence: a.sequence },
        (r) => this.onExecuted(key, r),
      );
      return;
    }
    // Read spilled inputs back first (they go back into memory: DataUnspilled).
    const p = Promise.all(a.inputs.map(async ([dep, v]): Promise<[string, Encoded]> => [dep, isSpilled(v) ? await this.memory.unspill(dep, v.file, v.encoding) : v])).then(
      (inputs) => {
        if (this.lifecycle.closing) return;
        this.pool!.run({ key, fn: a.call.fn, args: a.call.args, inputs, resultEncoding: a.call.resultEncoding ?? 0, priority: a.priority, sequence: a.sequence }, (r) => this.onExecuted(key, r));
      },
      (err: unknown) => {
        const now = Date.now();
        const message = `Could not read a spilled input of ${key} back from ${this.localDirectory}: ${(err as Error).message}`;
        this.log.error(message);
        this.enqueue({
          type: 'ExecuteFailure',
          key,
          error: taskError(key, 'internal', message, undefined, 'SkeinError'),
          startMs: now,
          stopMs: now,
          stimulusId: this.stimulus('unspill-failed'),
        });
      },
    );
    void this.lifecycle.track(p);
  }

  private onExecuted(key: string, r: PoolResult): void {
    if (r.ok) {
      this.enqueue({
        type: 'ExecuteSuccess',
        key,
        value: r.value,
        typeName: r.typeName,
        startMs: r.startMs,
        stopMs: r.stopMs,
        stimulusId: this.stimulus('task-finished'),
      });
    } else {
      this.enqueue({ type: 'ExecuteFailure', key, error: errorInfoFromWire(r.error, key), startMs: r.startMs, stopMs: r.stopMs, stimulusId: this.stimulus('task-erred') });
    }
  }

  private gather(a: GatherDepAction): void {
    const worker = a.worker;
    const startMs = Date.now();
    const p = fetchData(this.peers.get(worker), worker, a.keys, this.address, 0, this.abort.signal).then(
      (r) => {
        if (r.data.size > 0) {
          let nbytes = 0;
          for (const v of r.data.values()) nbytes += v.data.byteLength;
          const transferDone = { keys: [...r.data.keys()], source: worker, nbytes, startMs, stopMs: Date.now() };
          this.send({ kind: { $case: 'transferDone', value: transferDone } });
        }
        this.enqueue({ type: 'GatherDepSuccess', worker, data: r.data, missing: r.missing, stimulusId: this.stimulus('gather-dep-success') });
      },
      (err: unknown) => {
        this.peers.forget(worker);
        this.enqueue({ type: 'GatherDepFailure', worker, reason: (err as Error).message, stimulusId: this.stimulus('gather-dep-failure') });
      },
    );
    void this.lifecycle.track(p);
  }

  private statusMessage(): GetStatusResponse {
    return {
      address: this.address,
      name: this.name,
      status: this.status,
      nthreads: this.options.nthreads,
      executing: this.state?.executing.size ?? 0,
      ready: this.state?.readyLength ?? 0,
      keys: this.state ? [...this.state.data.keys()] : [],
      managedBytes: this.state?.managedBytes ?? 0,
      bulkFetched: bulkCounters.fetched,
      bulkFetchedEncrypted: bulkCounters.fetchedEncrypted,
    };
  }

  // ------------------------------------------------------------------------------------------
  // Shutdown

  /**
   * Leaves gracefully: asks the scheduler to retire this worker (it copies results only this
   * worker holds to peers, then sends CloseWorker), waits for CloseWorker, then closes.
   */
  async retire(timeoutMs = this.options.retireTimeoutMs): Promise<void> {
    const s = this.session;
    if (!this.lifecycle.closing && s?.open) {
      const closeCmd = new Promise<void>((resolve) => (this.closeCommand = resolve));
      const deadline = Date.now() + timeoutMs;
      const ok = await s.retire(deadline);
      if (ok) await Promise.race([closeCmd, this.closed, sleep(Math.max(0, deadline - Date.now()), this.abort.signal)]);
    }
    await this.close('retired');
  }

  /** Closes the worker: idempotent, returns the same promise every time. */
  close(reason = 'closed', error?: SkeinError): Promise<void> {
    this.closeInfo ??= error ? { reason, error } : { reason };
    return this.lifecycle
      .close([
        ['stop heartbeat', () => this.session?.stopHeartbeat()],
        ['tear the plugins down', () => this.plugins.closeAll()],
        ['stop the memory monitor', () => this.memory.stop()],
        ['cancel waits and transfers', () => this.abort.abort()],
        ['close the scheduler session', () => this.session?.close()],
        ['stop the task threads', () => this.pool?.close()],
        ['stop the server', () => this.server && shutdownServer(this.server, 1_000)],
        ['stop the bulk server', () => this.bulk?.close()],
        ['close peer channels', () => this.peers.close()],
        ['remove the local directory', () => this.memory.close()],
      ])
      .finally(() => this.resolveClosed(this.closeInfo!));
  }
}

/**
 * For SKEIN_TEST_FAULT_ONCE: the first worker to reach the fault creates the file and fires;
 * one that finds it there lets the fault pass. Without a file every worker fires.
 */
function claimFault(file: string | undefined): (() => boolean) | undefined {
  if (file === undefined) return undefined;
  return () => {
    try {
      closeSync(openSync(file, 'wx'));
      return true;
    } catch {
      return false;
    }
  };
}

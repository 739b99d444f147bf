/**
 * A deterministic simulation of the scheduler and worker state machines (issue 14): one
 * SchedulerState and several WorkerStates, all pure and in this process, wired together as the
 * gRPC shells wire them (core-scheduler/src/server/scheduler.ts, core-worker/src/worker.ts and
 * server/session.ts): every scheduler action becomes a command on that worker's ordered stream,
 * every worker message an event on the scheduler, executions and transfers between workers are
 * pending work that completes at a random later step, and a connection that breaks loses what was
 * in flight. A seeded generator picks the next step: clients connect, submit graphs (dependencies,
 * priorities, retries, worker and resource restrictions, tasks that fail always or now and then),
 * release, cancel, want keys again and leave; workers join, finish, fail, pause, lose and regain
 * the scheduler, die and are retired; messages arrive; the clock ticks (work stealing).
 *
 * Checked after every step: both state machines' invariants (`validate: true`, validateState after
 * every handle), no internal error (a scheduler StateError, a throw), a worker never runs a task
 * without all its inputs, and every value a worker holds or a client is told about is the value
 * the task's definition gives (nothing forged, no stale input). At the end of every episode the
 * disruption stops, restrictions are made satisfiable and everything in flight is let run to the
 * end; then every key a client still wants is in memory (with its correct value, reachable on a
 * worker that holds it) or erred with a reason, the client was told so, no task is left running or
 * waiting anywhere, and the scheduler keeps no task nobody needs.
 *
 *   SKEIN_SIM_SEED=123     replay a run (the seed is printed, and named in every failure)
 *   SKEIN_SIM_STEPS=200000 run longer than the CI budget (default 6000 steps)
 *
 * A failure names the seed, the step and the last events; replaying with the seed reproduces it.
 */
import { describe, expect, it } from 'vitest';
import { SchedulerState, type ClientReport, type SchedulerAction, type SchedulerEvent, type TaskDef } from '@skein/core-scheduler';
import { WorkerState, type Encoded, type ErrorInfo, type SchedulerMessage, type WorkerAction, type WorkerEvent } from '@skein/core-worker';
import { Rng, countFrom, seedFrom } from './rng.js';

const SEED = seedFrom('SKEIN_SIM_SEED');
const STEPS = countFrom('SKEIN_SIM_STEPS', 6000);
/** Random steps between two quiescent checks. */
const EPISODE = 250;
/** Worker addresses: restrictions name them, and a restarted worker may come back under one. */
const ADDRESSES = Array.from({ length: 5 }, (_, i) => `tcp://sim-${i}:8788`);
const MAX_GPU = 2;

// ------------------------------------------------------------------------------- task definitions

interface Def {
  key: string;
  deps: string[];
  /** ok: always succeeds; err: always fails; flaky: fails now and then (retries may save it). */
  kind: 'ok' | 'err' | 'flaky';
  priority: number;
  retries: number;
  workers: string[];
  allowOtherWorkers: boolean;
  gpu: number;
}

const json = (v: unknown): Encoded => ({ encoding: 1, data: Buffer.from(JSON.stringify(v)) });

/** A short stable hash (FNV-1a) of a string. */
function hash(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return (h >>> 0).toString(16);
}

class Registry {
  readonly defs = new Map<string, Def>();
  private readonly expected = new Map<string, string>();
  private n = 0;

  newKey(): string {
    return `t${++this.n}`;
  }

  /** The value the task's definition gives: its key and its inputs' values, hashed. */
  value(key: string): string {
    const known = this.expected.get(key);
    if (known !== undefined) return known;
    const d = this.defs.get(key)!;
    const v = `${key}:${hash([key, ...d.deps.map((k) => this.value(k))].join('|'))}`;
    this.expected.set(key, v);
    return v;
  }

  taskDef(d: Def): TaskDef {
    return {
      key: d.key,
      fn: { registered: '', inlineHash: `h-${d.kind}` },
      args: json([]),
      dependencies: d.deps,
      priority: d.priority,
      retries: d.retries,
      resources: d.gpu > 0 ? new Map([['GPU', d.gpu]]) : new Map(),
      workers: d.workers,
      allowOtherWorkers: d.allowOtherWorkers,
      resultEncoding: 0,
    };
  }

  /** The definitions of `key` and everything it depends on, dependencies first. */
  closure(keys: readonly string[]): Def[] {
    const out: Def[] = [];
    const seen = new Set<string>();
    const visit = (k: string) => {
      if (seen.has(k)) return;
      seen.add(k);
      const d = this.defs.get(k)!;
      for (const dep of d.deps) visit(dep);
      out.push(d);
    };
    for (const k of keys) visit(k);
    return out;
  }
}

// ------------------------------------------------------------------------------------ the shells

type Command =
  | { t: 'compute'; a: Extract<SchedulerAction, { type: 'Compute' }> }
  | { t: 'free'; keys: string[]; stimulusId: string }
  | { t: 'acquire'; a: Extract<SchedulerAction, { type: 'AcquireReplicas' }> }
  | { t: 'steal'; key: string; stimulusId: string }
  | { t: 'close' };

/** What travels from a worker to the scheduler: an event, or the end of the session. */
type Upstream = { t: 'event'; e: SchedulerEvent } | { t: 'end' };

interface PoolEntry {
  key: string;
  started: boolean;
  a: Extract<WorkerAction, { type: 'Execute' }>;
}

class SimWorker {
  state: WorkerState;
  /** Scheduler → worker, in order. */
  inbox: Command[] = [];
  /** Worker → scheduler, in order. */
  outbox: Upstream[] = [];
  /** The executions handed to the thread pool. */
  pool: PoolEntry[] = [];
  gathers: Array<Extract<WorkerAction, { type: 'GatherDep' }>> = [];
  /** Registered with the scheduler (a session is open). */
  connected = true;
  /** The scheduler sent CloseWorker: it sends nothing more on this session. */
  closingBySched = false;
  alive = true;
  paused = false;

  constructor(
    readonly address: string,
    readonly nthreads: number,
    readonly gpu: number,
    now: () => number,
    inlineBytes: number,
  ) {
    this.state = new WorkerState({
      address,
      nthreads,
      pipelineDepth: 1 + (nthreads % 2),
      resources: gpu > 0 ? { GPU: gpu } : {},
      inlineBytes,
      maxIncomingTransfers: 2,
      now,
      validate: true,
    });
  }
}

interface SimClient {
  id: string;
  /** The keys this client holds futures for (its own view). */
  wants: Set<string>;
  inbox: ClientReport[];
  last: Map<string, ClientReport>;
}

class Violation extends Error {}

/** The keys an event names, for the step log. */
function keysOf(e: object): string {
  const o = e as Record<string, unknown>;
  const keys: string[] = [];
  if (typeof o['key'] === 'string') keys.push(o['key']);
  for (const f of ['keys', 'wanted']) {
    const v = o[f];
    if (Array.isArray(v)) for (const k of v) keys.push(typeof k === 'string' ? k : String((k as { key?: string }).key));
  }
  for (const f of ['whoHas', 'data']) {
    const v = o[f];
    if (v instanceof Map) keys.push(...[...v.keys()].map(String));
  }
  if (Array.isArray(o['tasks'])) for (const t of o['tasks'] as Array<{ key: string }>) keys.push(t.key);
  if (Array.isArray(o['missing'])) keys.push(...(o['missing'] as string[]).map((k) => `missing:${k}`));
  if (o['worker'] && typeof o['worker'] === 'object') {
    const held = (o['worker'] as { held?: Array<{ key: string }> }).held ?? [];
    keys.push(...held.map((h) => `held:${h.key}`));
  }
  return keys.length > 0 ? ` [${keys.join(' ')}]` : '';
}

class Simulation {
  readonly r: Rng;
  now = 1_000;
  readonly reg = new Registry();
  readonly s: SchedulerState;
  /** The scheduler shell's connections, by address (the live session of each worker). */
  readonly conns = new Map<string, SimWorker>();
  /** Every worker process that is alive (connected or reconnecting). */
  readonly workers = new Set<SimWorker>();
  readonly clients = new Map<string, SimClient>();
  private seq = 0;
  private clientSeq = 0;
  step = 0;
  readonly history: string[] = [];

  constructor(seed: number) {
    this.r = new Rng(seed);
    this.s = new SchedulerState({
      now: () => this.now,
      validate: true,
      inlineBytes: this.r.pick([0, 40, 1000]),
      allowedFailures: this.r.pick([0, 1, 3]),
      workerSaturation: this.r.pick([1, 1.1, 2, Infinity]),
      workerTtlMs: 1e12,
      logSize: 2_000,
    });
  }

  private stim(p: string): string {
    return `${p}-${++this.seq}`;
  }

  private note(line: string): void {
    this.history.push(`#${this.step} ${line}`);
    if (this.history.length > 20_000) this.history.splice(0, 10_000);
  }

  /** Fails with the seed, the last steps, and (for `key`) every step that named it. */
  fail(msg: string, key?: string): never {
    // SKEIN_SIM_TRACE=<regex> lists the steps that match it as well (when debugging a failure).
    const trace = process.env['SKEIN_SIM_TRACE'];
    const pattern = key === undefined ? trace : `\\b${key}\\b${trace ? `|${trace}` : ''}`;
    const named = pattern === undefined ? [] : this.history.filter((l) => new RegExp(pattern).test(l)).slice(-80);
    throw new Violation(
      `${msg}\n(SKEIN_SIM_SEED=${SEED}, step ${this.step})\n` +
        (named.length > 0 ? `steps that named ${key ?? trace}:\n  ${named.join('\n  ')}\n` : '') +
        `last steps:\n  ${this.history.slice(-30).join('\n  ')}`,
    );
  }

  // ---------------------------------------------------------------- scheduler side

  sched(e: SchedulerEvent): void {
    this.note(`scheduler ← ${e.type}${'worker' in e && typeof e.worker === 'string' ? ` ${e.worker}` : ''}${keysOf(e)}`);
    let actions: SchedulerAction[];
    try {
      actions = this.s.handle(e);
    } catch (err) {
      this.fail(`the scheduler state threw on ${e.type}: ${(err as Error).stack ?? err}`);
    }
    for (const a of actions) this.perform(a);
  }

  private toWorker(address: string, c: Command): void {
    const w = this.conns.get(address);
    if (!w || w.closingBySched) {
      this.note(`scheduler drops ${c.t} for ${address}${'keys' in c ? ` [${c.keys.join(' ')}]` : c.t === 'acquire' ? ` [${c.a.whoHas.map((x) => x.key).join(' ')}]` : ''} (no session)`);
      return;
    }
    w.inbox.push(c);
  }

  private perform(a: SchedulerAction): void {
    switch (a.type) {
      case 'Compute':
        return this.toWorker(a.worker, { t: 'compute', a });
      case 'FreeKeys':
        return this.toWorker(a.worker, { t: 'free', keys: a.keys, stimulusId: a.stimulusId });
      case 'AcquireReplicas':
        return this.toWorker(a.worker, { t: 'acquire', a });
      case 'StealRequest':
        return this.toWorker(a.worker, { t: 'steal', key: a.key, stimulusId: a.stimulusId });
      case 'CloseWorker': {
        const w = this.conns.get(a.worker);
        if (!w) return;
        if (!this.s.workers.has(a.worker)) {
          // Removed by the state already: the shell drops the session and the worker closes.
          this.conns.delete(a.worker);
          this.kill(w);
          return;
        }
        this.toWorker(a.worker, { t: 'close' });
        w.closingBySched = true;
        return;
      }
      case 'ReportToClient':
        this.clients.get(a.client)?.inbox.push(a.report);
        return;
      case 'StateError':
        return this.fail(`the scheduler state hit an internal error on ${a.event}: ${a.stack || a.message}`);
      case 'WorkerRetired':
        return;
      case 'ReportRefused':
        // A report the scheduler does not take (a worker behind after reconnecting); the worker
        // was told to free the key.
        return this.note(`scheduler refuses ${a.report} of ${a.key} from ${a.worker}: ${a.reason}`);
      default: {
        const never: never = a;
        throw new Error(`unknown action ${JSON.stringify(never)}`);
      }
    }
  }

  // ---------------------------------------------------------------- worker side

  private workerHandle(w: SimWorker, events: WorkerEvent[]): void {
    if (events.length === 0 || !w.alive) return;
    this.note(`worker ${w.address} ← ${events.map((e) => `${e.type}${keysOf(e)}`).join(', ')}`);
    let actions: WorkerAction[];
    try {
      actions = w.state.handle(...events);
    } catch (err) {
      this.fail(`worker ${w.address} state threw: ${(err as Error).stack ?? err}`);
    }
    for (const a of actions) {
      switch (a.type) {
        case 'Execute': {
          const d = this.reg.defs.get(a.key);
          if (!d) this.fail(`worker ${w.address} was told to execute ${a.key}, which no client defined`);
          const have = new Set(a.inputs.map(([k]) => k));
          const lacking = d.deps.filter((k) => !have.has(k));
          if (lacking.length > 0) this.fail(`worker ${w.address} executes ${a.key} without its inputs ${lacking.join(', ')}: ${this.describe(a.key)}`, lacking[0]);
          for (const [k, v] of a.inputs) this.checkValue(k, v as Encoded, `input of ${a.key} on ${w.address}`);
          w.pool.push({ key: a.key, started: false, a });
          break;
        }
        case 'GatherDep':
          w.gathers.push(a);
          break;
        case 'SendToScheduler':
          if (w.connected) w.outbox.push({ t: 'event', e: this.upstream(w.address, a.message) });
          else this.note(`worker ${w.address} drops ${a.message.type}${keysOf(a.message)} (no session)`);
          break;
        case 'ReleaseData':
        case 'RemoveSpilled':
          break;
        default: {
          const never: never = a;
          throw new Error(`unknown worker action ${JSON.stringify(never)}`);
        }
      }
    }
  }

  /** A worker's message as the scheduler shell turns it into an event. */
  private upstream(worker: string, m: SchedulerMessage): SchedulerEvent {
    switch (m.type) {
      case 'TaskFinished':
        if (m.value) this.checkValue(m.key, m.value, `TaskFinished from ${worker}`);
        return { type: 'TaskFinished', worker, key: m.key, value: m.value ?? null, nbytes: m.nbytes, typeName: m.typeName, startMs: m.startMs, stopMs: m.stopMs, stimulusId: m.stimulusId };
      case 'TaskErred':
        return { type: 'TaskErred', worker, key: m.key, error: m.error, startMs: m.startMs, stopMs: m.stopMs, stimulusId: m.stimulusId };
      case 'AddKeys':
        return { type: 'ReplicasAdded', worker, keys: m.keys, stimulusId: m.stimulusId };
      case 'KeysReleased':
        return { type: 'WorkerReleasedKeys', worker, keys: m.keys, stimulusId: m.stimulusId };
      case 'MissingData':
        return { type: 'MissingData', worker, key: m.key, errant: m.worker, stimulusId: m.stimulusId };
      case 'StealResponse':
        return { type: 'StealResponse', worker, key: m.key, state: m.state, stimulusId: m.stimulusId };
      case 'Reschedule':
        return { type: 'RescheduleRequested', worker, key: m.key, stimulusId: m.stimulusId };
    }
  }

  /** The worker shell's onCommands: the first `n` commands of the worker's stream. */
  private deliverToWorker(w: SimWorker, n: number): void {
    const cmds = w.inbox.splice(0, n);
    const events: WorkerEvent[] = [];
    let close = false;
    for (const c of cmds) {
      switch (c.t) {
        case 'compute': {
          const a = c.a;
          events.push({
            type: 'ComputeTask',
            key: a.key,
            call: { fn: { kind: 'inline', hash: a.def.fn.inlineHash, name: 'sim' }, args: Buffer.isBuffer(a.def.args.data) ? (a.def.args as Encoded) : { encoding: a.def.args.encoding, data: Buffer.from(a.def.args.data) }, resultEncoding: a.def.resultEncoding },
            dependencies: a.def.dependencies,
            priority: a.def.priority,
            sequence: a.sequence,
            resources: a.def.resources,
            whoHas: new Map(a.whoHas.map((x) => [x.key, x.workers])),
            nbytes: new Map(a.whoHas.filter((x) => x.nbytes).map((x) => [x.key, x.nbytes])),
            inlineInputs: new Map(a.inlineInputs.map(([k, v]) => [k, { encoding: v.encoding, data: Buffer.from(v.data) }])),
            stimulusId: a.stimulusId,
          });
          break;
        }
        case 'free':
          this.revokeUnstarted(w, c.keys, true, c.stimulusId, events);
          events.push({ type: 'FreeKeys', keys: c.keys, stimulusId: c.stimulusId });
          break;
        case 'acquire':
          events.push({
            type: 'AcquireReplicas',
            whoHas: new Map(c.a.whoHas.map((x) => [x.key, x.workers])),
            nbytes: new Map(c.a.whoHas.filter((x) => x.nbytes).map((x) => [x.key, x.nbytes])),
            stimulusId: c.a.stimulusId,
          });
          break;
        case 'steal':
          this.revokeUnstarted(w, [c.key], false, c.stimulusId, events);
          events.push({ type: 'StealRequest', key: c.key, stimulusId: c.stimulusId });
          break;
        case 'close':
          close = true;
          break;
      }
    }
    this.workerHandle(w, events);
    if (close) {
      // The worker closes; its session ends after what it sent before.
      this.note(`worker ${w.address} closes (asked by the scheduler)`);
      w.outbox.push({ t: 'end' });
      w.alive = false;
      w.connected = false;
      w.pool = [];
      w.gathers = [];
      this.workers.delete(w);
    }
  }

  /** The thread pool gives back tasks it has not started (worker.ts revokeUnstarted). */
  private revokeUnstarted(w: SimWorker, keys: readonly string[], freeing: boolean, stimulusId: string, events: WorkerEvent[]): void {
    for (const key of keys) {
      const ts = w.state.tasks.get(key);
      if (ts?.state !== 'executing' || (freeing && ts.dependents.size > 0)) continue;
      const i = w.pool.findIndex((p) => p.key === key && !p.started);
      if (i < 0) continue;
      w.pool.splice(i, 1);
      events.push({ type: 'ExecutionRevoked', key, stimulusId });
    }
  }

  /** The scheduler shell reads the first `n` messages of a worker's session. */
  private deliverToScheduler(w: SimWorker, n: number): void {
    for (const u of w.outbox.splice(0, n)) {
      if (this.conns.get(w.address) !== w) return; // a dropped session: nothing more is read
      if (u.t === 'end') {
        this.conns.delete(w.address);
        if (this.s.workers.has(w.address)) this.sched({ type: 'WorkerRemoved', worker: w.address, expected: w.closingBySched, reason: 'connection closed', stimulusId: this.stim('removed') });
        return;
      }
      this.sched(u.e);
    }
  }

  private finishExecution(w: SimWorker, i: number): void {
    const [p] = w.pool.splice(i, 1);
    const d = this.reg.defs.get(p!.key)!;
    const fails = d.kind === 'err' || (d.kind === 'flaky' && this.r.chance(0.5));
    const t = this.now;
    if (fails) {
      const error: ErrorInfo = { type: 'Error', message: `boom in ${d.key}`, stack: 'Error: boom', code: '', key: d.key, detailsJson: '' };
      this.workerHandle(w, [{ type: 'ExecuteFailure', key: d.key, error, startMs: t - 5, stopMs: t, stimulusId: this.stim('task-erred') }]);
    } else {
      // The function sees the inputs the worker handed over (checked at Execute).
      const inputs = new Map(p!.a.inputs.map(([k, v]) => [k, JSON.parse((v as Encoded).data.toString()) as string]));
      const v = `${d.key}:${hash([d.key, ...d.deps.map((k) => inputs.get(k)!)].join('|'))}`;
      this.workerHandle(w, [{ type: 'ExecuteSuccess', key: d.key, value: json(v), typeName: 'string', startMs: t - 5, stopMs: t, stimulusId: this.stim('task-finished') }]);
    }
  }

  private finishGather(w: SimWorker, i: number): void {
    const [g] = w.gathers.splice(i, 1);
    const peer = [...this.workers].find((x) => x.address === g!.worker && x.alive);
    if (!peer || this.r.chance(0.05)) {
      this.workerHandle(w, [{ type: 'GatherDepFailure', worker: g!.worker, reason: peer ? 'connection reset (simulated)' : 'connection refused', stimulusId: this.stim('gather-fail') }]);
      return;
    }
    const data = new Map<string, Encoded>();
    const missing: string[] = [];
    for (const k of g!.keys) {
      const v = peer.state.data.get(k);
      if (v && !('spilled' in v)) data.set(k, v);
      else missing.push(k);
    }
    this.workerHandle(w, [{ type: 'GatherDepSuccess', worker: g!.worker, data, missing, stimulusId: this.stim('gather-ok') }]);
  }

  checkValue(key: string, v: Encoded, where: string): void {
    const d = this.reg.defs.get(key);
    if (!d) this.fail(`${where}: a value for ${key}, which no client defined`);
    const got = JSON.parse(v.data.toString()) as string;
    const want = this.reg.value(key);
    if (got !== want) this.fail(`${where}: ${key} = ${got}, but its definition gives ${want} (a forged or stale value)`);
  }

  // ---------------------------------------------------------------- lifecycle of workers and clients

  addWorker(address: string, gpu = this.r.pick([0, 0, 1, MAX_GPU])): SimWorker {
    const w = new SimWorker(address, 1 + this.r.int(2), gpu, () => this.now, this.r.pick([0, 40, 1000]));
    this.workers.add(w);
    this.conns.set(address, w);
    this.sched({
      type: 'WorkerAdded',
      worker: { address, name: address, nthreads: w.nthreads, memoryLimit: 0, resources: w.gpu > 0 ? new Map([['GPU', w.gpu]]) : new Map(), registeredFunctions: [], held: [], pid: 1, nannyAddress: '' },
      stimulusId: this.stim('worker-added'),
    });
    return w;
  }

  kill(w: SimWorker): void {
    this.note(`worker ${w.address} dies`);
    w.alive = false;
    w.connected = false;
    w.inbox = [];
    w.outbox = [];
    w.pool = [];
    w.gathers = [];
    this.workers.delete(w);
    if (this.conns.get(w.address) === w) {
      this.conns.delete(w.address);
      if (this.s.workers.has(w.address)) this.sched({ type: 'WorkerRemoved', worker: w.address, expected: false, reason: 'connection lost', stimulusId: this.stim('died') });
    }
  }

  /** The session breaks: both sides lose what was in flight; the worker reconnects later. */
  disconnect(w: SimWorker): void {
    this.note(`worker ${w.address} loses the scheduler`);
    w.connected = false;
    w.inbox = [];
    w.outbox = [];
    w.closingBySched = false;
    if (this.conns.get(w.address) === w) {
      this.conns.delete(w.address);
      if (this.s.workers.has(w.address)) this.sched({ type: 'WorkerRemoved', worker: w.address, expected: false, reason: 'connection lost', stimulusId: this.stim('lost') });
    }
    this.workerHandle(w, [{ type: 'SchedulerLost', stimulusId: this.stim('scheduler-lost') }]);
  }

  reconnect(w: SimWorker): void {
    if (this.conns.has(w.address)) return; // its address was taken meanwhile: it stays away
    this.note(`worker ${w.address} reconnects`);
    w.connected = true;
    this.conns.set(w.address, w);
    this.sched({
      type: 'WorkerAdded',
      worker: { address: w.address, name: w.address, nthreads: w.nthreads, memoryLimit: 0, resources: w.gpu > 0 ? new Map([['GPU', w.gpu]]) : new Map(), registeredFunctions: [], held: w.state.held(), pid: 1, nannyAddress: '' },
      stimulusId: this.stim('worker-reconnected'),
    });
    if (w.paused) w.outbox.push({ t: 'event', e: this.heartbeat(w) });
  }

  private heartbeat(w: SimWorker): SchedulerEvent {
    const st = w.state;
    return {
      type: 'Heartbeat',
      worker: w.address,
      metrics: { executing: st.executing.size, ready: st.readyLength, memoryRss: 1e8, managedBytes: st.managedBytes, spilledBytes: 0, cpuPercent: 10, paused: w.paused },
      stimulusId: this.stim('heartbeat'),
    };
  }

  setPaused(w: SimWorker, paused: boolean): void {
    if (w.paused === paused) return;
    w.paused = paused;
    this.workerHandle(w, [{ type: 'PauseChanged', paused, stimulusId: this.stim('pause') }]);
    if (w.connected) w.outbox.push({ t: 'event', e: this.heartbeat(w) });
  }

  connectClient(): SimClient {
    const c: SimClient = { id: `client-${++this.clientSeq}`, wants: new Set(), inbox: [], last: new Map() };
    this.clients.set(c.id, c);
    this.sched({ type: 'ClientConnected', client: c.id, stimulusId: this.stim('client') });
    return c;
  }

  submit(c: SimClient): void {
    const r = this.r;
    // Sometimes a key defined before (by any client) again, with the same definition: the task is
    // shared. Picked before this update's own keys exist: one update defines each key once (the
    // scheduler refuses an update that lists a key twice).
    const known = this.reg.defs.size;
    const shared = r.chance(0.3) && known > 0 ? [`t${1 + r.int(known)}`] : [];
    const fresh: Def[] = [];
    const usable = [...c.wants];
    for (let i = 1 + r.int(6); i > 0; i--) {
      const pool = [...usable, ...fresh.map((d) => d.key)];
      const deps = pool.length === 0 || r.chance(0.3) ? [] : [...new Set(r.some(pool, 3))];
      const restricted = r.chance(0.15);
      const d: Def = {
        key: this.reg.newKey(),
        deps,
        kind: r.chance(0.08) ? 'err' : r.chance(0.12) ? 'flaky' : 'ok',
        priority: r.chance(0.7) ? 0 : r.int(5) - 2,
        retries: r.chance(0.6) ? 0 : r.int(4),
        workers: restricted ? [r.pick(ADDRESSES)] : [],
        allowOtherWorkers: restricted && r.chance(0.3),
        // (Not both: a worker named in a restriction may offer fewer GPUs, and such a task waits
        // for a worker that will never come, as in Dask.)
        gpu: !restricted && r.chance(0.1) ? 1 + r.int(MAX_GPU) : 0,
      };
      this.reg.defs.set(d.key, d);
      fresh.push(d);
    }
    const defs = [...this.reg.closure(shared), ...fresh];
    const wanted = [...shared, ...fresh.filter(() => r.chance(0.8)).map((d) => d.key)];
    if (wanted.length === 0) wanted.push(fresh[fresh.length - 1]!.key);
    for (const k of wanted) c.wants.add(k);
    this.sched({ type: 'GraphUpdated', client: c.id, tasks: defs.map((d) => this.reg.taskDef(d)), wanted, broadcast: r.chance(0.05) ? [wanted[0]!] : [], stimulusId: this.stim('update-graph') });
  }

  deliverToClient(c: SimClient, n: number): void {
    for (const rep of c.inbox.splice(0, n)) {
      c.last.set(rep.key, rep);
      if (rep.type === 'in-memory') {
        if (rep.value) this.checkValue(rep.key, rep.value as Encoded, `the in-memory report to ${c.id}`);
        // The client fetches it from a holder: whatever a listed holder has must be right.
        for (const a of rep.workers) {
          const v = [...this.workers].find((w) => w.address === a)?.state.data.get(rep.key);
          if (v && !('spilled' in v)) this.checkValue(rep.key, v, `${rep.key} fetched from ${a} by ${c.id}`);
        }
      } else if (rep.type === 'erred') {
        if (!rep.error.message) this.fail(`${c.id} was told ${rep.key} erred without a reason`);
      } else if (rep.type === 'cancelled') {
        c.wants.delete(rep.key);
      }
    }
  }

  // ---------------------------------------------------------------- one random step

  randomStep(): void {
    const r = this.r;
    this.step++;
    this.now += 1 + r.int(20);
    const workers = [...this.workers];
    const clients = [...this.clients.values()];
    const x = r.int(100);
    if (x < 30) {
      // Messages arrive.
      const withMail = [
        ...workers.filter((w) => w.inbox.length > 0).map((w) => () => this.deliverToWorker(w, 1 + r.int(4))),
        ...[...this.conns.values()].filter((w) => w.outbox.length > 0).map((w) => () => this.deliverToScheduler(w, 1 + r.int(4))),
        ...clients.filter((c) => c.inbox.length > 0).map((c) => () => this.deliverToClient(c, 1 + r.int(8))),
      ];
      if (withMail.length > 0) r.pick(withMail)();
    } else if (x < 48) {
      // An execution starts or finishes, or a transfer completes.
      const busy = workers.filter((w) => w.pool.length > 0 || w.gathers.length > 0);
      if (busy.length === 0) return;
      const w = r.pick(busy);
      if (w.gathers.length > 0 && (w.pool.length === 0 || r.chance(0.4))) this.finishGather(w, r.int(w.gathers.length));
      else if (r.chance(0.3)) w.pool[r.int(w.pool.length)]!.started = true;
      else this.finishExecution(w, r.int(w.pool.length));
    } else if (x < 60) {
      const c = clients.length > 0 && r.chance(0.85) ? r.pick(clients) : this.connectClient();
      this.submit(c);
    } else if (x < 66) {
      if (clients.length === 0) return;
      const c = r.pick(clients);
      const keys = r.some([...c.wants], 3);
      if (keys.length === 0) return;
      const what = r.int(3);
      if (what === 0) {
        for (const k of keys) c.wants.delete(k);
        this.sched({ type: 'ClientReleasedKeys', client: c.id, keys, stimulusId: this.stim('release') });
      } else if (what === 1) {
        for (const k of keys) c.wants.delete(k);
        this.sched({ type: 'ClientCancelledKeys', client: c.id, keys, stimulusId: this.stim('cancel') });
      } else {
        this.sched({ type: 'ClientWantsKeys', client: c.id, keys, stimulusId: this.stim('want') });
      }
    } else if (x < 68) {
      if (clients.length === 0) return;
      const c = r.pick(clients);
      this.clients.delete(c.id);
      this.sched({ type: 'ClientDisconnected', client: c.id, stimulusId: this.stim('client-gone') });
    } else if (x < 73) {
      const free = ADDRESSES.filter((a) => !this.conns.has(a) && !workers.some((w) => w.address === a));
      if (free.length > 0 && workers.length < ADDRESSES.length) this.addWorker(r.pick(free));
    } else if (x < 76) {
      if (workers.length > 0) this.kill(r.pick(workers));
    } else if (x < 78) {
      const live = [...this.conns.keys()];
      if (live.length > 0) this.sched({ type: 'RetireWorkers', workers: r.chance(0.8) ? [r.pick(live)] : [], n: r.chance(0.8) ? 0 : 1, stimulusId: this.stim('retire') });
    } else if (x < 81) {
      const w = workers.length > 0 ? r.pick(workers) : undefined;
      if (!w) return;
      if (w.connected) this.disconnect(w);
      else this.reconnect(w);
    } else if (x < 84) {
      const w = workers.length > 0 ? r.pick(workers) : undefined;
      if (w) this.setPaused(w, !w.paused);
    } else if (x < 90) {
      this.sched({ type: 'Tick', stimulusId: this.stim('tick') });
    } else {
      const w = workers.length > 0 ? r.pick(workers) : undefined;
      if (w?.connected) w.outbox.push({ t: 'event', e: this.heartbeat(w) });
    }
  }

  // ---------------------------------------------------------------- quiescence and its checks

  /** Stops the disruption, lets everything in flight run to its end, and checks the outcome. */
  quiesce(): void {
    this.note('--- quiesce ---');
    for (const w of [...this.workers]) {
      if (!w.connected) this.reconnect(w);
      if (!w.connected) this.kill(w); // its address is someone else's now
    }
    for (const w of [...this.workers]) this.setPaused(w, false);
    // Every restriction satisfiable: a running worker at every address, one with the most GPUs;
    // again after each calm, as a retirement that was under way may have ended meanwhile.
    this.ensureWorkers();
    for (let round = 0; ; round++) {
      this.settle();
      if (!this.ensureWorkers()) break;
      if (round > 20) this.fail('workers keep leaving while the system comes to rest');
    }
    this.checkAtRest();
  }

  /** Adds workers until every restriction can be met; whether it added any. */
  private ensureWorkers(): boolean {
    let added = false;
    for (const a of ADDRESSES) {
      const ws = this.s.workers.get(a);
      if (ws && ws.status === 'running') continue;
      if (this.conns.has(a)) continue; // retiring: settle lets it leave first
      this.addWorker(a);
      added = true;
    }
    if (![...this.workers].some((w) => w.gpu >= MAX_GPU && w.connected)) {
      const w = this.conns.get(ADDRESSES[0]!);
      if (w) this.kill(w);
      this.addWorker(ADDRESSES[0]!, MAX_GPU);
      added = true;
    }
    return added;
  }

  /** Delivers and completes everything in flight, until nothing moves for a few ticks. */
  private settle(): void {
    let idle = 0;
    for (let i = 0; idle < 3; i++) {
      if (i > 200_000) this.fail('the system does not come to rest (a livelock?)');
      this.now += 5;
      let moved = false;
      for (const w of [...this.workers]) {
        if (w.inbox.length > 0) {
          this.deliverToWorker(w, w.inbox.length);
          moved = true;
        }
      }
      for (const w of [...this.conns.values()]) {
        if (w.outbox.length > 0) {
          this.deliverToScheduler(w, w.outbox.length);
          moved = true;
        }
      }
      for (const c of this.clients.values()) {
        if (c.inbox.length > 0) {
          this.deliverToClient(c, c.inbox.length);
          moved = true;
        }
      }
      for (const w of [...this.workers]) {
        if (w.gathers.length > 0) {
          this.finishGather(w, 0);
          moved = true;
        } else if (w.pool.length > 0) {
          this.finishExecution(w, 0);
          moved = true;
        }
      }
      if (!moved) {
        idle++;
        this.sched({ type: 'Tick', stimulusId: this.stim('tick') });
      } else idle = 0;
    }
  }

  private checkAtRest(): void {
    const s = this.s;
    for (const ws of s.workers.values()) {
      if (ws.status !== 'running') {
        const pending = [...(ws.pendingReplicas ?? [])].map((t) => t.key);
        this.fail(`at rest, worker ${ws.address} is still ${ws.status} (its retirement waits for copies of ${pending.join(', ') || 'nothing'})${pending[0] ? `: ${this.describe(pending[0])}` : ''}`, pending[0]);
      }
    }
    for (const [key, ts] of s.tasks) {
      if (ts.state !== 'memory' && ts.state !== 'erred' && ts.state !== 'released') this.fail(`at rest, ${key} is still ${ts.state} on the scheduler: ${this.describe(key)}`, key);
    }
    for (const c of this.clients.values()) {
      for (const key of c.wants) {
        const ts = s.tasks.get(key);
        if (!ts) this.fail(`${c.id} wants ${key}, which the scheduler forgot (lost); the last report it had of it: ${JSON.stringify(c.last.get(key)) ?? 'none'}`, key);
        if (ts.state !== 'memory' && ts.state !== 'erred') this.fail(`${c.id} wants ${key}, which is ${ts.state} at rest (stuck)`);
        if (!s.clients.get(c.id)?.has(ts)) this.fail(`${c.id} wants ${key} but the scheduler does not know`);
        const last = c.last.get(key);
        if (ts.state === 'memory') {
          if (last?.type !== 'in-memory') this.fail(`${key} is in memory but ${c.id} was last told ${last?.type ?? 'nothing'}`);
          // As the client fetches: the value inline, else from a holder it was told of, else from
          // one the scheduler names now (GetWhoHas).
          const reachable = ts.inline !== null || last.value !== null || last.workers.some((a) => this.holds(a, key)) || ts.whoHas.some((ws) => this.holds(ws.address, key));
          if (!reachable) this.fail(`${c.id} cannot get ${key}: no value inline, and neither ${last.workers.join(', ')} nor the scheduler's holders have it: ${this.describe(key)}`, key);
        } else if (last?.type !== 'erred') {
          this.fail(`${key} erred but ${c.id} was last told ${last?.type ?? 'nothing'}`);
        }
      }
    }
    for (const [key, ts] of s.tasks) {
      if (ts.state === 'memory') {
        if (ts.whoHas.length === 0 && ts.inline === null) this.fail(`${key} is in memory with no holder and no value inline: ${this.describe(key)}`);
        if (ts.inline !== null) this.checkValue(key, ts.inline as Encoded, `the scheduler's inline value`);
        for (const ws of ts.whoHas) if (!this.holds(ws.address, key)) this.fail(`the scheduler thinks ${ws.address} holds ${key}, which it does not`);
      }
      if (ts.wanters().length === 0 && !this.neededByWanted(key)) this.fail(`at rest, the scheduler still keeps ${key} (${ts.state}), which nobody needs`);
    }
    for (const w of this.workers) {
      const st = w.state;
      if (st.executing.size > 0 || st.readyLength > 0 || st.inFlight.size > 0 || st.dataNeeded.size > 0) {
        this.fail(`at rest, worker ${w.address} still has ${st.executing.size} executing, ${st.readyLength} ready, ${st.inFlight.size} transfers, ${st.dataNeeded.size} to fetch`);
      }
      for (const [key, v] of st.data) {
        if (!('spilled' in v)) this.checkValue(key, v, `worker ${w.address} holds`);
        const ts = s.tasks.get(key);
        if (!ts || !ts.whoHas.some((x) => x.address === w.address)) {
          const story = w.state.story(key).slice(-10).map((t) => `${t.start}->${t.finish} (${t.stimulusId})`).join(', ');
          this.fail(`at rest, worker ${w.address} holds ${key}, which the scheduler does not know it holds (a leak): ${this.describe(key)}; worker story: ${story}`, key);
        }
      }
    }
  }

  /** A task's definition and where things stand, for a failure message. */
  describe(key: string): string {
    const d = this.reg.defs.get(key);
    const ts = this.s.tasks.get(key);
    const workers = [...this.s.workers.values()].map((w) => `${w.address} ${w.status} GPU=${w.resources.get('GPU') ?? 0} holds ${[...w.hasWhat].map((t) => t.key).join(' ')} pendingReplicas=${JSON.stringify(w.pendingReplicas === null ? null : [...(w.pendingReplicas as Iterable<unknown>)].length)}`);
    return `${JSON.stringify(d)}; scheduler: ${ts?.state ?? 'unknown'}; workers: ${workers.join(', ')}; story: ${this.s
      .story([key])
      .slice(-8)
      .map((t) => `${t.start}->${t.finish} (${t.stimulusId})`)
      .join(', ')}`;
  }

  private holds(address: string, key: string): boolean {
    const w = [...this.workers].find((x) => x.address === address && x.alive);
    const v = w?.state.data.get(key);
    return v !== undefined;
  }

  private neededByWanted(key: string): boolean {
    const ts = this.s.tasks.get(key);
    if (!ts) return false;
    const seen = new Set<string>();
    const stack = [...ts.dependents];
    while (stack.length > 0) {
      const d = stack.pop()!;
      if (seen.has(d.key)) continue;
      seen.add(d.key);
      if (d.wanters().length > 0) return true;
      stack.push(...d.dependents);
    }
    return false;
  }
}

describe(`simulation of the scheduler and worker state machines (SKEIN_SIM_SEED=${SEED} SKEIN_SIM_STEPS=${STEPS})`, () => {
  it('keeps every invariant through random event sequences, and at rest every wanted key is computed or erred with a reason', () => {
    console.log(`simulation: SKEIN_SIM_SEED=${SEED} SKEIN_SIM_STEPS=${STEPS}`);
    const sim = new Simulation(SEED);
    for (const a of ADDRESSES.slice(0, 2)) sim.addWorker(a);
    const stats = { episodes: 0, keys: 0 };
    while (sim.step < STEPS) {
      for (let i = 0; i < EPISODE && sim.step < STEPS; i++) sim.randomStep();
      sim.quiesce();
      stats.episodes++;
    }
    stats.keys = sim.reg.defs.size;
    console.log(`simulation: ${sim.step} steps, ${stats.episodes} episodes, ${stats.keys} task definitions (SKEIN_SIM_SEED=${SEED})`);
    expect(stats.keys).toBeGreaterThan(0);
  });
});

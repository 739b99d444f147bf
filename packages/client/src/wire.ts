/**
 * The one place where protobuf messages of skein.v1 meet the client's domain types.
 * Everything else in the package works on the plain types of ./types.ts.
 */
import type {
  ClientMessage,
  ClientSessionRequest,
  ClientUpdate,
  FunctionRef,
  GetInfoResponse,
  GetStoryResponse,
  RunRequest,
  RunResponse,
  TaskBatch,
  TaskSpec,
  WorkerInfo as WireWorkerInfo,
  WorkerServiceGetStoryResponse,
} from '@skein/protocol';
import type {
  FunctionSource,
  Incoming,
  Outgoing,
  SchedulerInfo,
  TaskDef,
  Transition,
  WorkerInfo,
  EncodedValue,
} from './types.js';
import type { ErrorInfo } from '@skein/common';
import { InvalidArgumentError, buildValueColumn, fromVersionsMessage, errorInfoFromWire, forEachRun, hasKeys, readStringTable, readValueColumn, splitByCounts } from '@skein/common';

/** The first message of a session; `batches`: this client reads KeysInMemory. */
export function helloRequest(protocolVersion: string, clientId: string): ClientSessionRequest {
  return { messages: [{ kind: { $case: 'hello', value: { protocolVersion, clientId, batches: true } } }] };
}

function toFunctionRef(fn: TaskDef['fn']): FunctionRef {
  return fn.kind === 'inline'
    ? { kind: { $case: 'inlineHash', value: fn.hash } }
    : { kind: { $case: 'registered', value: fn.name } };
}

export function toTaskSpec(t: TaskDef): TaskSpec {
  return {
    key: t.key,
    function: toFunctionRef(t.fn),
    args: t.args,
    dependencies: t.dependencies,
    priority: t.priority,
    retries: t.retries,
    resources: resourceMap(t.resources),
    workers: t.workers,
    allowOtherWorkers: t.allowOtherWorkers,
    resultEncoding: t.resultEncoding,
    pure: t.pure,
  };
}

/** Whether two tasks share everything a TaskBatch shares (function and options). */
function sameBatch(a: TaskDef, b: TaskDef): boolean {
  return (
    a.fn.kind === b.fn.kind &&
    (a.fn.kind === 'inline' ? a.fn.hash === (b.fn as typeof a.fn).hash : a.fn.name === (b.fn as typeof a.fn).name) &&
    a.priority === b.priority &&
    a.retries === b.retries &&
    a.resultEncoding === b.resultEncoding &&
    a.pure === b.pure &&
    a.allowOtherWorkers === b.allowOtherWorkers &&
    (a.resources === b.resources || sameRecord(a.resources, b.resources)) &&
    (a.workers === b.workers || (a.workers.length === b.workers.length && a.workers.every((w, i) => w === b.workers[i])))
  );
}

function sameRecord(a: Record<string, number>, b: Record<string, number>): boolean {
  const ka = Object.keys(a);
  // Resource names are user data: only own entries count (`constructor` is not inherited here).
  return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

const NO_RESOURCES = new Map<string, number>();

/**
 * A task's resources as the protobuf map (a Map: the names are user data, so `__proto__` or
 * `constructor` is an entry like any other). Tasks without resources share one empty Map.
 */
function resourceMap(r: Readonly<Record<string, number>>): Map<string, number> {
  return hasKeys(r) ? new Map(Object.entries(r)) : NO_RESOURCES;
}

/** Tasks that share function and options (see sameBatch), column by column. */
function toTaskBatch(tasks: readonly TaskDef[]): TaskBatch {
  const first = tasks[0]!;
  const n = tasks.length;
  const keys = new Array<string>(n);
  const args = new Array<EncodedValue>(n);
  const dependencyCounts = new Array<number>(n);
  const dependencies: string[] = [];
  let anyDeps = false;
  for (let i = 0; i < n; i++) {
    const t = tasks[i]!;
    keys[i] = t.key;
    args[i] = t.args;
    dependencyCounts[i] = t.dependencies.length;
    if (t.dependencies.length) {
      anyDeps = true;
      for (const d of t.dependencies) dependencies.push(d);
    }
  }
  return {
    function: toFunctionRef(first.fn),
    keys,
    args: buildValueColumn(args),
    dependencyCounts: anyDeps ? dependencyCounts : [],
    dependencies,
    priority: first.priority,
    retries: first.retries,
    resources: resourceMap(first.resources),
    workers: first.workers,
    allowOtherWorkers: first.allowOtherWorkers,
    resultEncoding: first.resultEncoding,
    pure: first.pure,
  };
}

/**
 * A graph's tasks as the wire carries them: for a scheduler that reads column batches, each run
 * of at least MIN_BATCH consecutive tasks sharing function and options becomes one TaskBatch
 * (client.map's tasks, most of a tree's); the rest stay TaskSpecs.
 */
function splitTasks(tasks: readonly TaskDef[], batches: boolean): { specs: TaskSpec[]; batches: TaskBatch[] } {
  if (!batches) return { specs: tasks.map(toTaskSpec), batches: [] };
  const specs: TaskSpec[] = [];
  const out: TaskBatch[] = [];
  forEachRun(tasks, sameBatch, (from, to) => {
    if (to - from >= MIN_BATCH) out.push(toTaskBatch(tasks.slice(from, to)));
    else for (let k = from; k < to; k++) specs.push(toTaskSpec(tasks[k]!));
  });
  return { specs, batches: out };
}

/** Shorter runs than this go as TaskSpecs (a batch's shared fields cost more than they save). */
const MIN_BATCH = 4;

function toClientMessage(m: Outgoing, batches: boolean): ClientMessage {
  switch (m.type) {
    case 'UpdateGraph': {
      const split = splitTasks(m.tasks, batches);
      return {
        kind: {
          $case: 'updateGraph',
          value: {
            tasks: split.specs,
            batches: split.batches,
            wantedKeys: m.wantedKeys,
            functions: m.functions.map((f) => ({ hash: f.hash, source: f.source, name: f.name })),
            broadcastKeys: m.broadcastKeys,
            stimulusId: m.stimulusId,
          },
        },
      };
    }
    case 'ReleaseKeys':
      return { kind: { $case: 'releaseKeys', value: { keys: m.keys, stimulusId: m.stimulusId } } };
    case 'CancelKeys':
      return { kind: { $case: 'cancelKeys', value: { keys: m.keys, stimulusId: m.stimulusId } } };
    case 'WantKeys':
      return { kind: { $case: 'wantKeys', value: { keys: m.keys, stimulusId: m.stimulusId } } };
    default: {
      const never: never = m;
      throw new Error(`unknown outgoing message ${JSON.stringify(never)}`);
    }
  }
}

/** `batches`: the scheduler's Welcome said it reads TaskBatch. */
export function toSessionRequest(batch: readonly Outgoing[], batches: boolean): ClientSessionRequest {
  return { messages: batch.map((m) => toClientMessage(m, batches)) };
}


/**
 * A scheduler update in domain form, given to `emit` (a KeysInMemory gives one KeyInMemory per
 * key; an empty oneof gives nothing).
 */
export function fromClientUpdate(u: ClientUpdate, emit: (ev: Incoming) => void): void {
  const k = u.kind;
  if (!k) return;
  if (k.$case === 'keysInMemory') {
    const m = k.value;
    const n = m.keys.length;
    const where = `KeysInMemory of ${n} keys from the scheduler`;
    const values = readValueColumn(m.values, n, `${where}, values`);
    const typeNames = readStringTable(m.typeNames, m.typeNameIndex, n, `${where}, type_name_index`);
    const holders = splitByCounts(m.workerCounts, m.workerIndex, n, `${where}, worker_counts`);
    // Most keys have one holder: one shared list per worker (the client never changes a key's list).
    const single = new Array<string[] | undefined>(m.workers.length);
    const address = (id: number): string => {
      const a = m.workers[id];
      if (a === undefined) throw new InvalidArgumentError(`${where}: worker index ${id} is past the ${m.workers.length} workers listed.`);
      return a;
    };
    for (let i = 0; i < n; i++) {
      const ids = holders[i]!;
      const workers = ids.length === 1 ? (single[ids[0]!] ??= [address(ids[0]!)]) : ids.map(address);
      emit({ type: 'KeyInMemory', key: m.keys[i]!, value: values[i] ?? undefined, workers, nbytes: m.nbytes[i] ?? -1, typeName: typeNames[i]! });
    }
    return;
  }
  const ev = fromSingleUpdate(k);
  if (ev) emit(ev);
}

function fromSingleUpdate(k: Exclude<NonNullable<ClientUpdate['kind']>, { $case: 'keysInMemory' }>): Incoming | undefined {
  switch (k.$case) {
    case 'welcome':
      return {
        type: 'Welcome',
        protocolVersion: k.value.protocolVersion,
        schedulerId: k.value.schedulerId,
        schedulerAddress: k.value.schedulerAddress,
        batches: k.value.batches,
        maxMessageBytes: k.value.maxMessageBytes,
        maxKeysPerUpdate: k.value.maxKeysPerUpdate,
      };
    case 'inMemory':
      return {
        type: 'KeyInMemory',
        key: k.value.key,
        value: k.value.value as EncodedValue | undefined,
        workers: k.value.workers,
        nbytes: k.value.nbytes,
        typeName: k.value.typeName,
      };
    case 'erred':
      return { type: 'KeyErred', key: k.value.key, error: errorInfoFromWire(k.value.error, k.value.key, `task ${k.value.key} erred, but the scheduler sent no error details`) };
    case 'cancelled':
      return { type: 'KeyCancelled', key: k.value.key, reason: k.value.reason };
    case 'lost':
      return { type: 'KeyLost', key: k.value.key };
    case 'noWorker':
      return { type: 'KeyNoWorker', key: k.value.key, reason: k.value.reason, resolved: k.value.resolved };
    default: {
      const never: never = k;
      throw new Error(`unknown scheduler update ${JSON.stringify(never)}`);
    }
  }
}

function fromWireWorker(w: WireWorkerInfo): WorkerInfo {
  return {
    address: w.address,
    name: w.name,
    nthreads: w.nthreads,
    memoryLimit: w.memoryLimit,
    // Output only, built from own entries: a resource named `__proto__` is an own property.
    resources: Object.fromEntries(w.resources),
    processing: w.processing,
    inMemory: w.inMemory,
    managedBytes: w.managedBytes,
    memoryRss: w.memoryRss,
    lastSeenMs: w.lastSeenMs,
    status: w.status,
    registeredFunctions: [...w.registeredFunctions],
    pid: w.pid,
    nannyAddress: w.nannyAddress,
    versions: w.versions ? fromVersionsMessage(w.versions) : undefined,
  };
}

export function fromGetInfo(r: GetInfoResponse): SchedulerInfo {
  const workers = r.workers.map(fromWireWorker);
  return {
    id: r.schedulerId,
    address: r.address,
    protocolVersion: r.protocolVersion,
    workers,
    tasksByState: Object.fromEntries(r.tasksByState),
    clients: r.clients,
    dashboardAddress: r.dashboardAddress,
    versions: r.versions ? fromVersionsMessage(r.versions) : undefined,
  };
}

export function fromGetStory(r: GetStoryResponse): Transition[] {
  return r.transitions.map((t) => ({
    key: t.key,
    start: t.start,
    finish: t.finish,
    stimulusId: t.stimulusId,
    timeMs: t.timeMs,
    worker: t.worker,
    where: 'scheduler',
  }));
}

/** A worker's GetStory answer; `address` is where the client asked (the worker's own answer may spell it otherwise). */
export function fromWorkerStory(r: WorkerServiceGetStoryResponse, address: string): Transition[] {
  return r.transitions.map((t) => ({
    key: t.key,
    start: t.start,
    finish: t.finish,
    stimulusId: t.stimulusId,
    timeMs: t.timeMs,
    worker: address,
    where: address,
  }));
}

export function toRunRequest(fn: FunctionSource, args: EncodedValue, resultEncoding: number): RunRequest {
  return { function: { hash: fn.hash, source: fn.source, name: fn.name }, args, resultEncoding };
}

export type RunOutcome = { ok: true; value: EncodedValue | undefined } | { ok: false; error: ErrorInfo };

export function fromRunResponse(r: RunResponse): RunOutcome {
  const o = r.outcome;
  if (!o) return { ok: true, value: undefined };
  return o.$case === 'result' ? { ok: true, value: o.value } : { ok: false, error: errorInfoFromWire(o.value, '', 'the function failed, but the worker sent no error details') };
}

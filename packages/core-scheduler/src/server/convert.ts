/** Conversions between protobuf messages and the state machine's domain types. */
import type {
  ClientUpdate,
  ComputeBatch,
  ComputeTask,
  KeysInMemory,
  TaskBatch,
  TasksFinished,
  InlineFunction,
  TaskSpec,
  Transition,
  Value,
  WhoHas,
  WorkerHello,
  WorkerInfo,
} from '@skein/protocol';
import { StringTable, buildValueColumn, checkColumn, readStringTable, readValueColumn, splitByCounts } from '@skein/common';
import type { ClientReport, ComputeAction, EncodedValue, FinishedTask, SchedulerEvent, TaskDef, TransitionRecord, WhoHasInfo, WorkerSpec } from '../state/types.js';
import type { WorkerRecord } from '../state/records.js';

export function taskDefFromSpec(spec: TaskSpec): TaskDef {
  const fn = spec.function?.kind;
  return {
    key: spec.key,
    fn: {
      registered: fn?.$case === 'registered' ? fn.value : '',
      inlineHash: fn?.$case === 'inlineHash' ? fn.value : '',
    },
    args: spec.args ?? { encoding: 1, data: Buffer.from('[]') },
    dependencies: spec.dependencies,
    priority: spec.priority,
    retries: spec.retries,
    resources: spec.resources,
    workers: spec.workers,
    allowOtherWorkers: spec.allowOtherWorkers,
    resultEncoding: spec.resultEncoding,
    pure: spec.pure,
  };
}


/**
 * The tasks of a TaskBatch (client.map's column form), each exactly the TaskDef its TaskSpec would
 * give. Throws InvalidArgumentError when the columns do not agree.
 */
export function taskDefsFromBatch(b: TaskBatch, out: TaskDef[]): void {
  const n = b.keys.length;
  const where = `TaskBatch of ${n} tasks (first key ${JSON.stringify(b.keys[0] ?? '')})`;
  const args = readValueColumn(b.args, n, `${where}, args`);
  const deps = splitByCounts(b.dependencyCounts, b.dependencies, n, `${where}, dependency_counts`);
  const kind = b.function?.kind;
  const fn = { registered: kind?.$case === 'registered' ? kind.value : '', inlineHash: kind?.$case === 'inlineHash' ? kind.value : '' };
  for (let i = 0; i < n; i++) {
    out.push({
      key: b.keys[i]!,
      fn,
      args: args[i] ?? EMPTY_ARGS,
      dependencies: deps[i]!,
      priority: b.priority,
      retries: b.retries,
      resources: b.resources,
      workers: b.workers,
      allowOtherWorkers: b.allowOtherWorkers,
      resultEncoding: b.resultEncoding,
      pure: b.pure,
    });
  }
}

const EMPTY_ARGS: EncodedValue = { encoding: 1, data: Buffer.from('[]') };
// A ComputeBatch's tasks need no resources (tasks with some go as ComputeTask); only encoded.
const NO_RESOURCES: ReadonlyMap<string, number> = new Map<string, number>();

/** A TasksFinished column batch as one TasksFinished event; `stimulus` makes its id when the message carries none. */
export function tasksFinishedEvent(m: TasksFinished, worker: string, stimulus: () => string): Extract<SchedulerEvent, { type: 'TasksFinished' }> {
  const n = m.keys.length;
  const where = `TasksFinished of ${n} keys from ${worker}`;
  const values = readValueColumn(m.values, n, `${where}, values`);
  checkColumn(m.nbytes.length, n, 'nbytes', where);
  const typeNames = readStringTable(m.typeNames, m.typeNameIndex, n, `${where}, type_name_index`);
  checkColumn(m.startMs.length, n, 'start_ms', where);
  checkColumn(m.stopMs.length, n, 'stop_ms', where);
  const tasks = new Array<FinishedTask>(n);
  for (let i = 0; i < n; i++) {
    tasks[i] = {
      key: m.keys[i]!,
      value: values[i]!,
      nbytes: m.nbytes[i]!,
      typeName: typeNames[i]!,
      startMs: m.startMs[i]!,
      stopMs: m.stopMs[i]!,
    };
  }
  return { type: 'TasksFinished', worker, tasks, stimulusId: m.stimulusId || stimulus() };
}

/** Whether a Compute can travel in a ComputeBatch: no inputs, no restrictions. */
export function batchable(a: ComputeAction): boolean {
  const d = a.def;
  return a.whoHas.length === 0 && a.inlineInputs.length === 0 && d.dependencies.length === 0 && d.workers.length === 0 && d.resources.size === 0;
}

/** Whether two batchable Computes share everything a ComputeBatch shares. */
export function sameBatch(a: TaskDef, b: TaskDef): boolean {
  return (
    a.fn.inlineHash === b.fn.inlineHash &&
    a.fn.registered === b.fn.registered &&
    a.priority === b.priority &&
    a.retries === b.retries &&
    a.resultEncoding === b.resultEncoding &&
    a.allowOtherWorkers === b.allowOtherWorkers
  );
}

/** Batchable Computes of one function and options (see sameBatch) as one ComputeBatch. */
export function computeBatch(actions: readonly ComputeAction[], fn: InlineFunction | undefined): ComputeBatch {
  const first = actions[0]!.def;
  const n = actions.length;
  const keys = new Array<string>(n);
  const args = new Array<EncodedValue>(n);
  const sequences = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const a = actions[i]!;
    keys[i] = a.key;
    args[i] = a.def.args;
    sequences[i] = a.sequence;
  }
  return {
    tasks: {
      function: { kind: first.fn.registered ? { $case: 'registered', value: first.fn.registered } : { $case: 'inlineHash', value: first.fn.inlineHash } },
      keys,
      args: buildValueColumn(args),
      dependencyCounts: [],
      dependencies: [],
      priority: first.priority,
      retries: first.retries,
      resources: NO_RESOURCES as Map<string, number>, // only read, by the encoder
      workers: [],
      allowOtherWorkers: first.allowOtherWorkers,
      resultEncoding: first.resultEncoding,
      pure: false, // the scheduler's business, not the worker's
    },
    sequences,
    function: fn,
    stimulusId: actions[0]!.stimulusId,
  };
}

type InMemoryReport = Extract<ClientReport, { type: 'in-memory' }>;

/** In-memory reports as one KeysInMemory column batch. */
export function keysInMemory(reports: readonly InMemoryReport[]): KeysInMemory {
  const n = reports.length;
  const keys = new Array<string>(n);
  const values = new Array<EncodedValue | null>(n);
  const nbytes = new Array<number>(n);
  const typeNames = new StringTable();
  const workers = new StringTable();
  const workerCounts = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const r = reports[i]!;
    keys[i] = r.key;
    values[i] = r.value;
    nbytes[i] = r.nbytes;
    typeNames.add(r.typeName);
    workerCounts[i] = r.workers.length;
    for (const w of r.workers) workers.add(w);
  }
  return {
    keys,
    values: buildValueColumn(values),
    nbytes,
    typeNames: typeNames.list,
    typeNameIndex: typeNames.index,
    workerCounts,
    workers: workers.list,
    workerIndex: workers.index,
  };
}

export function specFromTaskDef(def: TaskDef): TaskSpec {
  return {
    key: def.key,
    function: { kind: def.fn.registered ? { $case: 'registered', value: def.fn.registered } : { $case: 'inlineHash', value: def.fn.inlineHash } },
    args: def.args as Value,
    dependencies: def.dependencies,
    priority: def.priority,
    retries: def.retries,
    resources: def.resources as Map<string, number>, // only read, by the encoder
    workers: def.workers,
    allowOtherWorkers: def.allowOtherWorkers,
    resultEncoding: def.resultEncoding,
    pure: false, // the scheduler's business, not the worker's
  };
}

export function workerSpecFromHello(h: WorkerHello): WorkerSpec {
  return {
    address: h.address,
    name: h.name,
    nthreads: h.nthreads,
    memoryLimit: h.memoryLimit,
    resources: h.resources,
    registeredFunctions: h.registeredFunctions,
    held: h.held.map(whoHasInfo),
    pid: h.pid,
    nannyAddress: h.nannyAddress,
  };
}

export function whoHasInfo(w: WhoHas): WhoHasInfo {
  return { key: w.key, workers: w.workers, nbytes: w.nbytes };
}

export function computeMessage(a: ComputeAction, fn: InlineFunction | undefined): ComputeTask {
  return {
    spec: specFromTaskDef(a.def),
    function: fn,
    whoHas: a.whoHas,
    inlineInputs: new Map(a.inlineInputs),
    sequence: a.sequence,
    stimulusId: a.stimulusId,
  } as ComputeTask;
}

export function clientUpdate(r: ClientReport): ClientUpdate {
  switch (r.type) {
    case 'in-memory':
      return {
        kind: {
          $case: 'inMemory',
          value: { key: r.key, value: r.value ?? undefined, workers: r.workers, nbytes: r.nbytes, typeName: r.typeName },
        },
      } as ClientUpdate;
    case 'erred':
      return { kind: { $case: 'erred', value: { key: r.key, error: r.error } } };
    case 'cancelled':
      return { kind: { $case: 'cancelled', value: { key: r.key, reason: r.reason } } };
    case 'lost':
      return { kind: { $case: 'lost', value: { key: r.key } } };
    case 'no-worker':
      return { kind: { $case: 'noWorker', value: { key: r.key, reason: r.reason, resolved: r.resolved } } };
  }
}

export function transitionMessage(t: TransitionRecord): Transition {
  return { key: t.key, start: t.start, finish: t.finish, stimulusId: t.stimulusId, timeMs: t.timeMs, worker: t.worker };
}

export function workerInfo(ws: WorkerRecord): WorkerInfo {
  return {
    address: ws.address,
    name: ws.name,
    nthreads: ws.nthreads,
    memoryLimit: ws.memoryLimit,
    resources: ws.resources as Map<string, number>, // only read, by the encoder
    processing: ws.processing.size,
    inMemory: ws.hasWhat.size,
    managedBytes: ws.metrics.managedBytes || ws.nbytes,
    memoryRss: ws.metrics.memoryRss,
    lastSeenMs: ws.lastSeenMs,
    status: ws.status,
    registeredFunctions: [...ws.registeredFunctions],
    pid: ws.pid,
    nannyAddress: ws.nannyAddress,
    versions: undefined, // the shell adds what the worker reported (SchedulerServer.info)
  };
}

/** Conversions between protobuf messages and the state machine's domain types. */
import type {
  ClientUpdate,
  ComputeTask,
  InlineFunction,
  RemoteError,
  TaskSpec,
  Transition,
  Value,
  WhoHas,
  WorkerHello,
  WorkerInfo,
} from '@skein/protocol';
import type { ClientReport, ComputeAction, ErrorInfo, TaskDef, TransitionRecord, WhoHasInfo, WorkerSpec } from '../state/types.js';
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
    resources: def.resources,
    workers: def.workers,
    allowOtherWorkers: def.allowOtherWorkers,
    resultEncoding: def.resultEncoding,
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

export function errorInfo(e: RemoteError | undefined, key: string): ErrorInfo {
  return e
    ? { type: e.type, message: e.message, stack: e.stack, code: e.code, key: e.key || key, detailsJson: e.detailsJson }
    : { type: 'Error', message: `task ${key} failed without an error message`, stack: '', code: 'internal', key, detailsJson: '' };
}

export function computeMessage(a: ComputeAction, fn: InlineFunction | undefined): ComputeTask {
  return {
    spec: specFromTaskDef(a.def),
    function: fn,
    whoHas: a.whoHas,
    inlineInputs: Object.fromEntries(a.inlineInputs),
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
    resources: ws.resources,
    processing: ws.processing.size,
    inMemory: ws.hasWhat.size,
    managedBytes: ws.metrics.managedBytes || ws.nbytes,
    memoryRss: ws.metrics.memoryRss,
    lastSeenMs: ws.lastSeenMs,
    status: ws.status,
    registeredFunctions: [...ws.registeredFunctions],
    pid: ws.pid,
    nannyAddress: ws.nannyAddress,
  };
}

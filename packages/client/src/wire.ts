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
  RemoteError,
  RunRequest,
  RunResponse,
  TaskSpec,
  WorkerInfo as WireWorkerInfo,
} from '@skein/protocol';
import type {
  FunctionSource,
  Incoming,
  Outgoing,
  RemoteErrorInfo,
  SchedulerInfo,
  TaskDef,
  Transition,
  WorkerInfo,
  EncodedValue,
} from './types.js';

export function helloRequest(protocolVersion: string, clientId: string): ClientSessionRequest {
  return { messages: [{ kind: { $case: 'hello', value: { protocolVersion, clientId } } }] };
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
    resources: t.resources,
    workers: t.workers,
    allowOtherWorkers: t.allowOtherWorkers,
    resultEncoding: t.resultEncoding,
  };
}

function toClientMessage(m: Outgoing): ClientMessage {
  switch (m.type) {
    case 'UpdateGraph':
      return {
        kind: {
          $case: 'updateGraph',
          value: {
            tasks: m.tasks.map(toTaskSpec),
            wantedKeys: m.wantedKeys,
            functions: m.functions.map((f) => ({ hash: f.hash, source: f.source, name: f.name })),
            broadcastKeys: m.broadcastKeys,
            stimulusId: m.stimulusId,
          },
        },
      };
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

export function toSessionRequest(batch: readonly Outgoing[]): ClientSessionRequest {
  return { messages: batch.map(toClientMessage) };
}

const EMPTY_ERROR: RemoteErrorInfo = { type: 'Error', message: '(no error details)', stack: '', code: '', key: '', detailsJson: '' };

export function fromRemoteErrorMessage(e: RemoteError | undefined, key: string): RemoteErrorInfo {
  if (!e) return { ...EMPTY_ERROR, key };
  return { type: e.type, message: e.message, stack: e.stack, code: e.code, key: e.key || key, detailsJson: e.detailsJson };
}

/** A scheduler update in domain form; undefined for an empty oneof (ignored). */
export function fromClientUpdate(u: ClientUpdate): Incoming | undefined {
  const k = u.kind;
  if (!k) return undefined;
  switch (k.$case) {
    case 'welcome':
      return {
        type: 'Welcome',
        protocolVersion: k.value.protocolVersion,
        schedulerId: k.value.schedulerId,
        schedulerAddress: k.value.schedulerAddress,
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
      return { type: 'KeyErred', key: k.value.key, error: fromRemoteErrorMessage(k.value.error, k.value.key) };
    case 'cancelled':
      return { type: 'KeyCancelled', key: k.value.key, reason: k.value.reason };
    case 'lost':
      return { type: 'KeyLost', key: k.value.key };
    default: {
      const never: never = k;
      throw new Error(`unknown scheduler update ${JSON.stringify(never)}`);
    }
  }
}

export function toRemoteErrorMessage(e: RemoteErrorInfo): RemoteError {
  return { ...e };
}

function fromWireWorker(w: WireWorkerInfo): WorkerInfo {
  return {
    address: w.address,
    name: w.name,
    nthreads: w.nthreads,
    memoryLimit: w.memoryLimit,
    resources: { ...w.resources },
    processing: w.processing,
    inMemory: w.inMemory,
    managedBytes: w.managedBytes,
    memoryRss: w.memoryRss,
    lastSeenMs: w.lastSeenMs,
    status: w.status,
    registeredFunctions: [...w.registeredFunctions],
    pid: w.pid,
    nannyAddress: w.nannyAddress,
  };
}

export function fromGetInfo(r: GetInfoResponse): SchedulerInfo {
  const workers = r.workers.map(fromWireWorker);
  return {
    id: r.schedulerId,
    address: r.address,
    protocolVersion: r.protocolVersion,
    workers,
    tasksByState: { ...r.tasksByState },
    clients: r.clients,
    dashboardAddress: r.dashboardAddress,
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
  }));
}

export function toRunRequest(fn: FunctionSource, args: EncodedValue): RunRequest {
  return { function: { hash: fn.hash, source: fn.source, name: fn.name }, args };
}

export type RunOutcome = { ok: true; value: EncodedValue | undefined } | { ok: false; error: RemoteErrorInfo };

export function fromRunResponse(r: RunResponse): RunOutcome {
  const o = r.outcome;
  if (!o) return { ok: true, value: undefined };
  return o.$case === 'result' ? { ok: true, value: o.value } : { ok: false, error: fromRemoteErrorMessage(o.value, '') };
}

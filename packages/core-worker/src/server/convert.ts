/**
 * Wire ↔ domain for the worker session: scheduler commands become state events, the state's
 * scheduler messages become protobuf WorkerMessages. The only module that knows both.
 */
import type { ComputeTask, WorkerMessage, WhoHas } from '@skein/protocol';
import { Encoding } from '@skein/protocol';
import { InvalidArgumentError } from '@skein/common';
import type { ComputeTaskEvent, SchedulerMessage, TaskCall, WorkerEvent } from '../state/types.js';

const EMPTY_ARGS = { encoding: Encoding.ENCODING_JSON, data: Buffer.from('[]') };

function whoHasRecords(list: readonly WhoHas[]): { whoHas: Record<string, string[]>; nbytes: Record<string, number> } {
  const whoHas: Record<string, string[]> = {};
  const nbytes: Record<string, number> = {};
  for (const w of list) {
    whoHas[w.key] = w.workers;
    if (w.nbytes) nbytes[w.key] = Number(w.nbytes);
  }
  return { whoHas, nbytes };
}

/** The task's function as the state's domain type. */
export function taskCall(cmd: ComputeTask): TaskCall {
  const spec = cmd.spec;
  if (!spec) throw new InvalidArgumentError('ComputeTask without a spec');
  const kind = spec.function?.kind;
  const fn: TaskCall['fn'] =
    kind?.$case === 'registered'
      ? { kind: 'registered', name: kind.value }
      : kind?.$case === 'inlineHash'
        ? { kind: 'inline', hash: kind.value, name: cmd.function?.name || spec.key.replace(/-[^-]*$/, '') || 'lambda' }
        : { kind: 'registered', name: '' };
  return { fn, args: spec.args ?? EMPTY_ARGS, resultEncoding: spec.resultEncoding };
}

export function computeTaskEvent(cmd: ComputeTask): ComputeTaskEvent {
  const spec = cmd.spec;
  if (!spec) throw new InvalidArgumentError('ComputeTask without a spec');
  const { whoHas, nbytes } = whoHasRecords(cmd.whoHas);
  return {
    type: 'ComputeTask',
    key: spec.key,
    call: taskCall(cmd),
    dependencies: spec.dependencies,
    priority: spec.priority,
    sequence: Number(cmd.sequence),
    resources: spec.resources,
    whoHas,
    nbytes,
    inlineInputs: cmd.inlineInputs,
    stimulusId: cmd.stimulusId,
  };
}

export function acquireReplicasEvent(list: readonly WhoHas[], stimulusId: string): WorkerEvent {
  return { type: 'AcquireReplicas', ...whoHasRecords(list), stimulusId };
}

/** A state message as the protobuf WorkerMessage. */
export function toWire(m: SchedulerMessage): WorkerMessage {
  switch (m.type) {
    case 'TaskFinished':
      return {
        kind: {
          $case: 'taskFinished',
          value: {
            key: m.key,
            value: m.value ? { encoding: m.value.encoding, data: m.value.data } : undefined,
            nbytes: m.nbytes,
            typeName: m.typeName,
            startMs: m.startMs,
            stopMs: m.stopMs,
            stimulusId: m.stimulusId,
          },
        },
      };
    case 'TaskErred':
      return { kind: { $case: 'taskErred', value: { key: m.key, error: m.error, startMs: m.startMs, stopMs: m.stopMs, stimulusId: m.stimulusId } } };
    case 'AddKeys':
      return { kind: { $case: 'addKeys', value: { keys: m.keys, stimulusId: m.stimulusId } } };
    case 'KeysReleased':
      return { kind: { $case: 'keysReleased', value: { keys: m.keys, stimulusId: m.stimulusId } } };
    case 'MissingData':
      return { kind: { $case: 'missingData', value: { key: m.key, worker: m.worker, stimulusId: m.stimulusId } } };
    case 'StealResponse':
      return { kind: { $case: 'stealResponse', value: { key: m.key, state: m.state, stimulusId: m.stimulusId } } };
    case 'Reschedule':
      return { kind: { $case: 'reschedule', value: { key: m.key, stimulusId: m.stimulusId } } };
    default: {
      const never: never = m;
      throw new Error(`unknown message ${JSON.stringify(never)}`);
    }
  }
}

import { WorkerState } from '../src/state/worker-state.js';
import type { ComputeTaskEvent, Encoded, WorkerStateConfig } from '../src/state/types.js';

export const SELF = 'tcp://127.0.0.1:1000';
export const A = 'tcp://127.0.0.1:2000';
export const B = 'tcp://127.0.0.1:3000';

export function json(v: unknown): Encoded {
  return { encoding: 1, data: Buffer.from(JSON.stringify(v)) };
}

export function newState(over: Partial<WorkerStateConfig> = {}): WorkerState {
  let t = 0;
  return new WorkerState({ address: SELF, nthreads: 1, inlineBytes: 100, now: () => ++t, validate: true, ...over });
}

let seq = 0;
export function compute(key: string, over: Partial<ComputeTaskEvent> = {}): ComputeTaskEvent {
  return {
    type: 'ComputeTask',
    key,
    call: { fn: { kind: 'registered', name: 'f' }, args: json([]) },
    dependencies: [],
    priority: 0,
    sequence: ++seq,
    resources: {},
    whoHas: {},
    nbytes: {},
    inlineInputs: {},
    stimulusId: `compute-${key}`,
    ...over,
  };
}

export function success(key: string, value: unknown = 1) {
  return { type: 'ExecuteSuccess' as const, key, value: json(value), typeName: 'number', startMs: 1, stopMs: 2, stimulusId: `ok-${key}` };
}

export function failure(key: string) {
  return {
    type: 'ExecuteFailure' as const,
    key,
    error: { type: 'Error', message: 'boom', stack: '', code: '', key, detailsJson: '' },
    startMs: 1,
    stopMs: 2,
    stimulusId: `fail-${key}`,
  };
}

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

type Keyed<T> = Readonly<Record<string, T>> | ReadonlyMap<string, T>;
/** The event's keyed fields, which are Maps (keys are user data), may be given as records here. */
export interface ComputeOverrides extends Partial<Omit<ComputeTaskEvent, 'resources' | 'whoHas' | 'nbytes' | 'inlineInputs'>> {
  resources?: Keyed<number>;
  whoHas?: Keyed<readonly string[]>;
  nbytes?: Keyed<number>;
  inlineInputs?: Keyed<Encoded>;
}

/** A Map of a record's own entries (a Map as it is). */
export function keyed<T>(r: Keyed<T> | undefined): ReadonlyMap<string, T> {
  return r instanceof Map ? r : new Map(Object.entries((r ?? {}) as Record<string, T>));
}

let seq = 0;
export function compute(key: string, over: ComputeOverrides = {}): ComputeTaskEvent {
  const { resources, whoHas, nbytes, inlineInputs, ...rest } = over;
  return {
    type: 'ComputeTask',
    key,
    call: { fn: { kind: 'registered', name: 'f' }, args: json([]) },
    dependencies: [],
    priority: 0,
    sequence: ++seq,
    stimulusId: `compute-${key}`,
    ...rest,
    resources: keyed(resources),
    whoHas: keyed(whoHas),
    nbytes: keyed(nbytes),
    inlineInputs: keyed(inlineInputs),
  };
}

export function success(key: string, value: unknown = 1) {
  return { type: 'ExecuteSuccess' as const, key, value: json(value), typeName: 'number', startMs: 1, stopMs: 2, stimulusId: `ok-${key}` };
}

export function failure(key: string) {
  return {
    type: 'ExecuteFailure' as const,
    key,
    error: { type: 'Error', message: 'boom', stack: '', code: '' as const, key, detailsJson: '' },
    startMs: 1,
    stopMs: 2,
    stimulusId: `fail-${key}`,
  };
}

/** Test inputs shared by the state machine's tests. */
import type { TaskDef, WorkerSpec } from '../src/state/types.js';

/** A task of an inline function with empty JSON arguments and no restrictions. */
export function def(key: string, deps: string[] = [], extra: Partial<TaskDef> = {}): TaskDef {
  return {
    key,
    fn: { registered: '', inlineHash: 'h' },
    args: { encoding: 1, data: new Uint8Array() },
    dependencies: deps,
    priority: 0,
    retries: 0,
    resources: new Map(),
    workers: [],
    allowOtherWorkers: false,
    resultEncoding: 0,
    ...extra,
  };
}

/** A worker named after its address, one thread, no memory limit. */
export function worker(address: string, extra: Partial<WorkerSpec> = {}): WorkerSpec {
  return { address, name: address, nthreads: 1, memoryLimit: 0, resources: new Map(), registeredFunctions: [], held: [], pid: 1, nannyAddress: '', ...extra };
}

/**
 * How the scheduler state's cost grows with the cluster and the graph (issue 18): placing a task
 * or finding a worker to steal for reads a bounded number of workers however many there are, the
 * choice stays the one a scan of every worker makes, and a task record stays small.
 */
import { describe, expect, it } from 'vitest';
import { SchedulerState } from '../src/state/scheduler-state.js';
import type { WorkerRecord } from '../src/state/records.js';
import type { SchedulerAction, SchedulerEvent, TaskDef, WorkerSpec } from '../src/state/types.js';
import { def, worker } from './helpers.js';

class Harness {
  n = 0;
  state = new SchedulerState({ now: () => 0, validate: true, workerSaturation: 1.0 });
  handle(e: Record<string, unknown> & { type: SchedulerEvent['type'] }): SchedulerAction[] {
    return this.state.handle({ stimulusId: `s${this.n++}`, ...e } as SchedulerEvent);
  }
  addWorker(address: string, extra: Partial<WorkerSpec> = {}) {
    return this.handle({ type: 'WorkerAdded', worker: worker(address, extra) });
  }
  submit(client: string, defs: TaskDef[], wanted: string[]) {
    return this.handle({ type: 'GraphUpdated', client, tasks: defs, wanted, broadcast: [] });
  }
  finish(worker: string, key: string) {
    return this.handle({ type: 'TaskFinished', worker, key, value: { encoding: 2, data: new Uint8Array(1) }, nbytes: 1, typeName: 'number', startMs: 0, stopMs: 1 });
  }
}

const computes = (as: SchedulerAction[]) => as.filter((a) => a.type === 'Compute').map((a) => `${a.worker}:${(a as { key: string }).key}`);

/** Counts reads of each worker's `processing` from now on. */
function countReads(state: SchedulerState): { reads: number } {
  const counter = { reads: 0 };
  for (const ws of state.workers.values()) {
    const real = ws.processing;
    Object.defineProperty(ws as WorkerRecord, 'processing', {
      get() {
        counter.reads++;
        return real;
      },
    });
  }
  return counter;
}

describe('SchedulerState at scale', () => {
  it('places a root task reading a few workers, not every one of 1,000', () => {
    const h = new Harness();
    for (let i = 0; i < 1000; i++) h.addWorker(`w${i}`);
    // The first placement after workers joined sorts them once (O(workers log workers)).
    expect(computes(h.submit('c', [def('a-0')], ['a-0']))).toEqual(['w0:a-0']);
    // Validation walks every worker on purpose: off for the counted events.
    h.state.opts.validate = false;
    const counter = countReads(h.state);
    const acts = h.submit('c', [def('a-1')], ['a-1']);
    expect(computes(acts)).toEqual(['w1:a-1']);
    expect(counter.reads).toBeLessThan(50);
    counter.reads = 0;
    // Finishing it frees a slot on an idle cluster: nobody to steal from, found without a scan.
    h.finish('w1', 'a-1');
    expect(counter.reads).toBeLessThan(50);
    h.state.opts.validate = true;
    h.state.validateState();
  });

  it('places as a scan would: the lowest load per thread, the first registered among equals, busy workers skipped', () => {
    const h = new Harness();
    h.addWorker('a', { nthreads: 2 });
    h.addWorker('b');
    h.addWorker('c', { nthreads: 2 });
    // Slots with saturation 1.0 (no durations known yet): a and c 2, b 1.
    const acts = h.submit('k', ['x-1', 'x-2', 'x-3', 'x-4', 'x-5', 'x-6'].map((k) => def(k)), ['x-1', 'x-2', 'x-3', 'x-4', 'x-5', 'x-6']);
    // Loads 0/0/0 -> a; a 0.5 -> b; b 1, c 0 -> c; a 0.5 = c 0.5 -> a; a full, b full, c 0.5 -> c; all full -> queued.
    expect(computes(acts)).toEqual(['a:x-1', 'b:x-2', 'c:x-3', 'a:x-4', 'c:x-5']);
    expect(h.state.tasks.get('x-6')!.state).toBe('queued');
    // b frees its slot: the queued task goes there.
    expect(computes(h.finish('b', 'x-2'))).toEqual(['b:x-6']);
  });

  it('a paused worker leaves the choice and a resumed one comes back', () => {
    const h = new Harness();
    h.addWorker('a');
    h.addWorker('b');
    const metrics = (paused: boolean) => ({ executing: 0, ready: 0, memoryRss: 0, managedBytes: 0, spilledBytes: 0, cpuPercent: 0, paused });
    h.handle({ type: 'Heartbeat', worker: 'a', metrics: metrics(true) });
    expect(computes(h.submit('k', [def('y-1')], ['y-1']))).toEqual(['b:y-1']);
    h.handle({ type: 'Heartbeat', worker: 'a', metrics: metrics(false) });
    expect(computes(h.submit('k', [def('y-2')], ['y-2']))).toEqual(['a:y-2']);
  });

  it('steals for an idle worker from the most loaded workers, the first registered among equals', () => {
    const h = new Harness();
    h.state.opts.workerSaturation = Infinity;
    h.addWorker('a');
    h.addWorker('b');
    const keys = Array.from({ length: 8 }, (_, i) => `z-${i}`);
    h.submit('k', keys.map((k) => def(k)), keys);
    // Unlimited slots: the tasks alternate between a and b, 4 each.
    const acts = h.addWorker('c');
    const steals = acts.filter((a) => a.type === 'StealRequest').map((a) => `${a.worker}:${(a as { key: string }).key}`);
    // Up to half of what waits on each victim (3 of 4 past the running one): 2 from a, then from b.
    expect(steals.slice(0, 2)).toEqual(['a:z-2', 'a:z-4']);
    expect(steals.every((s) => s.startsWith('a:') || s.startsWith('b:'))).toBe(true);
  });

  it('keeps the rarely used fields of a task off its record until they are set', () => {
    const h = new Harness();
    h.addWorker('w');
    h.submit('c', [def('r-1'), def('d-1', ['r-1']), def('d-2', ['r-1'])], ['d-1', 'd-2']);
    const ts = h.state.tasks.get('d-1')!;
    // Own fields of a record (V8 keeps them in the object, 8 bytes each): the common task's only.
    expect(Object.keys(ts).length).toBeLessThanOrEqual(26);
    // Consecutive tasks with the same inputs share one list of them.
    expect(h.state.tasks.get('d-2')!.dependencies).toBe(ts.dependencies);
    expect(ts.exception).toBeNull();
    expect(ts.stealingFrom).toBeNull();
    ts.suspicious = 2;
    expect(ts.suspicious).toBe(2);
    expect(ts.exception).toBeNull();
  });
});

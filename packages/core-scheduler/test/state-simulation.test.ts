// Regressions found by the state machine simulation (packages/skein/test/simulation.test.ts),
// each reduced to the few events that show it.
import { describe, expect, it } from 'vitest';
import { SchedulerState } from '../src/state/scheduler-state.js';
import type { SchedulerAction, SchedulerEvent, TaskDef } from '../src/state/types.js';
import { def, worker } from './helpers.js';

class Harness {
  n = 0;
  // inlineBytes 0: results stay on their workers only, so a retiring holder must hand them on.
  state = new SchedulerState({ now: () => 0, validate: true, inlineBytes: 0 });
  handle(e: Record<string, unknown> & { type: SchedulerEvent['type'] }): SchedulerAction[] {
    return this.state.handle({ stimulusId: `s${this.n++}`, ...e } as SchedulerEvent);
  }
  submit(client: string, defs: TaskDef[], wanted: string[]) {
    this.handle({ type: 'ClientConnected', client });
    return this.handle({ type: 'GraphUpdated', client, tasks: defs, wanted, broadcast: [] });
  }
  finish(w: string, key: string) {
    return this.handle({ type: 'TaskFinished', worker: w, key, value: null, nbytes: 8, typeName: 'number', startMs: 0, stopMs: 1 });
  }
  /** x computed on a, then a retiring: the copy of x goes to b (the only other worker). */
  retireHolder(): SchedulerAction[] {
    this.handle({ type: 'WorkerAdded', worker: worker('a') });
    this.submit('c', [def('x')], ['x']);
    this.handle({ type: 'WorkerAdded', worker: worker('b') });
    this.finish('a', 'x');
    return this.handle({ type: 'RetireWorkers', workers: ['a'], n: 0 });
  }
}

const kinds = (as: SchedulerAction[]) => as.map((a) => `${a.type}:${'worker' in a ? a.worker : ''}`);

describe('SchedulerState: findings of the simulation', () => {
  it('asks another worker for a retiring worker\'s copies when the one asked first leaves', () => {
    const h = new Harness();
    expect(kinds(h.retireHolder())).toEqual(['AcquireReplicas:b']);
    h.handle({ type: 'WorkerAdded', worker: worker('c') });
    // b leaves before it fetched x: c is asked instead, and the retirement ends once c has it.
    const acts = h.handle({ type: 'WorkerRemoved', worker: 'b', expected: false, reason: 'died' });
    expect(acts).toContainEqual({ type: 'AcquireReplicas', worker: 'c', whoHas: [{ key: 'x', workers: ['a'], nbytes: 8 }], stimulusId: expect.any(String) });
    const done = h.handle({ type: 'ReplicasAdded', worker: 'c', keys: [{ key: 'x', workers: ['c'], nbytes: 8 }] });
    expect(kinds(done)).toContain('CloseWorker:a');
  });

  it('ends a retirement whose copy is released meanwhile (nobody wants it any more)', () => {
    const h = new Harness();
    h.retireHolder();
    const acts = h.handle({ type: 'ClientReleasedKeys', client: 'c', keys: ['x'] });
    expect(kinds(acts)).toContain('CloseWorker:a');
    expect(h.state.workers.get('a')!.pendingReplicas).toBeNull();
  });

  it('a worker that could not fetch a copy from a live holder makes that holder drop it (no copy nobody frees)', () => {
    const h = new Harness();
    h.handle({ type: 'WorkerAdded', worker: worker('a') });
    h.handle({ type: 'WorkerAdded', worker: worker('b') });
    h.submit('c', [def('x'), def('y', ['x'], { workers: ['b'] })], ['x', 'y']);
    h.finish('a', 'x');
    // b's transfer from a broke on the way: the scheduler no longer counts a's copy, and frees it.
    const acts = h.handle({ type: 'MissingData', worker: 'b', key: 'x', errant: 'a' });
    expect(acts).toContainEqual({ type: 'FreeKeys', worker: 'a', keys: ['x'], stimulusId: expect.any(String) });
    expect(h.state.tasks.get('x')!.whoHas).toEqual([]);
    // A report naming a worker that does not hold the key changes nothing and frees nothing.
    expect(kinds(h.handle({ type: 'MissingData', worker: 'b', key: 'x', errant: 'a' })).filter((k) => k.startsWith('FreeKeys'))).toEqual([]);
  });
});

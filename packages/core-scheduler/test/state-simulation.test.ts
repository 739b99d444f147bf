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

  it('a copy reported after its key was lost and given to the same worker to compute is not freed there (that would cancel the run)', () => {
    const h = new Harness();
    h.handle({ type: 'WorkerAdded', worker: worker('a') });
    h.handle({ type: 'WorkerAdded', worker: worker('b') });
    h.handle({ type: 'ClientConnected', client: 'c' });
    const placed = h.handle({ type: 'GraphUpdated', client: 'c', tasks: [def('x')], wanted: ['x'], broadcast: ['x'] });
    const ran = placed.find((a) => a.type === 'Compute')!.worker;
    const other = ran === 'a' ? 'b' : 'a';
    expect(kinds(h.finish(ran, 'x'))).toContain(`AcquireReplicas:${other}`);
    // The only holder dies before the other worker's copy is reported: x runs again, there.
    const rerun = h.handle({ type: 'WorkerRemoved', worker: ran, expected: false, reason: 'died' });
    expect(rerun).toContainEqual(expect.objectContaining({ type: 'Compute', worker: other, key: 'x' }));
    // The copy's report, sent before the worker got the Compute, is no reason to drop x there.
    const acts = h.handle({ type: 'ReplicasAdded', worker: other, keys: [{ key: 'x', workers: [other], nbytes: 8 }] });
    expect(acts.filter((a) => a.type === 'FreeKeys')).toEqual([]);
    expect(h.state.tasks.get('x')!.processingOn?.address).toBe(other);
    h.finish(other, 'x');
    expect(h.state.tasks.get('x')!.whoHas.map((w) => w.address)).toEqual([other]);
  });

  /**
   * y (with `retries`) waits on a behind x and z (bound to a), next to its large input, when b
   * joins and asks a for it: returns the steal request's stimulus id and a function that makes a
   * report y failed (a had started it before the request came).
   */
  const stealFromA = (h: Harness, retries: number) => {
    h.handle({ type: 'WorkerAdded', worker: worker('a') });
    h.submit('c', [def('root')], ['root']);
    h.handle({ type: 'TaskFinished', worker: 'a', key: 'root', value: null, nbytes: 1e12, typeName: 'bytes', startMs: 0, stopMs: 1 });
    const onA = { workers: ['a'] };
    h.submit('c', [def('x', ['root'], onA), def('y', ['root'], { retries }), def('z', ['root'], onA)], ['x', 'y', 'z']);
    const [id] = stealsOfY(h.handle({ type: 'WorkerAdded', worker: worker('b') }));
    expect(id).toBeDefined();
    const err = () => h.handle({ type: 'TaskErred', worker: 'a', key: 'y', error: { type: 'TypeError', message: 'boom', stack: 'at f', code: '', key: 'y', detailsJson: '' }, startMs: 0, stopMs: 1 });
    return { id: id!, err };
  };
  const stealsOfY = (as: SchedulerAction[]) => as.filter((a) => a.type === 'StealRequest' && a.key === 'y').map((a) => a.stimulusId);

  // Dask test_steal.py::test_reschedule_concurrent_requests_deadlock: a reply to an older steal
  // request is stale (stealing.py move_task_confirm matches the reply's stimulus id).
  it('a reply to a steal request for a run that erred does not answer the request for its retry', () => {
    const h = new Harness();
    const { id: first, err } = stealFromA(h, 1);
    // y fails, and its retry goes to a again (next to its input); b asks for it again.
    err();
    expect(h.state.tasks.get('y')!.processingOn?.address).toBe('a');
    const [second] = stealsOfY(h.handle({ type: 'Tick' }));
    expect(second).toBeDefined();
    expect(second).not.toBe(first);
    // a answers both in order: the first (y had erred) is stale and changes nothing; the second
    // (a gave the retry back) has y placed again, which would otherwise stay processing on a
    // forever, with a no longer running it.
    expect(h.handle({ type: 'StealResponse', worker: 'a', key: 'y', state: 'error', stimulusId: first })).toEqual([]);
    const acts = h.handle({ type: 'StealResponse', worker: 'a', key: 'y', state: 'ready', stimulusId: second });
    expect(acts).toContainEqual({ type: 'FreeKeys', worker: 'a', keys: ['y'], stimulusId: second });
    // (placed by the usual rules: on a again here, next to its large input)
    const on = h.state.tasks.get('y')!.processingOn!.address;
    expect(acts).toContainEqual(expect.objectContaining({ type: 'Compute', worker: on, key: 'y' }));
  });

  it('a task that fails for good while a steal request for it is out is no longer being stolen', () => {
    const h = new Harness();
    const { id, err } = stealFromA(h, 0);
    err();
    const y = h.state.tasks.get('y')!;
    expect(y.state).toBe('erred');
    expect(y.stealingFrom).toBeNull();
    expect(h.handle({ type: 'StealResponse', worker: 'a', key: 'y', state: 'error', stimulusId: id })).toEqual([]);
  });
});

import { describe, expect, it } from 'vitest';
import { SchedulerState } from '../src/state/scheduler-state.js';
import type { SchedulerAction, SchedulerEvent } from '../src/state/types.js';
import { def, worker } from './helpers.js';

const small = { encoding: 2, data: new Uint8Array(4) };

/** A state with validation on and a fault hook that throws once, on the named event and point. */
function harness() {
  let seq = 0;
  let fault: { type: SchedulerEvent['type']; point: 'dispatched' | 'drained' } | undefined;
  const state = new SchedulerState({ now: () => 0, validate: true, workerSaturation: 1.0, inlineBytes: 100 });
  state.faultHook = (e, point) => {
    if (fault && e.type === fault.type && point === fault.point) {
      fault = undefined;
      throw new Error('injected fault');
    }
  };
  const handle = (e: Record<string, unknown> & { type: SchedulerEvent['type'] }): SchedulerAction[] =>
    state.handle({ stimulusId: `s${seq++}`, ...e } as SchedulerEvent);
  return {
    state,
    handle,
    failNext(type: SchedulerEvent['type'], point: 'dispatched' | 'drained') {
      fault = { type, point };
    },
    finish: (w: string, key: string) => handle({ type: 'TaskFinished', worker: w, key, value: small, nbytes: 4, typeName: 'number', startMs: 0, stopMs: 1 }),
  };
}

const erred = (as: SchedulerAction[]) =>
  as.flatMap((a) => (a.type === 'ReportToClient' && a.report.type === 'erred' ? [{ client: a.client, key: a.report.key, error: a.report.error }] : []));
const computes = (as: SchedulerAction[]) => as.flatMap((a) => (a.type === 'Compute' ? [`${a.worker}:${a.key}`] : []));

describe('SchedulerState: a throw inside handle', () => {
  it('with recommendations pending: the touched tasks err with an InternalError naming the stimulus, and no recommendation runs in the next event', () => {
    const h = harness();
    h.handle({ type: 'WorkerAdded', worker: worker('w1', { nthreads: 4 }) });
    h.failNext('GraphUpdated', 'dispatched');
    const acts = h.handle({ type: 'GraphUpdated', client: 'c1', tasks: [def('a-1'), def('b-1', ['a-1'])], wanted: ['b-1'], broadcast: [] });
    // Nothing was sent for the failed event; the wanted task's client hears why.
    expect(computes(acts)).toEqual([]);
    const reports = erred(acts);
    expect(reports.map((r) => `${r.client}:${r.key}`)).toEqual(['c1:b-1']);
    const e = reports[0]!.error;
    expect(e).toMatchObject({ type: 'InternalError', code: 'internal', key: 'b-1' });
    expect(e.message).toMatch(/internal error while handling GraphUpdated \(stimulus s1\): injected fault/);
    expect(JSON.parse(e.detailsJson)).toMatchObject({ stimulusId: 's1', event: 'GraphUpdated', cause: 'injected fault', story: [] });
    expect(acts).toContainEqual(expect.objectContaining({ type: 'StateError', event: 'GraphUpdated', failed: 1, stimulusId: 's1' }));
    expect(h.state.tasks.get('b-1')?.state).toBe('erred');
    // a-1 was touched but nobody needs it: it stays released, with no recommendation left behind.
    expect(h.state.tasks.get('a-1')?.state).toBe('released');
    expect(h.state.tasks.get('a-1')?.recommended).toBeNull();

    // The next event runs only its own transitions, under its own stimulus id.
    const next = h.handle({ type: 'GraphUpdated', client: 'c2', tasks: [def('x-1')], wanted: ['x-1'], broadcast: [] });
    expect(computes(next)).toEqual(['w1:x-1']);
    expect(h.state.story(['a-1']).map((r) => r.stimulusId)).not.toContain('s2');
    h.finish('w1', 'x-1');
    expect(h.state.tasks.get('x-1')?.state).toBe('memory');
  });

  it('after the actions were decided: tasks placed but never sent err instead of staying processing, and their Computes are dropped', () => {
    const h = harness();
    h.handle({ type: 'WorkerAdded', worker: worker('w1', { nthreads: 2 }) });
    h.handle({ type: 'GraphUpdated', client: 'other', tasks: [def('o-1')], wanted: ['o-1'], broadcast: [] });
    h.failNext('GraphUpdated', 'drained');
    const acts = h.handle({ type: 'GraphUpdated', client: 'c1', tasks: [def('a-1'), def('b-1', ['a-1'])], wanted: ['b-1'], broadcast: [] });
    expect(computes(acts)).toEqual([]);
    expect(h.state.tasks.get('a-1')?.state).toBe('erred');
    expect(h.state.tasks.get('b-1')?.state).toBe('erred');
    // b-1's client hears once, with the error of its own key or of its failed input.
    expect(erred(acts).map((r) => `${r.client}:${r.key}`)).toEqual(['c1:b-1']);
    expect(h.state.workers.get('w1')?.processing.size).toBe(1); // only o-1
    // The other client's task, sent before, still completes.
    expect(h.finish('w1', 'o-1').some((a) => a.type === 'ReportToClient' && a.client === 'other' && a.report.type === 'in-memory')).toBe(true);
  });

  it('on a worker message: tasks the event finished keep their result, the dependents it placed err, other tasks run on', () => {
    const h = harness();
    h.handle({ type: 'WorkerAdded', worker: worker('w1', { nthreads: 4 }) });
    h.handle({ type: 'GraphUpdated', client: 'c1', tasks: [def('a-1'), def('b-1', ['a-1']), def('z-1')], wanted: ['b-1', 'a-1', 'z-1'], broadcast: [] });
    h.failNext('TaskFinished', 'drained');
    const acts = h.finish('w1', 'a-1');
    expect(h.state.tasks.get('a-1')?.state).toBe('memory');
    expect(acts.some((a) => a.type === 'ReportToClient' && a.report.type === 'in-memory' && a.report.key === 'a-1')).toBe(true);
    expect(h.state.tasks.get('b-1')?.state).toBe('erred');
    expect(erred(acts).map((r) => r.key)).toEqual(['b-1']);
    expect(h.finish('w1', 'z-1').some((a) => a.type === 'ReportToClient' && a.report.type === 'in-memory' && a.report.key === 'z-1')).toBe(true);
    // A resubmission under a new key runs.
    expect(computes(h.handle({ type: 'GraphUpdated', client: 'c1', tasks: [def('b-2', ['a-1'])], wanted: ['b-2'], broadcast: [] }))).toEqual(['w1:b-2']);
  });

  it('before a graph existed: the wanted keys are reported erred to the client that sent it', () => {
    const h = harness();
    h.handle({ type: 'ClientConnected', client: 'c1' });
    // A throw inside dispatch itself, before the graph's tasks exist.
    const dispatch = (h.state as unknown as { dispatch: (e: SchedulerEvent) => void }).dispatch.bind(h.state);
    (h.state as unknown as { dispatch: (e: SchedulerEvent) => void }).dispatch = (e) => {
      if (e.type === 'GraphUpdated') throw new Error('boom');
      dispatch(e);
    };
    const acts = h.handle({ type: 'GraphUpdated', client: 'c1', tasks: [def('a-1')], wanted: ['a-1'], broadcast: [] });
    expect(erred(acts)).toMatchObject([{ client: 'c1', key: 'a-1', error: { code: 'internal' } }]);
    expect(h.state.tasks.size).toBe(0);
  });
});

import { describe, expect, it } from 'vitest';
import { SchedulerState } from '../src/state/scheduler-state.js';
import type { SchedulerEvent } from '../src/state/types.js';
import { def, worker } from './helpers.js';

// The hook scheduler plugins' `transition` rides on (packages/core-scheduler/README.md, "Plugins").
describe('SchedulerState.onTransition', () => {
  it('tells every transition, in order, with the stimulus and the worker involved, the same as the story', () => {
    const state = new SchedulerState({ now: () => 0, validate: true, workerSaturation: 1.0, inlineBytes: 100, allowedFailures: 1 });
    const seen: string[] = [];
    state.onTransition = (key, start, finish, stimulusId, w) => seen.push(`${key} ${start}->${finish} ${stimulusId} ${w}`);
    let n = 0;
    const handle = (e: Record<string, unknown> & { type: SchedulerEvent['type'] }) => state.handle({ stimulusId: `s${n++}`, ...e } as SchedulerEvent);
    handle({ type: 'WorkerAdded', worker: worker('w1') });
    handle({ type: 'GraphUpdated', client: 'c', tasks: [def('a-1')], wanted: ['a-1'], broadcast: [] });
    handle({ type: 'TaskFinished', worker: 'w1', key: 'a-1', value: { encoding: 2, data: new Uint8Array(4) }, nbytes: 4, typeName: 'number', startMs: 0, stopMs: 1 });
    handle({ type: 'ClientReleasedKeys', client: 'c', keys: ['a-1'] });
    expect(seen.slice(0, 3)).toEqual(['a-1 released->waiting s1 ', 'a-1 waiting->processing s1 w1', 'a-1 processing->memory s2 w1']);
    expect(seen.map((s) => s.split(' ')[1])).toEqual(state.story(['a-1']).map((r) => `${r.start}->${r.finish}`));
    expect(seen[seen.length - 1]).toMatch(/^a-1 \S+->forgotten s3/);
  });

  it('costs nothing and changes nothing when unset', () => {
    const state = new SchedulerState({ now: () => 0, validate: true });
    expect(state.onTransition).toBeUndefined();
    state.handle({ type: 'WorkerAdded', worker: worker('w1'), stimulusId: 's0' });
    state.handle({ type: 'GraphUpdated', client: 'c', tasks: [def('a-1')], wanted: ['a-1'], broadcast: [], stimulusId: 's1' });
    expect(state.tasks.get('a-1')?.state).toBe('processing');
  });
});

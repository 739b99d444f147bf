import { describe, expect, it } from 'vitest';
import { compute, newState, success } from './helpers.js';

// The hook worker plugins' `transition` rides on (packages/core-worker/README.md, "Plugins").
describe('WorkerState.onTransition', () => {
  it('tells every transition of a task, in order, with its stimulus, the same as its story', () => {
    const s = newState();
    const seen: string[] = [];
    s.onTransition = (key, start, finish, stimulusId) => seen.push(`${key} ${start}->${finish} ${stimulusId}`);
    s.handle(compute('x'));
    s.handle(success('x', 42));
    expect(seen).toEqual(['x released->waiting compute-x', 'x waiting->ready compute-x', 'x ready->executing compute-x', 'x executing->memory ok-x']);
    expect(seen.map((l) => l.split(' ')[1])).toEqual(s.story('x').map((r) => `${r.start}->${r.finish}`));
    s.onTransition = undefined;
    s.handle(compute('y'));
    expect(seen).toHaveLength(4);
  });
});

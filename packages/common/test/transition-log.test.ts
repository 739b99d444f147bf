import { describe, expect, it } from 'vitest';
import { TransitionLog } from '../src/index.js';

describe('TransitionLog', () => {
  it('keeps the last `capacity` transitions, oldest first, and selects by key', () => {
    const log = new TransitionLog(3, ['a', 'b', 'c'] as const);
    log.push('k1', 'a', 'b', 's1', 1);
    log.push('k2', 'a', 'b', 's2', 2, 'w1');
    expect(log.select().map((r) => r.key)).toEqual(['k1', 'k2']);
    log.push('k1', 'b', 'c', 's3', 3);
    log.push('k3', 'a', 'c', 's4', 4);
    expect(log.size).toBe(3);
    expect(log.select()).toEqual([
      { key: 'k2', start: 'a', finish: 'b', stimulusId: 's2', timeMs: 2, worker: 'w1' },
      { key: 'k1', start: 'b', finish: 'c', stimulusId: 's3', timeMs: 3, worker: '' },
      { key: 'k3', start: 'a', finish: 'c', stimulusId: 's4', timeMs: 4, worker: '' },
    ]);
    expect(log.select(new Set(['k1', 'k3'])).map((r) => `${r.key}:${r.start}->${r.finish}`)).toEqual(['k1:b->c', 'k3:a->c']);
  });

  it('keysSince(mark) names the keys logged after the mark, within the capacity', () => {
    const log = new TransitionLog(3, ['a', 'b'] as const);
    log.push('k0', 'a', 'b', 's0', 0);
    const mark = log.pushed;
    expect(log.keysSince(mark)).toEqual(new Set());
    log.push('k1', 'a', 'b', 's1', 1);
    log.push('k2', 'a', 'b', 's2', 2);
    expect(log.keysSince(mark)).toEqual(new Set(['k1', 'k2']));
    for (let i = 3; i < 8; i++) log.push(`k${i}`, 'a', 'b', `s${i}`, i);
    expect(log.keysSince(mark)).toEqual(new Set(['k5', 'k6', 'k7']));
  });
});

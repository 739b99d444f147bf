import { describe, expect, it } from 'vitest';
import { compileAdaptiveOptions, decideAdaptive, type AdaptiveInput } from '../src/index.js';

// Level 1: the adaptive hysteresis as a pure function.
const base: AdaptiveInput = { target: 0, current: 0, workersToClose: [], minimum: 0, maximum: Infinity, waitCount: 3, closeCounts: new Map() };

describe('decideAdaptive', () => {
  it('scales up at once, clamped to maximum, and forgets pending closes', () => {
    const r = decideAdaptive({ ...base, target: 10, current: 2, maximum: 5, closeCounts: new Map([['w-1', 2]]) });
    expect(r.decision).toEqual({ type: 'up', target: 5 });
    expect(r.closeCounts.size).toBe(0);
  });

  it('brings the cluster up to minimum even with no work', () => {
    expect(decideAdaptive({ ...base, target: 0, current: 0, minimum: 2 }).decision).toEqual({ type: 'up', target: 2 });
  });

  it('holds when the target equals the current size', () => {
    const r = decideAdaptive({ ...base, target: 3, current: 3, closeCounts: new Map([['w-1', 1]]) });
    expect(r.decision).toEqual({ type: 'same', target: 3 });
    expect(r.closeCounts.size).toBe(0);
  });

  it('retires at most maxRetireFraction of the workers per round; the others go in the next rounds', () => {
    const names = Array.from({ length: 8 }, (_, i) => `w-${i}`);
    let r = decideAdaptive({ ...base, target: 0, current: 8, waitCount: 1, workersToClose: names, maxRetireFraction: 0.25 });
    expect(r.decision).toEqual({ type: 'down', target: 6, retire: ['w-0', 'w-1'] });
    r = decideAdaptive({ ...base, target: 0, current: 6, waitCount: 1, workersToClose: names.slice(2), maxRetireFraction: 0.25, closeCounts: r.closeCounts });
    expect(r.decision).toEqual({ type: 'down', target: 5, retire: ['w-2'] });
    // At least one per round, however small the share.
    expect(decideAdaptive({ ...base, target: 0, current: 2, waitCount: 1, workersToClose: ['a', 'b'], maxRetireFraction: 0.1 }).decision).toEqual({ type: 'down', target: 1, retire: ['a'] });
    expect(() => compileAdaptiveOptions({ maxRetireFraction: 0 })).toThrow(/maxRetireFraction/);
  });

  it('retires a worker only after waitCount consecutive recommendations', () => {
    let counts: ReadonlyMap<string, number> = new Map();
    const decisions = [];
    for (let i = 0; i < 3; i++) {
      const r = decideAdaptive({ ...base, target: 1, current: 3, workersToClose: ['w-2', 'w-1'], closeCounts: counts });
      counts = r.closeCounts;
      decisions.push(r.decision);
    }
    expect(decisions[0]).toEqual({ type: 'same', target: 1 });
    expect(decisions[1]).toEqual({ type: 'same', target: 1 });
    expect(decisions[2]).toEqual({ type: 'down', target: 1, retire: ['w-2', 'w-1'] });
    expect(counts.size).toBe(0);
  });

  it('restarts the count when a round does not agree (no flapping)', () => {
    let r = decideAdaptive({ ...base, target: 1, current: 2, workersToClose: ['w-1'] });
    r = decideAdaptive({ ...base, target: 1, current: 2, workersToClose: ['w-1'], closeCounts: r.closeCounts });
    expect(r.closeCounts.get('w-1')).toBe(2);
    r = decideAdaptive({ ...base, target: 2, current: 2, closeCounts: r.closeCounts }); // a burst
    expect(r.closeCounts.size).toBe(0);
    r = decideAdaptive({ ...base, target: 1, current: 2, workersToClose: ['w-1'], closeCounts: r.closeCounts });
    expect(r.decision.type).toBe('same');
    expect(r.closeCounts.get('w-1')).toBe(1);
  });

  it('counts per worker: a worker named in a different round starts from one', () => {
    let r = decideAdaptive({ ...base, target: 1, current: 2, workersToClose: ['w-1'], waitCount: 2 });
    r = decideAdaptive({ ...base, target: 1, current: 2, workersToClose: ['w-0'], waitCount: 2, closeCounts: r.closeCounts });
    expect(r.decision.type).toBe('same');
    expect([...r.closeCounts]).toEqual([['w-0', 1]]);
  });

  it('never retires below minimum, and only as many as the target allows', () => {
    const r = decideAdaptive({ ...base, target: 0, current: 4, minimum: 2, waitCount: 1, workersToClose: ['a', 'b', 'c', 'd'] });
    expect(r.decision).toEqual({ type: 'down', target: 2, retire: ['a', 'b'] });
  });

  it('holds when the scheduler names nobody (all workers busy or holding data)', () => {
    expect(decideAdaptive({ ...base, target: 1, current: 3, waitCount: 1 }).decision).toEqual({ type: 'same', target: 1 });
  });

  it('validates options', () => {
    expect(compileAdaptiveOptions({})).toEqual({ minimum: 0, maximum: Infinity, targetDurationMs: 5000, intervalMs: 1000, waitCount: 3, maxRetireFraction: 0.5 });
    expect(() => compileAdaptiveOptions({ minimum: 3, maximum: 2 })).toThrow(/maximum/);
    expect(() => compileAdaptiveOptions({ waitCount: 0 })).toThrow(/waitCount/);
  });
});

// Regressions found by the state machine simulation (packages/skein/test/simulation.test.ts),
// each reduced to the few events that show it.
import { describe, expect, it } from 'vitest';
import { A, B, compute, json, newState, success } from './helpers.js';

describe('WorkerState: findings of the simulation', () => {
  it('a task assigned while its key is fetched here as a copy runs with its inputs if the copy does not come', () => {
    const s = newState({ nthreads: 2 });
    s.handle({ type: 'AcquireReplicas', whoHas: new Map([['x', [A]]]), nbytes: new Map(), stimulusId: 'acquire' });
    expect(s.tasks.get('x')!.state).toBe('flight');
    // The scheduler then has x computed here (its input d is on B); the fetch goes on.
    expect(s.handle(compute('x', { dependencies: ['d'], whoHas: { d: [B] } }))).toEqual([]);
    // A had no copy after all: x runs here, which first needs d from B (not a run without it).
    const acts = s.handle({ type: 'GatherDepSuccess', worker: A, data: new Map(), missing: ['x'], stimulusId: 'g' });
    expect(acts.map((a) => a.type)).toEqual(['SendToScheduler', 'GatherDep']);
    expect(acts[1]).toMatchObject({ type: 'GatherDep', worker: B, keys: ['d'] });
    expect(s.tasks.get('x')!.state).toBe('waiting');
    const run = s.handle({ type: 'GatherDepSuccess', worker: B, data: new Map([['d', { encoding: 1, data: Buffer.from('1') }]]), missing: [], stimulusId: 'g2' });
    expect(run).toMatchObject([{ type: 'Execute', key: 'x', inputs: [['d', { encoding: 1 }]] }]);
  });

  it('a copy that does come answers the assignment, and what it would have needed is forgotten', () => {
    const s = newState({ nthreads: 2 });
    s.handle({ type: 'AcquireReplicas', whoHas: new Map([['x', [A]]]), nbytes: new Map(), stimulusId: 'acquire' });
    s.handle(compute('x', { dependencies: ['d'], whoHas: { d: [B] } }));
    const acts = s.handle({ type: 'GatherDepSuccess', worker: A, data: new Map([['x', { encoding: 1, data: Buffer.from('2') }]]), missing: [], stimulusId: 'g' });
    expect(acts.some((a) => a.type === 'Execute' || a.type === 'GatherDep')).toBe(false);
    expect(s.tasks.get('x')!.state).toBe('memory');
    expect(s.tasks.has('d')).toBe(false);
  });

  it('a task given back because one input went missing stays given back when its other input lands in the same transfer', () => {
    const s = newState();
    // y and x are fetched here as copies, from A in one transfer; then z, which needs both, is assigned here.
    s.handle({ type: 'AcquireReplicas', whoHas: new Map([['y', [A]], ['x', [A]]]), nbytes: new Map(), stimulusId: 'acquire' });
    expect(s.tasks.get('y')!.state).toBe('flight');
    s.handle(compute('z', { dependencies: ['y', 'x'], whoHas: { y: [A], x: [A] } }));
    expect(s.tasks.get('z')!.state).toBe('waiting');
    // A has x but no longer y: z goes back to the scheduler, and does not run here without its call.
    const acts = s.handle({ type: 'GatherDepSuccess', worker: A, data: new Map([['x', json('x')]]), missing: ['y'], stimulusId: 'g' });
    expect(acts.filter((a) => a.type === 'Execute')).toEqual([]);
    expect(acts).toContainEqual(expect.objectContaining({ type: 'SendToScheduler', message: expect.objectContaining({ type: 'Reschedule', key: 'z' }) }));
    expect(s.tasks.get('z')?.state ?? 'forgotten').toBe('forgotten');
    expect(s.tasks.get('x')!.state).toBe('memory');
  });

  it('a task whose run was cancelled while it ran, then needed here as an input, is fetched once the run ends', () => {
    const s = newState();
    expect(s.handle(compute('x')).map((a) => a.type)).toEqual(['Execute']);
    // The scheduler is lost: x can only be cancelled (it runs on); the scheduler has x computed
    // elsewhere meanwhile, then gives y, which needs x, to this worker.
    s.handle({ type: 'SchedulerLost', stimulusId: 'lost' });
    expect(s.tasks.get('x')!.state).toBe('cancelled');
    expect(s.handle(compute('y', { dependencies: ['x'], whoHas: { x: [A] } }))).toEqual([]);
    expect(s.tasks.get('y')!.state).toBe('waiting');
    // The cancelled run's end is no result here (it was never asked of this worker again): x comes from A.
    const fetch = s.handle(success('x', 'stale'));
    expect(fetch).toMatchObject([{ type: 'GatherDep', worker: A, keys: ['x'] }]);
    const run = s.handle({ type: 'GatherDepSuccess', worker: A, data: new Map([['x', json('x')]]), missing: [], stimulusId: 'g' });
    expect(run).toMatchObject([{ type: 'Execute', key: 'y', inputs: [['x', json('x')]] }]);
  });
});

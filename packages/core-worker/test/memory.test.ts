import { describe, expect, it } from 'vitest';
import { memoryDecision, type MemoryFractions } from '../src/state/memory.js';
import { isSpilled, type Encoded, type WorkerAction } from '../src/state/types.js';
import { compileWorkerOptions, parseMemoryFraction } from '../src/options.js';
import { parseWorkerArgs } from '../src/cli-main.js';
import { totalmem } from 'node:os';
import { compute, json, newState, success } from './helpers.js';

const F: MemoryFractions = { target: 0.6, spill: 0.7, pause: 0.8 };
const MB = 1e6;
const decide = (rss: number, managed: number, over: Partial<MemoryFractions> = {}, paused = false, limit = 100 * MB) =>
  memoryDecision({ rss, managed, limit, fractions: { ...F, ...over }, paused });

describe('memoryDecision', () => {
  it('does nothing below every threshold, and nothing at all without a limit', () => {
    expect(decide(50 * MB, 50 * MB)).toEqual({ spillBytes: 0, spillReason: undefined, paused: false, pauseChanged: false });
    expect(decide(500 * MB, 500 * MB, {}, false, 0)).toEqual({ spillBytes: 0, spillReason: undefined, paused: false, pauseChanged: false });
    // no limit while paused: unpause
    expect(decide(500 * MB, 0, {}, true, 0)).toMatchObject({ paused: false, pauseChanged: true });
  });

  it('target: spills managed memory down to the target', () => {
    expect(decide(65 * MB, 65 * MB)).toEqual({ spillBytes: 5 * MB, spillReason: 'target', paused: false, pauseChanged: false });
    expect(decide(65 * MB, 65 * MB, { target: false })).toMatchObject({ spillBytes: 0 });
  });

  it('spill: past it, spills until the process is below the target, at most what is managed', () => {
    expect(decide(75 * MB, 30 * MB)).toEqual({ spillBytes: 15 * MB, spillReason: 'spill', paused: false, pauseChanged: false });
    expect(decide(75 * MB, 10 * MB)).toMatchObject({ spillBytes: 10 * MB, spillReason: 'spill' });
    // without target: down to the spill threshold
    expect(decide(75 * MB, 30 * MB, { target: false })).toMatchObject({ spillBytes: 5 * MB, spillReason: 'spill' });
    // between target and spill: nothing (process memory is not the target's business)
    expect(decide(68 * MB, 30 * MB)).toMatchObject({ spillBytes: 0 });
    expect(decide(75 * MB, 30 * MB, { spill: false })).toMatchObject({ spillBytes: 0 });
    // nothing left to spill
    expect(decide(75 * MB, 0)).toMatchObject({ spillBytes: 0, spillReason: undefined });
    // the larger of the two wins
    expect(decide(72 * MB, 70 * MB)).toMatchObject({ spillBytes: 12 * MB, spillReason: 'spill' });
    expect(decide(71 * MB, 71 * MB, { target: 0.5, spill: 0.7 })).toMatchObject({ spillBytes: 21 * MB });
  });

  it('pause: above it pause, below it resume; false turns it off', () => {
    expect(decide(81 * MB, 0)).toMatchObject({ paused: true, pauseChanged: true });
    expect(decide(81 * MB, 0, {}, true)).toMatchObject({ paused: true, pauseChanged: false });
    expect(decide(79 * MB, 0, {}, true)).toMatchObject({ paused: false, pauseChanged: true });
    expect(decide(99 * MB, 0, { pause: false })).toMatchObject({ paused: false, pauseChanged: false });
  });
});

const bytes = (n: number, fill = 1): Encoded => ({ encoding: 3, data: Buffer.alloc(n, fill) });
const types = (acts: WorkerAction[]) => acts.map((a) => a.type);

describe('WorkerState: spilling', () => {
  function withResults(...sizes: number[]) {
    const s = newState({ nthreads: 4 });
    sizes.forEach((n, i) => {
      s.handle(compute(`k${i}`));
      s.handle({ ...success(`k${i}`), value: bytes(n) });
    });
    return s;
  }

  it('offers least recently used values first', () => {
    const s = withResults(10, 20, 30);
    expect(s.managedBytes).toBe(60);
    expect(s.spillCandidates(15).map(([k]) => k)).toEqual(['k0', 'k1']);
    expect(s.spillCandidates(1000).map(([k]) => k)).toEqual(['k0', 'k1', 'k2']);
    expect(s.spillCandidates(15, new Set(['k0'])).map(([k]) => k)).toEqual(['k1']);
    // using k0 as an input makes it the most recently used
    s.handle(compute('use', { dependencies: ['k0'] }));
    expect(s.spillCandidates(1000).map(([k]) => k)).toEqual(['k1', 'k2', 'k0']);
  });

  it('DataSpilled swaps the value for a marker; DataUnspilled brings it back', () => {
    const s = withResults(10, 20);
    const [[key, value]] = s.spillCandidates(1) as [[string, Encoded]];
    expect(s.handle({ type: 'DataSpilled', key, value, file: 'f1', stimulusId: 'spill-1' })).toEqual([]);
    expect(s.data.get('k0')).toEqual({ spilled: true, encoding: 3, nbytes: 10, file: 'f1' });
    expect([s.managedBytes, s.spilledBytes]).toEqual([20, 10]);
    expect(s.spillCandidates(1000).map(([k]) => k)).toEqual(['k1']);
    expect(s.held()).toEqual([expect.objectContaining({ key: 'k0', nbytes: 10 }), expect.objectContaining({ key: 'k1', nbytes: 20 })]);
    // a task that needs it gets the marker; the shell reads it back
    const acts = s.handle(compute('use', { dependencies: ['k0'] }));
    expect(acts).toEqual([expect.objectContaining({ type: 'Execute', key: 'use', inputs: [['k0', s.data.get('k0')]] })]);
    const back = bytes(10);
    expect(s.handle({ type: 'DataUnspilled', key: 'k0', value: back, file: 'f1', stimulusId: 'unspill-1' })).toEqual([
      { type: 'RemoveSpilled', files: ['f1'], stimulusId: 'unspill-1' },
    ]);
    expect(s.data.get('k0')).toBe(back);
    expect([s.managedBytes, s.spilledBytes]).toEqual([30, 0]);
    expect(s.spillCandidates(1000).map(([k]) => k)).toEqual(['k1', 'k0']);
    // a second read of the same file is ignored
    expect(s.handle({ type: 'DataUnspilled', key: 'k0', value: back, file: 'f1', stimulusId: 'unspill-2' })).toEqual([]);
  });

  it('a spilled copy of a freed or replaced value is removed', () => {
    const s = withResults(10);
    const old = s.data.get('k0') as Encoded;
    s.handle({ type: 'FreeKeys', keys: ['k0'], stimulusId: 'free' });
    expect(s.handle({ type: 'DataSpilled', key: 'k0', value: old, file: 'f1', stimulusId: 's' })).toEqual([{ type: 'RemoveSpilled', files: ['f1'], stimulusId: 's' }]);
    // recomputed: a different value object under the same key
    s.handle(compute('k0'));
    s.handle({ ...success('k0'), value: bytes(10) });
    expect(types(s.handle({ type: 'DataSpilled', key: 'k0', value: old, file: 'f2', stimulusId: 's2' }))).toEqual(['RemoveSpilled']);
    expect(isSpilled(s.data.get('k0'))).toBe(false);
    expect(s.managedBytes).toBe(10);
  });

  it('freeing a spilled key removes its file; a spilled key is not sent inline', () => {
    const s = withResults(10, 20);
    const v = s.data.get('k0') as Encoded;
    s.handle({ type: 'DataSpilled', key: 'k0', value: v, file: 'f1', stimulusId: 's' });
    // ComputeTask for a key in memory reports it, without the value when spilled
    const [fin] = s.handle(compute('k0'));
    expect(fin).toMatchObject({ type: 'SendToScheduler', message: { type: 'TaskFinished', key: 'k0', nbytes: 10, value: undefined } });
    const acts = s.handle({ type: 'FreeKeys', keys: ['k0'], stimulusId: 'free' });
    expect(acts).toContainEqual({ type: 'RemoveSpilled', files: ['f1'], stimulusId: 'free' });
    expect(acts).toContainEqual({ type: 'ReleaseData', keys: ['k0'], nbytes: 0, stimulusId: 'free' });
    expect([s.managedBytes, s.spilledBytes, s.data.size]).toEqual([20, 0, 1]);
    s.handle({ type: 'FreeKeys', keys: ['k1'], stimulusId: 'free2' });
    expect(s.spillCandidates(1000)).toEqual([]);
  });

  it('keeps data and spilled markers across a lost scheduler', () => {
    const s = withResults(10, 20);
    s.handle({ type: 'DataSpilled', key: 'k1', value: s.data.get('k1') as Encoded, file: 'f', stimulusId: 's' });
    s.handle({ type: 'SchedulerLost', stimulusId: 'lost' });
    expect(s.held().map((h) => [h.key, h.nbytes])).toEqual([
      ['k0', 10],
      ['k1', 20],
    ]);
  });

  it('pause stops new tasks, running ones finish, resume starts the rest', () => {
    const s = newState({ nthreads: 1 });
    s.handle(compute('a'));
    expect(s.executing.size).toBe(1);
    s.handle({ type: 'PauseChanged', paused: true, stimulusId: 'pause' });
    expect(types(s.handle(compute('b'), compute('c')))).toEqual([]);
    expect(types(s.handle(success('a')))).toEqual(['SendToScheduler']);
    expect(s.readyLength).toBe(2);
    const acts = s.handle({ type: 'PauseChanged', paused: false, stimulusId: 'unpause' });
    expect(acts).toEqual([expect.objectContaining({ type: 'Execute', key: 'b', stimulusId: 'unpause' })]);
  });

  it('survives a random walk of spills, unspills and frees with valid state', () => {
    let seed = 7;
    const rnd = (n: number) => {
      // mulberry32
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) % n;
    };
    const s = newState({ nthreads: 2 });
    let file = 0;
    let unspilled = 0;
    for (let step = 0; step < 2000; step++) {
      const k = `k${rnd(20)}`;
      const r = rnd(6);
      const ts = s.tasks.get(k);
      if (r === 0 && !ts) s.handle(compute(k));
      else if (r === 1) {
        const running = [...s.executing];
        const e = running[rnd(running.length + 1)];
        if (e) s.handle({ ...success(e), value: bytes(1 + rnd(50)) });
      }
      else if (r === 2) {
        const c = s.spillCandidates(1 + rnd(100));
        for (const [key, value] of c) s.handle({ type: 'DataSpilled', key, value, file: `f${++file}`, stimulusId: 's' });
      } else if (r === 3) {
        const v = s.data.get(k);
        if (isSpilled(v)) {
          s.handle({ type: 'DataUnspilled', key: k, value: bytes(v.nbytes), file: v.file, stimulusId: 'u' });
          unspilled++;
        }
      } else if (r === 4) s.handle({ type: 'FreeKeys', keys: [k], stimulusId: 'f' });
      else if (r === 5 && ts?.state === 'memory') s.handle(compute(`use-${step}`, { dependencies: [k] }));
    }
    s.validateState();
    expect(file).toBeGreaterThan(50);
    expect(unspilled).toBeGreaterThan(10);
  });
});

describe('memory options', () => {
  it('parses fractions and turns thresholds off', () => {
    expect(parseMemoryFraction(0.5, 'x')).toBe(0.5);
    expect(parseMemoryFraction('0.75', 'x')).toBe(0.75);
    expect(parseMemoryFraction('1', 'x')).toBe(1);
    for (const off of [false, 0, '0', 'false', 'FALSE', 'off']) expect(parseMemoryFraction(off, 'x')).toBe(false);
    for (const bad of [1.5, -0.1, 'abc', '', NaN, true]) expect(() => parseMemoryFraction(bad, '--memory-spill-fraction')).toThrow(/--memory-spill-fraction must be a fraction/);
  });

  it('compiles Dask defaults, options and environment variables', () => {
    const base = { scheduler: 'tcp://127.0.0.1:8786' };
    expect(compileWorkerOptions(base).memoryFractions).toEqual({ target: 0.6, spill: 0.7, pause: 0.8 });
    expect(compileWorkerOptions({ ...base, memoryTargetFraction: false, memorySpillFraction: 0.9, memoryPauseFraction: 0.95 }).memoryFractions).toEqual({
      target: false,
      spill: 0.9,
      pause: 0.95,
    });
    const env = process.env;
    try {
      process.env = { ...env, SKEIN_MEMORY_TARGET: 'false', SKEIN_MEMORY_SPILL: '0.5', SKEIN_MEMORY_PAUSE: '0' };
      expect(compileWorkerOptions(base).memoryFractions).toEqual({ target: false, spill: 0.5, pause: false });
      // an explicit option wins over the environment
      expect(compileWorkerOptions({ ...base, memorySpillFraction: 0.8 }).memoryFractions.spill).toBe(0.8);
      process.env.SKEIN_MEMORY_PAUSE = '2';
      expect(() => compileWorkerOptions(base)).toThrow(/SKEIN_MEMORY_PAUSE must be a fraction/);
    } finally {
      process.env = env;
    }
    expect(() => compileWorkerOptions({ ...base, memoryPauseFraction: 1.2 })).toThrow(/memoryPauseFraction must be a fraction/);
  });

  it('memory limit: sizes, fractions of the machine, auto and none', () => {
    const limit = (memoryLimit: string | number) => compileWorkerOptions({ scheduler: 'tcp://127.0.0.1:8786', memoryLimit }).memoryLimit;
    expect(limit('4GB')).toBe(4e9);
    expect(limit('512MiB')).toBe(512 * 2 ** 20);
    expect(limit('0.5')).toBe(Math.floor(totalmem() * 0.5));
    expect(limit(0.25)).toBe(Math.floor(totalmem() * 0.25));
    expect(limit('auto')).toBe(totalmem());
    expect(limit(0)).toBe(0);
    expect(limit('0')).toBe(0);
    expect(() => limit('lots')).toThrow(/Bad memory limit "lots"/);
  });

  it('CLI flags', () => {
    const o = parseWorkerArgs([
      'tcp://127.0.0.1:8786',
      '--memory-limit',
      '4GB',
      '--memory-target-fraction',
      'false',
      '--memory-spill-fraction',
      '0.65',
      '--memory-pause-fraction',
      '0',
      '--local-directory',
      '/tmp/x',
    ]);
    expect(o).toMatchObject({ memoryLimit: '4GB', memoryTargetFraction: false, memorySpillFraction: 0.65, memoryPauseFraction: false, localDirectory: '/tmp/x' });
    const d = parseWorkerArgs(['tcp://127.0.0.1:8786']);
    expect(d).toMatchObject({ memoryLimit: 'auto', memoryTargetFraction: undefined, memorySpillFraction: undefined, memoryPauseFraction: undefined });
    expect(() => parseWorkerArgs(['tcp://127.0.0.1:8786', '--memory-pause-fraction', '1.5'])).toThrow(/--memory-pause-fraction must be a fraction/);
  });
});

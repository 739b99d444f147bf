import { describe, expect, it } from 'vitest';
import type { WorkerAction, WorkerEvent } from '../src/state/types.js';
import { A, B, SELF, compute, failure, json, newState, success } from './helpers.js';

const kinds = (actions: WorkerAction[]) =>
  actions.map((a) =>
    a.type === 'SendToScheduler' ? `send:${a.message.type}:${'key' in a.message ? a.message.key : ''}` : a.type === 'Execute' ? `execute:${a.key}` : a.type === 'GatherDep' ? `gather:${a.worker}:${a.keys.join(',')}` : a.type === 'ReleaseData' ? `release:${a.keys.join(',')}` : `remove:${a.files.join(',')}`,
  );

describe('WorkerState: computing', () => {
  it('runs a task with no dependencies and reports it', () => {
    const s = newState();
    const a1 = s.handle(compute('x'));
    expect(a1).toEqual([{ type: 'Execute', key: 'x', call: expect.anything(), inputs: [], priority: 0, sequence: 1, stimulusId: 'compute-x' }]);
    expect(s.tasks.get('x')!.state).toBe('executing');
    const a2 = s.handle(success('x', 42));
    expect(a2).toHaveLength(1);
    expect(a2[0]).toMatchObject({
      type: 'SendToScheduler',
      stimulusId: 'ok-x',
      message: { type: 'TaskFinished', key: 'x', nbytes: 2, typeName: 'number', startMs: 1, stopMs: 2, value: json(42) },
    });
    expect(s.tasks.get('x')!.state).toBe('memory');
    expect(s.data.get('x')).toEqual(json(42));
    expect(s.managedBytes).toBe(2);
    expect(s.story('x').map((r) => `${r.start}->${r.finish}`)).toEqual(['released->waiting', 'waiting->ready', 'ready->executing', 'executing->memory']);
  });

  it('does not inline a large result', () => {
    const s = newState({ inlineBytes: 4 });
    s.handle(compute('x'));
    const [a] = s.handle(success('x', 'a long string'));
    expect(a).toMatchObject({ message: { type: 'TaskFinished', value: undefined, nbytes: 15 } });
    expect(s.data.has('x')).toBe(true);
  });

  it('limits execution to nthreads * pipelineDepth and orders by priority then sequence', () => {
    const s = newState({ nthreads: 1, pipelineDepth: 1 });
    const acts = s.handle(
      compute('a', { priority: 0, sequence: 1 }),
      compute('b', { priority: 0, sequence: 3 }),
      compute('c', { priority: 5, sequence: 4 }),
      compute('d', { priority: 0, sequence: 2 }),
    );
    // all four arrive in one batch: the best one runs first
    expect(kinds(acts)).toEqual(['execute:c']);
    expect(s.readyLength).toBe(3);
    expect(kinds(s.handle(success('c')))).toEqual(['send:TaskFinished:c', 'execute:a']);
    expect(kinds(s.handle(success('a')))).toEqual(['send:TaskFinished:a', 'execute:d']);
    expect(kinds(s.handle(success('d')))).toEqual(['send:TaskFinished:d', 'execute:b']);
  });

  it('pipelines several tasks per thread', () => {
    const s = newState({ nthreads: 2, pipelineDepth: 3 });
    const acts = s.handle(...Array.from({ length: 10 }, (_, i) => compute(`t${i}`, { sequence: i })));
    expect(acts.filter((a) => a.type === 'Execute')).toHaveLength(6);
    expect(s.executing.size).toBe(6);
    expect(s.readyLength).toBe(4);
  });

  it('reports errors', () => {
    const s = newState();
    s.handle(compute('x'));
    const acts = s.handle(failure('x'));
    expect(acts).toEqual([
      {
        type: 'SendToScheduler',
        stimulusId: 'fail-x',
        message: { type: 'TaskErred', key: 'x', error: expect.objectContaining({ message: 'boom' }), startMs: 1, stopMs: 2, stimulusId: 'fail-x' },
      },
    ]);
    expect(s.tasks.get('x')!.state).toBe('error');
    // The scheduler retries it here
    expect(kinds(s.handle(compute('x')))).toEqual(['execute:x']);
  });

  it('runs a dependent once its local dependency is in memory', () => {
    const s = newState();
    s.handle(compute('x'));
    s.handle(compute('y', { dependencies: ['x'] }));
    expect(s.tasks.get('y')!.state).toBe('waiting');
    const acts = s.handle(success('x', 7));
    expect(acts).toEqual([
      expect.objectContaining({ type: 'SendToScheduler' }),
      expect.objectContaining({ type: 'Execute', key: 'y', inputs: [['x', json(7)]], stimulusId: 'ok-x' }),
    ]);
  });

  it('uses inline inputs without fetching', () => {
    const s = newState();
    const acts = s.handle(compute('y', { dependencies: ['x'], inlineInputs: { x: json(3) } }));
    expect(acts).toEqual([expect.objectContaining({ type: 'Execute', key: 'y', inputs: [['x', json(3)]], stimulusId: 'compute-y' })]);
    s.handle(success('y'));
    // x was only an input: dropped once y is done
    expect(s.tasks.has('x')).toBe(false);
    expect(s.data.has('x')).toBe(false);
    expect(s.data.has('y')).toBe(true);
  });

  it('answers a ComputeTask for a key already in memory with task_finished', () => {
    const s = newState();
    s.handle(compute('x'));
    s.handle(success('x'));
    expect(kinds(s.handle(compute('x')))).toEqual(['send:TaskFinished:x']);
  });
});

describe('WorkerState: resources', () => {
  it('runs a task holding resources only when they are available', () => {
    const s = newState({ nthreads: 4, resources: { GPU: 1 } });
    const acts = s.handle(compute('g1', { resources: { GPU: 1 } }), compute('g2', { resources: { GPU: 1 } }), compute('c'));
    expect(kinds(acts)).toEqual(['execute:g1', 'execute:c']);
    expect(s.availableResources).toEqual(new Map([['GPU', 0]]));
    expect(kinds(s.handle(success('g1')))).toEqual(['send:TaskFinished:g1', 'execute:g2']);
    s.handle(success('g2'));
    expect(s.availableResources).toEqual(new Map([['GPU', 1]]));
  });

  it('fails a task that needs resources this worker does not have', () => {
    const s = newState({ resources: {} });
    const acts = s.handle(compute('g', { resources: { GPU: 1 } }));
    expect(acts).toHaveLength(1);
    expect(acts[0]).toMatchObject({ message: { type: 'TaskErred', key: 'g' } });
    expect((acts[0] as { message: { error: { message: string } } }).message.error.message).toMatch(/needs resources \{"GPU":1\}/);
  });
});

describe('WorkerState: fetching dependencies', () => {
  it('groups fetches per peer and executes when data arrives', () => {
    const s = newState();
    const acts = s.handle(
      compute('z', {
        dependencies: ['x', 'y', 'w'],
        whoHas: { x: [A], y: [A, B], w: [B] },
        nbytes: { x: 10, y: 20, w: 5 },
      }),
    );
    expect(acts).toEqual([
      { type: 'GatherDep', worker: A, keys: ['x', 'y'], totalNbytes: 30, stimulusId: 'compute-z' },
      { type: 'GatherDep', worker: B, keys: ['w'], totalNbytes: 5, stimulusId: 'compute-z' },
    ]);
    expect(s.tasks.get('x')!.state).toBe('flight');
    const a2 = s.handle({ type: 'GatherDepSuccess', worker: A, data: new Map([['x', json(1)], ['y', json(2)]]), missing: [], stimulusId: 'g1' });
    expect(a2).toEqual([]);
    const a3 = s.handle({ type: 'GatherDepSuccess', worker: B, data: new Map([['w', json(3)]]), missing: [], stimulusId: 'g2' });
    expect(kinds(a3)).toEqual(['execute:z']);
    expect((a3[0] as { inputs: unknown }).inputs).toEqual([['x', json(1)], ['y', json(2)], ['w', json(3)]]);
    s.handle(success('z'));
    expect([...s.data.keys()]).toEqual(['z']);
  });

  it('tries another holder when one does not have the key, and reports missing data', () => {
    const s = newState();
    s.handle(compute('z', { dependencies: ['x'], whoHas: { x: [A, B] } }));
    const acts = s.handle({ type: 'GatherDepSuccess', worker: A, data: new Map(), missing: ['x'], stimulusId: 'g' });
    expect(acts).toEqual([
      { type: 'SendToScheduler', stimulusId: 'g', message: { type: 'MissingData', key: 'x', worker: A, stimulusId: 'g' } },
      { type: 'GatherDep', worker: B, keys: ['x'], totalNbytes: 0, stimulusId: 'g' },
    ]);
  });

  it('reschedules the dependents when no holder is left', () => {
    const s = newState();
    s.handle(compute('z', { dependencies: ['x'], whoHas: { x: [A] } }));
    const acts = s.handle({ type: 'GatherDepFailure', worker: A, reason: 'refused', stimulusId: 'g' });
    expect(kinds(acts)).toEqual(['send:MissingData:x', 'send:Reschedule:z']);
    expect(s.tasks.size).toBe(0);
  });

  it('reschedules a task whose input has no holder at all', () => {
    const s = newState();
    expect(kinds(s.handle(compute('z', { dependencies: ['x'], whoHas: { x: [SELF] } })))).toEqual(['send:Reschedule:z']);
    expect(s.tasks.size).toBe(0);
  });

  it('a failed peer is dropped from the holders of other keys too', () => {
    const s = newState({ maxIncomingTransfers: 1, targetGatherBytes: 50, nthreads: 2 });
    s.handle(
      compute('z1', { dependencies: ['x'], whoHas: { x: [A] }, nbytes: { x: 100 } }),
      compute('z2', { dependencies: ['y'], whoHas: { y: [A, B] }, nbytes: { y: 100 } }),
    );
    // only one transfer at a time: x from A; y waits
    expect(s.tasks.get('y')!.state).toBe('fetch');
    const acts = s.handle({ type: 'GatherDepFailure', worker: A, reason: 'down', stimulusId: 'g' });
    expect(kinds(acts)).toEqual(['send:MissingData:x', 'send:Reschedule:z1', `gather:${B}:y`]);
    expect([...s.tasks.get('y')!.whoHas]).toEqual([B]);
  });

  it('shares one transfer between two tasks needing the same key', () => {
    const s = newState({ nthreads: 2 });
    const acts = s.handle(compute('p', { dependencies: ['x'], whoHas: { x: [A] } }), compute('q', { dependencies: ['x'], whoHas: { x: [A] } }));
    expect(kinds(acts)).toEqual(['gather:' + A + ':x']);
    const a2 = s.handle({ type: 'GatherDepSuccess', worker: A, data: new Map([['x', json(1)]]), missing: [], stimulusId: 'g' });
    expect(kinds(a2)).toEqual(['execute:p', 'execute:q']);
    s.handle(success('p'));
    expect(s.data.has('x')).toBe(true);
    s.handle(success('q'));
    expect(s.data.has('x')).toBe(false);
  });
});

describe('WorkerState: free, steal, replicas', () => {
  it('FreeKeys drops data and answers keys_released', () => {
    const s = newState();
    s.handle(compute('x'));
    s.handle(success('x'));
    const acts = s.handle({ type: 'FreeKeys', keys: ['x', 'unknown'], stimulusId: 'free' });
    expect(acts).toEqual([
      { type: 'SendToScheduler', stimulusId: 'free', message: { type: 'KeysReleased', keys: ['x'], stimulusId: 'free' } },
      { type: 'ReleaseData', keys: ['x'], nbytes: 1, stimulusId: 'free' },
    ]);
    expect(s.tasks.size).toBe(0);
    expect(s.managedBytes).toBe(0);
  });

  it('FreeKeys of an executing task cancels it; its late result is dropped', () => {
    const s = newState();
    s.handle(compute('x'), compute('y'));
    s.handle({ type: 'FreeKeys', keys: ['x'], stimulusId: 'free' });
    expect(s.tasks.get('x')!.state).toBe('cancelled');
    // the thread is still busy with x
    expect(s.executing.has('x')).toBe(true);
    const acts = s.handle(success('x'));
    expect(kinds(acts)).toEqual(['execute:y']);
    expect(s.tasks.has('x')).toBe(false);
  });

  it('a cancelled task that is computed again resumes', () => {
    const s = newState();
    s.handle(compute('x'));
    s.handle({ type: 'FreeKeys', keys: ['x'], stimulusId: 'free' });
    expect(s.handle(compute('x'))).toEqual([]);
    expect(s.tasks.get('x')!.state).toBe('executing');
    expect(kinds(s.handle(success('x')))).toEqual(['send:TaskFinished:x']);
  });

  it('FreeKeys of a waiting task cancels its transfer', () => {
    const s = newState();
    s.handle(compute('z', { dependencies: ['x'], whoHas: { x: [A] } }));
    s.handle({ type: 'FreeKeys', keys: ['z'], stimulusId: 'free' });
    expect(s.tasks.get('x')!.state).toBe('cancelled');
    expect(s.handle({ type: 'GatherDepSuccess', worker: A, data: new Map([['x', json(1)]]), missing: [], stimulusId: 'g' })).toEqual([]);
    expect(s.tasks.size).toBe(0);
  });

  it('StealRequest gives back a ready task but not an executing one', () => {
    const s = newState();
    s.handle(compute('a'), compute('b'));
    expect(kinds(s.handle({ type: 'StealRequest', key: 'b', stimulusId: 'steal' }))).toEqual(['send:StealResponse:b']);
    expect(s.tasks.has('b')).toBe(false);
    const acts = s.handle({ type: 'StealRequest', key: 'a', stimulusId: 'steal2' });
    expect(acts).toEqual([{ type: 'SendToScheduler', stimulusId: 'steal2', message: { type: 'StealResponse', key: 'a', state: 'executing', stimulusId: 'steal2' } }]);
    expect(s.tasks.get('a')!.state).toBe('executing');
  });

  it('a task the runtime took back before it started is ready again, and runs once a thread is free', () => {
    const s = newState({ nthreads: 1, pipelineDepth: 2 });
    expect(kinds(s.handle(compute('a', { sequence: 1 }), compute('b', { sequence: 2 })))).toEqual(['execute:a', 'execute:b']);
    expect(s.handle({ type: 'ExecutionRevoked', key: 'b', stimulusId: 'revoked' })).toEqual([
      { type: 'Execute', key: 'b', call: expect.anything(), inputs: [], priority: 0, sequence: 2, stimulusId: 'revoked' },
    ]);
    expect(s.story('b').map((r) => `${r.start}->${r.finish}`).slice(-2)).toEqual(['executing->ready', 'ready->executing']);
    // A revocation for a task that is not executing (finished meanwhile) changes nothing.
    s.handle(success('a'));
    expect(s.handle({ type: 'ExecutionRevoked', key: 'a', stimulusId: 'late' })).toEqual([]);
    expect(s.tasks.get('a')!.state).toBe('memory');
  });

  // Dask test_worker::test_stop_doing_unnecessary_work: a freed task that had not started never runs.
  it('FreeKeys after the runtime took an executing task back drops it without running it', () => {
    const s = newState({ nthreads: 1, pipelineDepth: 1, resources: { GPU: 1 } });
    s.handle(compute('x', { resources: { GPU: 1 } }), compute('y', { resources: { GPU: 1 } }));
    const acts = s.handle({ type: 'ExecutionRevoked', key: 'x', stimulusId: 'free' }, { type: 'FreeKeys', keys: ['x'], stimulusId: 'free' });
    // x is gone; its resources and slot went to y, and no late result is awaited
    expect(kinds(acts)).toEqual(['execute:y']);
    expect(s.tasks.has('x')).toBe(false);
    expect(s.executing.has('x')).toBe(false);
    expect(s.availableResources.get('GPU')).toBe(0);
  });

  it('a cancelled task the runtime took back is forgotten', () => {
    const s = newState();
    s.handle(compute('x'));
    s.handle({ type: 'FreeKeys', keys: ['x'], stimulusId: 'free' });
    expect(s.tasks.get('x')!.state).toBe('cancelled');
    expect(s.handle({ type: 'ExecutionRevoked', key: 'x', stimulusId: 'revoked' })).toEqual([]);
    expect(s.tasks.has('x')).toBe(false);
    expect(s.executing.size).toBe(0);
  });

  it('StealRequest after the runtime took an executing task back gives it to the scheduler', () => {
    const s = newState();
    s.handle(compute('a'), compute('b'));
    const acts = s.handle({ type: 'ExecutionRevoked', key: 'b', stimulusId: 'steal' }, { type: 'StealRequest', key: 'b', stimulusId: 'steal' });
    expect(acts).toEqual([{ type: 'SendToScheduler', stimulusId: 'steal', message: { type: 'StealResponse', key: 'b', state: 'ready', stimulusId: 'steal' } }]);
    expect(s.tasks.has('b')).toBe(false);
    expect(s.executing.has('b')).toBe(false);
  });

  it('AcquireReplicas fetches and reports add_keys; a held key is reported at once', () => {
    const s = newState();
    s.handle(compute('h'));
    s.handle(success('h'));
    const acts = s.handle({ type: 'AcquireReplicas', whoHas: new Map([['r', [A]], ['h', [B]]]), nbytes: new Map([['r', 8]]), stimulusId: 'acq' });
    expect(acts).toEqual([
      { type: 'SendToScheduler', stimulusId: 'acq', message: { type: 'AddKeys', keys: [{ key: 'h', workers: [SELF], nbytes: 1 }], stimulusId: 'acq' } },
      { type: 'GatherDep', worker: A, keys: ['r'], totalNbytes: 8, stimulusId: 'acq' },
    ]);
    const a2 = s.handle({ type: 'GatherDepSuccess', worker: A, data: new Map([['r', json('abc')]]), missing: [], stimulusId: 'g' });
    expect(a2).toEqual([{ type: 'SendToScheduler', stimulusId: 'g', message: { type: 'AddKeys', keys: [{ key: 'r', workers: [SELF], nbytes: 5 }], stimulusId: 'g' } }]);
    expect(s.tasks.get('r')!.state).toBe('memory');
  });

  it('a key being fetched and then assigned is reported as finished when it lands', () => {
    const s = newState();
    s.handle(compute('z', { dependencies: ['x'], whoHas: { x: [A] } }));
    s.handle(compute('x'));
    const acts = s.handle({ type: 'GatherDepSuccess', worker: A, data: new Map([['x', json(1)]]), missing: [], stimulusId: 'g' });
    expect(kinds(acts)).toEqual(['send:TaskFinished:x', 'execute:z']);
  });
});

describe('WorkerState: pause and scheduler loss', () => {
  it('pausing stops new executions', () => {
    const s = newState();
    s.handle({ type: 'PauseChanged', paused: true, stimulusId: 'p' });
    expect(s.handle(compute('x'))).toEqual([]);
    expect(kinds(s.handle({ type: 'PauseChanged', paused: false, stimulusId: 'u' }))).toEqual(['execute:x']);
  });

  it('SchedulerLost keeps data, drops everything else', () => {
    const s = newState({ nthreads: 1, pipelineDepth: 1 });
    s.handle(compute('m'));
    s.handle(success('m'));
    s.handle(compute('e'), compute('r'), compute('w', { dependencies: ['f'], whoHas: { f: [A] } }));
    s.handle({ type: 'SchedulerLost', stimulusId: 'lost' });
    expect([...s.tasks.keys()].sort()).toEqual(['e', 'f', 'm']);
    expect(s.tasks.get('e')!.state).toBe('cancelled');
    expect(s.tasks.get('f')!.state).toBe('cancelled');
    expect(s.held()).toEqual([{ key: 'm', workers: [SELF], nbytes: 1 }]);
    expect(s.handle(success('e'))).toEqual([]);
    expect(s.handle({ type: 'GatherDepFailure', worker: A, reason: 'x', stimulusId: 'g' })).toEqual([]);
    expect([...s.tasks.keys()]).toEqual(['m']);
  });
});

describe('WorkerState: log and validation', () => {
  it('keeps a bounded transition log', () => {
    const s = newState({ logLength: 5 });
    for (let i = 0; i < 10; i++) {
      s.handle(compute(`k${i}`));
      s.handle(success(`k${i}`));
    }
    const log = s.transitionLog();
    expect(log).toHaveLength(5);
    expect(log.at(-1)).toMatchObject({ key: 'k9', start: 'executing', finish: 'memory', stimulusId: 'ok-k9' });
  });

  it('validateState catches a broken invariant', () => {
    const s = newState();
    s.handle(compute('x'));
    s.handle(success('x'));
    s.data.delete('x');
    expect(() => s.validateState()).toThrow(/state memory but data absent/);
  });

  it.each(Array.from({ length: 24 }, (_, i) => i * 7919 + 1))('a random mix of events keeps the invariants (seed %i)', (seed) => {
    let rnd = seed;
    const rand = (n: number) => {
      rnd = (rnd * 1103515245 + 12345) % 2 ** 31;
      return rnd % n;
    };
    const s = newState({ nthreads: 2, pipelineDepth: 2, resources: { GPU: 1 } });
    const keys = Array.from({ length: 12 }, (_, i) => `k${i}`);
    const peers = [A, B];
    const seen = new Set<string>();
    const history: string[] = [];
    const orig = s.handle.bind(s);
    s.handle = (...evs) => {
      history.push(evs.map((e) => JSON.stringify(e, (k, v) => (k === 'call' || k === 'value' ? undefined : v instanceof Map ? [...v.keys()] : v))).join(' '));
      try {
        return orig(...evs);
      } catch (e) {
        const m = /(k\d+)/.exec((e as Error).message);
        if (process.env['DEBUG_STATE']) console.log(history.slice(-15).join('\n'), '\n', m ? JSON.stringify(s.story(m[1]!).slice(-12)) : '');
        throw e;
      }
    };
    for (let step = 0; step < 3000; step++) {
      for (const t of s.tasks.values()) seen.add(t.state);
      const key = keys[rand(keys.length)]!;
      const r = rand(10);
      if (r < 3) {
        const deps = keys.filter((k) => k !== key && rand(5) === 0).slice(0, 2);
        const whoHas = Object.fromEntries(deps.map((d) => [d, [peers[rand(2)]!]]));
        s.handle(compute(key, { dependencies: deps, whoHas, resources: rand(4) === 0 ? { GPU: 1 } : {} }));
      } else if (r < 5) {
        const running = [...s.executing];
        const k = running[rand(running.length + 1)];
        if (k) s.handle(rand(4) === 0 ? failure(k) : success(k));
      } else if (r < 7) {
        const peer = [...s.inFlight.keys()][0];
        if (peer) {
          const ks = [...s.inFlight.get(peer)!];
          if (rand(3) === 0) s.handle({ type: 'GatherDepFailure', worker: peer, reason: 'x', stimulusId: `f${step}` });
          else s.handle({ type: 'GatherDepSuccess', worker: peer, data: new Map(ks.map((k) => [k, json(1)])), missing: [], stimulusId: `g${step}` });
        }
      } else if (r < 9) {
        // As the shell does: an executing task that has not started (here: at random) is first
        // taken back from the threads, unless a freed one is still an input here.
        const freeing = r < 8;
        const t = s.tasks.get(key);
        const revoked: WorkerEvent[] =
          t?.state === 'executing' && !(freeing && t.dependents.size > 0) && rand(2) === 0 ? [{ type: 'ExecutionRevoked', key, stimulusId: `rev${step}` }] : [];
        if (freeing) s.handle(...revoked, { type: 'FreeKeys', keys: [key], stimulusId: `free${step}` });
        else s.handle(...revoked, { type: 'StealRequest', key, stimulusId: `steal${step}` });
      } else if (rand(20) === 0) {
        s.handle({ type: 'SchedulerLost', stimulusId: `lost${step}` });
      } else {
        s.handle({ type: 'AcquireReplicas', whoHas: new Map([[key, [peers[rand(2)]!]]]), nbytes: new Map(), stimulusId: `acq${step}` });
      }
    }
    s.validateState();
    // the walk visits most states a task can rest in
    for (const st of ['executing', 'fetch', 'flight', 'memory', 'waiting']) expect(seen).toContain(st);
    expect(seen.size).toBeGreaterThanOrEqual(6);
  });
});

describe('WorkerState: one task that cannot be set up', () => {
  it('errs alone: the other commands of the same message run, and later ones too', () => {
    const s = newState({ nthreads: 2 });
    // A ComputeTask whose holders list is not a list (a malformed command, or a bug in reading
    // one) in the middle of a message of root tasks.
    const bad = compute('bad', { dependencies: ['x'], whoHas: new Map([['x', 5 as unknown as string[]]]) });
    const acts = s.handle(compute('r1'), bad, compute('r2'), compute('r3'));
    expect(kinds(acts)).toEqual(['send:TaskErred:bad', 'execute:r1', 'execute:r2']);
    const erred = acts[0] as Extract<WorkerAction, { type: 'SendToScheduler' }>;
    expect(erred.message).toMatchObject({ type: 'TaskErred', key: 'bad', error: { code: 'internal', message: expect.stringMatching(/could not set up task bad: .*not iterable/) } });
    expect(s.tasks.get('bad')!.state).toBe('error');
    expect(s.tasks.has('x')).toBe(false);
    expect(kinds(s.handle(success('r1')))).toEqual(['send:TaskFinished:r1', 'execute:r3']);
    expect(kinds(s.handle(compute('later')))).toEqual([]);
    expect(kinds(s.handle(success('r2')))).toEqual(['send:TaskFinished:r2', 'execute:later']);
    // The scheduler frees the erred key as any other.
    s.handle({ type: 'FreeKeys', keys: ['bad'], stimulusId: 'free' });
    expect(s.tasks.has('bad')).toBe(false);
    s.validateState();
  });
});

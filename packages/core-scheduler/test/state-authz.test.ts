import { describe, expect, it } from 'vitest';
import { pureKeyToken } from '@skein/common/lite';
import { SchedulerState } from '../src/state/scheduler-state.js';
import type { SchedulerAction, SchedulerEvent, TaskDef } from '../src/state/types.js';
import { def, worker } from './helpers.js';

// Issue 14: a worker reports only on the tasks it was given. Reports about any other task (a
// forged result, an error, a copy nobody asked for, keys held "from before") reach no client and
// name no holder; the worker is told to drop the key and the shell logs the refusal.

const value = (n: number) => ({ encoding: 2, data: new Uint8Array([n]) });

class Harness {
  n = 0;
  state = new SchedulerState({ now: () => 0, validate: true, workerSaturation: 1.0, inlineBytes: 100, allowedFailures: 1 });
  handle(e: Record<string, unknown> & { type: SchedulerEvent['type'] }): SchedulerAction[] {
    return this.state.handle({ stimulusId: `s${this.n++}`, ...e } as SchedulerEvent);
  }
  submit(client: string, defs: TaskDef[], wanted: string[], broadcast: string[] = []) {
    return this.handle({ type: 'GraphUpdated', client, tasks: defs, wanted, broadcast });
  }
  finish(worker: string, key: string, v = 1, nbytes = 1) {
    return this.handle({ type: 'TaskFinished', worker, key, value: nbytes <= 100 ? value(v) : null, nbytes, typeName: 'number', startMs: 0, stopMs: 1 });
  }
  holders(key: string) {
    return this.state.tasks.get(key)?.whoHas.map((w) => w.address);
  }
}

const reports = (as: SchedulerAction[]) => as.filter((a) => a.type === 'ReportToClient');
const refused = (as: SchedulerAction[]) =>
  as.filter((a) => a.type === 'ReportRefused').map((a) => (a.type === 'ReportRefused' ? `${a.worker}:${a.report}:${a.key}` : ''));
const frees = (as: SchedulerAction[], w: string) => as.filter((a) => a.type === 'FreeKeys' && a.worker === w).flatMap((a) => (a.type === 'FreeKeys' ? a.keys : []));

describe('SchedulerState: a worker reports only on tasks it was given (issue 14)', () => {
  it('a result from a worker that was not given the task reaches no client and names no holder; the real one does', () => {
    const h = new Harness();
    h.handle({ type: 'WorkerAdded', worker: worker('real') });
    h.submit('c', [def('inc-100', [], { workers: ['real'] })], ['inc-100']);
    h.handle({ type: 'WorkerAdded', worker: worker('tcp://127.0.0.1:9') });
    let acts = h.finish('tcp://127.0.0.1:9', 'inc-100', 66);
    expect(reports(acts)).toEqual([]);
    expect(refused(acts)).toEqual(['tcp://127.0.0.1:9:TaskFinished:inc-100']);
    expect(frees(acts, 'tcp://127.0.0.1:9')).toEqual(['inc-100']);
    expect(h.state.tasks.get('inc-100')!.state).toBe('processing');
    // The same in a batch.
    acts = h.handle({
      type: 'TasksFinished',
      worker: 'tcp://127.0.0.1:9',
      tasks: [{ key: 'inc-100', value: value(66), nbytes: 1, typeName: 'number', startMs: 0, stopMs: 1 }],
    });
    expect(reports(acts)).toEqual([]);
    expect(refused(acts)).toEqual(['tcp://127.0.0.1:9:TaskFinished:inc-100']);
    acts = h.finish('real', 'inc-100', 101);
    expect(reports(acts)).toMatchObject([{ client: 'c', report: { type: 'in-memory', key: 'inc-100', value: value(101), workers: ['real'] } }]);
    // Once in memory, a non-holder's result adds no holder either.
    acts = h.finish('tcp://127.0.0.1:9', 'inc-100', 66, 1000);
    expect(refused(acts)).toEqual(['tcp://127.0.0.1:9:TaskFinished:inc-100']);
    expect(h.holders('inc-100')).toEqual(['real']);
    // A holder repeating its report is no news and no refusal.
    expect(refused(h.finish('real', 'inc-100', 101))).toEqual([]);
  });

  it('an error from a worker that was not given the task is refused: the task keeps running where it was sent', () => {
    const h = new Harness();
    h.handle({ type: 'WorkerAdded', worker: worker('real') });
    h.submit('c', [def('f-1', [], { workers: ['real'] })], ['f-1']);
    h.handle({ type: 'WorkerAdded', worker: worker('bogus') });
    const acts = h.handle({
      type: 'TaskErred', worker: 'bogus', key: 'f-1', startMs: 0, stopMs: 1,
      error: { type: 'Error', message: 'forged', stack: '', code: '', key: 'f-1', detailsJson: '' },
    });
    expect(reports(acts)).toEqual([]);
    expect(refused(acts)).toEqual(['bogus:TaskErred:f-1']);
    expect(h.state.tasks.get('f-1')!.processingOn?.address).toBe('real');
  });

  it('a task taken back from a worker (stolen) and finished there anyway is not taken from it', () => {
    const h = new Harness();
    h.handle({ type: 'WorkerAdded', worker: worker('A') });
    h.submit('c', [def('root-1')], ['root-1']);
    h.finish('A', 'root-1');
    // Tasks with an input are not queued on the scheduler: both go to A, and one waits there.
    h.submit('c', [def('x-1', ['root-1']), def('x-2', ['root-1'])], ['x-1', 'x-2']);
    const acts0 = h.handle({ type: 'WorkerAdded', worker: worker('B') });
    const steal = acts0.find((a) => a.type === 'StealRequest');
    expect(steal).toBeDefined();
    const { key, stimulusId } = steal as { key: string; stimulusId: string };
    h.handle({ type: 'StealResponse', worker: 'A', key, state: 'ready', stimulusId });
    expect(h.state.tasks.get(key)!.processingOn?.address).toBe('B');
    const acts = h.finish('A', key, 5);
    expect(reports(acts)).toEqual([]);
    expect(refused(acts)).toEqual([`A:TaskFinished:${key}`]);
    expect(reports(h.finish('B', key, 7))).toMatchObject([{ report: { type: 'in-memory', key, value: value(7), workers: ['B'] } }]);
  });

  it('a copy nobody asked for (AddKeys) is refused; one the scheduler asked for (retirement, broadcast) is taken', () => {
    const h = new Harness();
    h.handle({ type: 'WorkerAdded', worker: worker('w1') });
    h.submit('c', [def('big-1', [], { workers: ['w1'] }), def('data-1', [], { workers: ['w1'] })], ['big-1', 'data-1'], ['data-1']);
    h.handle({ type: 'WorkerAdded', worker: worker('w2') });
    h.finish('w1', 'big-1', 0, 1000);
    h.handle({ type: 'WorkerAdded', worker: worker('bogus') });
    let acts = h.handle({ type: 'ReplicasAdded', worker: 'bogus', keys: [{ key: 'big-1', workers: ['bogus'], nbytes: 1000 }] });
    expect(refused(acts)).toEqual(['bogus:ReplicasAdded:big-1']);
    expect(frees(acts, 'bogus')).toEqual(['big-1']);
    expect(h.holders('big-1')).toEqual(['w1']);
    // Broadcast: every running worker is asked for a copy, and its AddKeys is taken.
    acts = h.finish('w1', 'data-1', 0, 1000);
    expect(acts.filter((a) => a.type === 'AcquireReplicas').map((a) => a.worker).sort()).toEqual(['bogus', 'w2']);
    acts = h.handle({ type: 'ReplicasAdded', worker: 'w2', keys: [{ key: 'data-1', workers: ['w2'], nbytes: 1000 }] });
    expect(refused(acts)).toEqual([]);
    expect(h.holders('data-1')).toEqual(['w1', 'w2']);
    // Asked once, taken once: a second AddKeys of w2 is a holder repeating itself, no refusal.
    expect(refused(h.handle({ type: 'ReplicasAdded', worker: 'w2', keys: [{ key: 'data-1', workers: [], nbytes: 1000 }] }))).toEqual([]);
    // Retirement: w1's unique result is copied to a peer it names, whose AddKeys is taken.
    acts = h.handle({ type: 'RetireWorkers', workers: ['w1'], n: 0 });
    const acquire = acts.find((a): a is Extract<SchedulerAction, { type: 'AcquireReplicas' }> => a.type === 'AcquireReplicas' && a.whoHas.some((w) => w.key === 'big-1'));
    expect(acquire).toBeDefined();
    acts = h.handle({ type: 'ReplicasAdded', worker: acquire!.worker, keys: [{ key: 'big-1', workers: [], nbytes: 1000 }] });
    expect(refused(acts)).toEqual([]);
    expect(h.holders('big-1')).toContain(acquire!.worker);
  });

  it('keys a registering worker says it holds are not taken: it is told to drop them', () => {
    const h = new Harness();
    h.handle({ type: 'WorkerAdded', worker: worker('w1') });
    h.submit('c', [def('big-1')], ['big-1']);
    h.finish('w1', 'big-1', 0, 1000);
    const acts = h.handle({ type: 'WorkerAdded', worker: worker('bogus', { held: [{ key: 'big-1', workers: ['bogus'], nbytes: 1000 }] }) });
    expect(frees(acts, 'bogus')).toEqual(['big-1']);
    expect(h.holders('big-1')).toEqual(['w1']);
    expect(reports(acts)).toEqual([]);
  });
});

describe('SchedulerState: a pure key is shared only when it stands for its definition (issue 14, tenancy)', () => {
  const args = (n: number) => ({ encoding: 1, data: Buffer.from(`[${n}]`) });
  /** The pure key of calling inline function `hash` on [n] (JSON result), as a client computes it. */
  const pureKey = (hash: string, n: number) => `inc-${pureKeyToken(`inline:${hash}`, 'json', args(n).data)}`;
  const pureDef = (hash: string, n: number, deps: string[] = [], key = pureKey(hash, n)): TaskDef =>
    def(key, deps, { fn: { registered: '', inlineHash: hash }, args: args(n), resultEncoding: 1, pure: true });
  const erred = (as: SchedulerAction[]) =>
    reports(as).map((a) => (a.type === 'ReportToClient' && a.report.type === 'erred' ? `${a.client}:${a.report.key}:${a.report.error.code}` : `${a.type}`));

  it("another client's task under my pure key with another definition errs for me (already_exists) and is not mine; its owner is unaffected", () => {
    const h = new Harness();
    h.handle({ type: 'WorkerAdded', worker: worker('w1') });
    const k = pureKey('real', 100);
    // The squatter: same key, its own function, explicit (not pure).
    h.submit('mallory', [def(k, [], { fn: { registered: '', inlineHash: 'evil' }, args: args(100) })], [k]);
    h.finish('w1', k, 66);
    const acts = h.submit('alice', [pureDef('real', 100), def('use-1', [k])], [k, 'use-1']);
    expect(erred(acts).sort()).toEqual([`alice:${k}:already_exists`, 'alice:use-1:already_exists']);
    expect(reports(acts).some((a) => a.type === 'ReportToClient' && a.report.type === 'in-memory')).toBe(false);
    expect(h.state.tasks.get(k)!.wanters()).toEqual(['mallory']);
    // A later task of alice's on that key is refused too.
    expect(erred(h.submit('alice', [def('use-2', [k])], ['use-2']))).toEqual(['alice:use-2:already_exists']);
    // A pure key claimed with a definition it does not stand for is no better.
    const k2 = pureKey('real', 7);
    h.submit('mallory', [pureDef('evil', 7, [], k2)], [k2]);
    expect(erred(h.submit('alice', [pureDef('real', 7)], [k2]))).toEqual([`alice:${k2}:already_exists`]);
  });

  it('a pure key whose definition matches is shared, unless one of its inputs, transitively, is not pure', () => {
    const h = new Harness();
    h.handle({ type: 'WorkerAdded', worker: worker('w1') });
    const a = pureKey('f', 1);
    h.submit('bob', [pureDef('f', 1)], [a]);
    h.finish('w1', a, 2);
    expect(reports(h.submit('alice', [pureDef('f', 1)], [a]))).toMatchObject([{ client: 'alice', report: { type: 'in-memory', key: a } }]);
    // b is pure and matches, but its input x is an explicit key someone else defined.
    h.submit('mallory', [def('x-1')], ['x-1']);
    const b = pureKey('g', 2);
    h.submit('mallory', [pureDef('g', 2, ['x-1'])], [b]);
    expect(erred(h.submit('alice', [pureDef('g', 2, ['x-1'])], [b]))).toEqual([`alice:${b}:already_exists`]);
    // The same client resubmitting its own keys is never refused.
    expect(erred(h.submit('mallory', [pureDef('g', 2, ['x-1'])], [b]))).toEqual([]);
  });
});

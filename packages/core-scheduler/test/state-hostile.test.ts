/** Graph updates the state machine refuses whole (issue 14, hostile input). */
import { describe, expect, it } from 'vitest';
import { SchedulerState } from '../src/state/scheduler-state.js';
import type { SchedulerAction, SchedulerEvent, TaskDef } from '../src/state/types.js';
import { def, worker } from './helpers.js';

function harness(opts: { maxKeyLength?: number; maxKeysPerUpdate?: number } = {}) {
  const state = new SchedulerState({ now: () => 0, validate: true, ...opts });
  let n = 0;
  const handle = (e: Record<string, unknown> & { type: SchedulerEvent['type'] }): SchedulerAction[] =>
    state.handle({ stimulusId: `s${n++}`, ...e } as SchedulerEvent);
  handle({ type: 'WorkerAdded', worker: worker('w1') });
  const submit = (tasks: TaskDef[], wanted: string[], problem?: string) =>
    handle({ type: 'GraphUpdated', client: 'c', tasks, wanted, broadcast: [], ...(problem ? { problem } : {}) });
  return { state, submit };
}

/** The erred reports of the actions, as `key: message`. */
const erred = (acts: SchedulerAction[]) =>
  acts.flatMap((a) => (a.type === 'ReportToClient' && a.report.type === 'erred' ? [`${a.report.key}: ${a.report.error.message}`] : []));

/** Refused whole: every wanted key errs with an invalid_argument error, no task is added, nothing runs. */
function expectRefused(h: ReturnType<typeof harness>, acts: SchedulerAction[], wanted: string[], text: string) {
  const reports = acts.filter((a) => a.type === 'ReportToClient');
  expect(reports.map((a) => a.type === 'ReportToClient' && a.report.key)).toEqual(wanted);
  for (const a of reports) {
    if (a.type !== 'ReportToClient' || a.report.type !== 'erred') throw new Error(`not an erred report: ${JSON.stringify(a)}`);
    expect(a.report.error.code).toBe('invalid_argument');
    expect(a.report.error.message).toContain(text);
    expect(a.report.error.message).toContain('Nothing of this update was added');
  }
  expect(acts.filter((a) => a.type === 'Compute')).toEqual([]);
  expect(h.state.tasks.size).toBe(0);
  expect(h.state.counts.released + h.state.counts.processing).toBe(0);
}

describe('SchedulerState refuses malformed graph updates whole', () => {
  it('a key defined twice in one update (the first used to win silently)', () => {
    const h = harness();
    const acts = h.submit([def('a'), def('b', ['a']), def('a', [], { fn: { registered: 'other', inlineHash: '' } })], ['a', 'b']);
    expectRefused(h, acts, ['a', 'b'], 'key "a" is defined twice in one update');
    // A key known from an earlier update is not a duplicate: the first definition stays.
    h.submit([def('x')], ['x']);
    const again = h.submit([def('x'), def('y', ['x'])], ['y']);
    expect(erred(again)).toEqual([]);
    expect(h.state.tasks.get('y')?.dependencies.map((d) => d.key)).toEqual(['x']);
  });

  it('a task with no function', () => {
    const h = harness();
    const acts = h.submit([def('ok'), def('nofn', [], { fn: { registered: '', inlineHash: '' } })], ['ok', 'nofn']);
    expectRefused(h, acts, ['ok', 'nofn'], 'task "nofn" has no function');
  });

  it('a key over maxKeyLength, as a task or as a wanted key', () => {
    const h = harness({ maxKeyLength: 10 });
    const long = 'k'.repeat(11);
    expectRefused(h, h.submit([def('short'), def(long)], ['short']), ['short'], 'is 11 characters long, over the scheduler\'s limit of 10');
    expectRefused(h, h.submit([def('short')], ['short', long]), ['short', long], 'over the scheduler\'s limit of 10');
    expect(erred(h.submit([def('k'.repeat(10))], ['k'.repeat(10)]))).toEqual([]);
  });

  it('more tasks, or more wanted keys, than maxKeysPerUpdate', () => {
    const h = harness({ maxKeysPerUpdate: 3 });
    expectRefused(h, h.submit([def('a'), def('b'), def('c'), def('d')], ['a']), ['a'], 'more than the scheduler\'s limit of 3 keys per update');
    expectRefused(h, h.submit([], ['a', 'b', 'c', 'd']), ['a', 'b', 'c', 'd'], 'more than the scheduler\'s limit of 3 keys per update');
    expect(erred(h.submit([def('a'), def('b'), def('c')], ['a', 'b', 'c']))).toEqual([]);
  });

  it('a problem the shell found (a function source that does not match its hash)', () => {
    const h = harness();
    expectRefused(h, h.submit([def('a')], ['a'], 'the source of function f does not match its hash'), ['a'], 'does not match its hash');
  });

  it('a missing dependency fails only its task and its dependents (Dask cancels the lost keys), the rest runs', () => {
    const h = harness();
    const acts = h.submit([def('fine'), def('lost', ['nowhere']), def('after', ['lost'])], ['fine', 'lost', 'after']);
    expect(erred(acts).map((r) => r.split(':')[0])).toEqual(['lost', 'after']);
    expect(erred(acts)[0]).toContain('depends on "nowhere", which the scheduler does not know');
    expect(acts.filter((a) => a.type === 'Compute').map((a) => a.type === 'Compute' && a.key)).toEqual(['fine']);
  });
});

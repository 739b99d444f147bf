import { describe, expect, it } from 'vitest';
import { SchedulerState } from '../src/state/scheduler-state.js';
import { SchedulerTelemetry } from '../src/state/telemetry.js';
import { SchedulerDashboardSource } from '../src/server/dashboard-source.js';
import type { SchedulerEvent, TaskDef, TaskStateName } from '../src/state/types.js';
import { def, worker } from './helpers.js';

class Harness {
  now = 1_000;
  n = 0;
  state = new SchedulerState({ now: () => this.now, validate: true, workerSaturation: 1.0, inlineBytes: 100, allowedFailures: 1 });
  handle(e: Record<string, unknown> & { type: SchedulerEvent['type'] }) {
    return this.state.handle({ stimulusId: `s${this.n++}`, ...e } as SchedulerEvent);
  }
  addWorker(address: string, nthreads = 1) {
    return this.handle({ type: 'WorkerAdded', worker: worker(address, { nthreads }) });
  }
  submit(client: string, defs: TaskDef[], wanted: string[]) {
    return this.handle({ type: 'GraphUpdated', client, tasks: defs, wanted, broadcast: [] });
  }
  finish(worker: string, key: string, startMs = 10, stopMs = 20) {
    return this.handle({ type: 'TaskFinished', worker, key, value: { encoding: 2, data: new Uint8Array(8) }, nbytes: 8, typeName: 'number', startMs, stopMs });
  }
  err(worker: string, key: string) {
    return this.handle({
      type: 'TaskErred', worker, key, startMs: 30, stopMs: 31,
      error: { type: 'RangeError', message: 'no good', stack: 'at f', code: '', key, detailsJson: '' },
    });
  }
  /** Telemetry's live counts per group must equal the task records' states. */
  checkGroups() {
    const actual = new Map<string, Partial<Record<TaskStateName, number>>>();
    for (const ts of this.state.tasks.values()) {
      const m = actual.get(ts.group) ?? {};
      m[ts.state] = (m[ts.state] ?? 0) + 1;
      actual.set(ts.group, m);
    }
    for (const g of this.state.telemetry.groups.values()) {
      const { forgotten: _f, ...live } = g.states();
      const want = actual.get(g.name) ?? {};
      for (const [s, n] of Object.entries(live)) expect(n, `${g.name} ${s}`).toBe(want[s as TaskStateName] ?? 0);
    }
  }
}

describe('SchedulerTelemetry through SchedulerState', () => {
  it('counts tasks per group and state, completed runs, the task stream and errors', () => {
    const h = new Harness();
    h.addWorker('w1', 2);
    h.submit('c', [def('inc-1'), def('inc-2'), def('inc-3'), def('sum-1', ['inc-1', 'inc-2', 'inc-3'])], ['sum-1']);
    h.checkGroups();
    const t = h.state.telemetry;
    expect(t.groups.get('inc')!.states()).toMatchObject({ processing: 2, queued: 1, memory: 0 });
    expect(t.groups.get('sum')!.states()).toMatchObject({ waiting: 1 });

    h.finish('w1', 'inc-1', 100, 110);
    h.finish('w1', 'inc-2', 101, 115);
    h.finish('w1', 'inc-3', 112, 130);
    h.checkGroups();
    expect(t.groups.get('inc')!.states()).toMatchObject({ memory: 3, processing: 0 });
    h.finish('w1', 'sum-1', 131, 140);
    h.checkGroups();
    // The inputs are released once sum-1 is in memory (the dashboard shows them as done).
    expect(t.groups.get('inc')!.states()).toMatchObject({ memory: 0, released: 3 });
    expect(t.groups.get('sum')!.states()).toMatchObject({ memory: 1 });
    expect(t.tasksCompleted).toBe(4);
    expect(t.groups.get('inc')!.completed).toBe(3);

    const stream = t.streamSince(0, 100);
    expect(stream.runs.map((r) => [r.worker, r.key, r.group, r.startMs, r.stopMs, r.kind])).toEqual([
      ['w1', 'inc-1', 'inc', 100, 110, 'compute'],
      ['w1', 'inc-2', 'inc', 101, 115, 'compute'],
      ['w1', 'inc-3', 'inc', 112, 130, 'compute'],
      ['w1', 'sum-1', 'sum', 131, 140, 'compute'],
    ]);
    expect(t.streamSince(stream.cursor, 100).runs).toEqual([]);

    // An error: the failing task goes to the errors ring, its dependent only to the counters.
    h.submit('c', [def('bad-1'), def('after-1', ['bad-1'])], ['after-1']);
    h.now = 5_000;
    h.err('w1', 'bad-1');
    h.checkGroups();
    expect(t.tasksErred).toBe(2);
    expect(t.recentErrors()).toEqual([{ timeMs: 5_000, key: 'bad-1', group: 'bad', worker: 'w1', type: 'RangeError', message: 'no good' }]);
    const next = t.streamSince(stream.cursor, 100);
    expect(next.runs).toMatchObject([{ key: 'bad-1', kind: 'erred' }]);

    // Releasing everything: all forgotten, counts stay consistent.
    h.handle({ type: 'ClientReleasedKeys', client: 'c', keys: ['sum-1', 'after-1'] });
    h.checkGroups();
    expect(t.groups.get('sum')!.states()).toMatchObject({ memory: 0, forgotten: 1 });

    // A new computation in a finished group starts its bar over.
    h.submit('c', [def('inc-9')], ['inc-9']);
    expect(t.groups.get('inc')!.states()).toMatchObject({ forgotten: 0, processing: 1 });
    expect(t.groups.get('inc')!.completed).toBe(0);

    // ClusterRestarted forgets everything, also in telemetry.
    h.handle({ type: 'ClusterRestarted', reason: 'test' });
    h.checkGroups();
    expect(t.groups.get('inc')!.live).toBe(0);
  });

  it('adapts to the dashboard source shape', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c', [def('f-1')], ['f-1']);
    h.finish('w1', 'f-1');
    const source = new SchedulerDashboardSource({ state: h.state, address: 'tcp://127.0.0.1:1', clientCount: 1 });
    const snap = source.snapshot();
    expect(snap.workers).toMatchObject([{ address: 'w1', nthreads: 1, status: 'running', processing: 0 }]);
    expect(snap.tasksByState.memory).toBe(1);
    expect(snap.groups).toMatchObject([{ name: 'f', states: { memory: 1 }, completed: 1 }]);
    expect(snap.counters).toEqual({ tasksCompleted: 1, tasksErred: 0, transfers: 0, transferBytes: 0 });
    const slice = source.taskStream(0, 10);
    expect(slice.entries).toMatchObject([{ worker: 'w1', key: 'f-1', group: 'f', kind: 'compute' }]);
    expect(source.taskStream(slice.cursor, 10).entries).toEqual([]);
  });
});

describe('SchedulerTelemetry rings', () => {
  it('keeps the newest task runs, reports what it dropped, and returns the newest `max`', () => {
    const t = new SchedulerTelemetry({ streamCapacity: 4 });
    for (let i = 0; i < 10; i++) t.taskRan('w', `k-${i}`, 'k', i, i + 1, false);
    let s = t.streamSince(0, 100);
    expect(s.runs.map((r) => r.key)).toEqual(['k-6', 'k-7', 'k-8', 'k-9']);
    expect(s.dropped).toBe(6);
    expect(s.cursor).toBe(10);
    t.taskRan('w', 'k-10', 'k', 10, 11, false);
    s = t.streamSince(s.cursor, 100);
    expect(s.runs.map((r) => r.key)).toEqual(['k-10']);
    expect(s.dropped).toBe(0);
    s = t.streamSince(7, 2);
    expect(s.runs.map((r) => r.key)).toEqual(['k-9', 'k-10']);
    expect(s.dropped).toBe(2);
    // A cursor from the future (another scheduler) starts over.
    expect(t.streamSince(1_000, 1).runs.map((r) => r.key)).toEqual(['k-10']);
  });

  it('keeps the newest errors, oldest first', () => {
    const t = new SchedulerTelemetry({ errorCapacity: 3 });
    for (let i = 0; i < 5; i++) {
      t.taskErred(`e-${i}`, 'e', 'w', { type: 'Error', message: `m${i}`, stack: '', code: '', key: `e-${i}`, detailsJson: '' }, i);
    }
    expect(t.recentErrors().map((e) => e.key)).toEqual(['e-2', 'e-3', 'e-4']);
  });

  it('bounds the number of groups by dropping idle ones', () => {
    const t = new SchedulerTelemetry({ maxGroups: 3 });
    t.added('busy');
    for (let i = 0; i < 10; i++) {
      t.added(`g${i}`);
      t.transition(`g${i}`, 'released', 'forgotten');
    }
    expect(t.groups.size).toBeLessThanOrEqual(3);
    expect(t.groups.has('busy')).toBe(true);
    expect(t.groups.has('g9')).toBe(true);
  });
});

describe('transfers in the task stream', () => {
  it('records a transfer as a transfer bar and counts its bytes', async () => {
    const { SchedulerTelemetry } = await import('../src/state/telemetry.js');
    const t = new SchedulerTelemetry({ streamCapacity: 4 });
    t.taskRan('w1', 'a-1', 'a', 0, 1, false);
    t.transferred('w2', 'a-1', 'a', 1, 3, 1000);
    const { runs } = t.streamSince(0, 10);
    expect(runs.map((r) => r.kind)).toEqual(['compute', 'transfer']);
    expect(runs[1]).toMatchObject({ worker: 'w2', key: 'a-1', startMs: 1, stopMs: 3 });
    expect([t.transfers, t.transferBytes]).toEqual([1, 1000]);
  });
});

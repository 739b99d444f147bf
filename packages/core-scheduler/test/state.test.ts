import { describe, expect, it } from 'vitest';
import { SchedulerState } from '../src/state/scheduler-state.js';
import type { SchedulerAction, SchedulerEvent, TaskDef, WorkerSpec } from '../src/state/types.js';
import { def, worker } from './helpers.js';

const small = (n: number) => ({ encoding: 2, data: new Uint8Array(n) });

class Harness {
  now = 0;
  n = 0;
  state = new SchedulerState({ now: () => this.now, validate: true, workerSaturation: 1.0, inlineBytes: 100, allowedFailures: 1 });
  handle(e: Record<string, unknown> & { type: SchedulerEvent['type'] }): SchedulerAction[] {
    return this.state.handle({ stimulusId: `s${this.n++}`, ...e } as SchedulerEvent);
  }
  addWorker(address: string, extra: Partial<WorkerSpec> = {}) {
    return this.handle({ type: 'WorkerAdded', worker: worker(address, extra) });
  }
  submit(client: string, defs: TaskDef[], wanted: string[]) {
    return this.handle({ type: 'GraphUpdated', client, tasks: defs, wanted, broadcast: [] });
  }
  finish(worker: string, key: string, bytes = 8) {
    return this.handle({ type: 'TaskFinished', worker, key, value: bytes <= 100 ? small(bytes) : null, nbytes: bytes, typeName: 'number', startMs: 0, stopMs: 1 });
  }
  err(worker: string, key: string) {
    return this.handle({
      type: 'TaskErred', worker, key, startMs: 0, stopMs: 1,
      error: { type: 'TypeError', message: 'boom', stack: 'at f', code: '', key, detailsJson: '' },
    });
  }
  state_(key: string) {
    return this.state.tasks.get(key)?.state ?? 'forgotten';
  }
}

const computes = (as: SchedulerAction[]) => as.filter((a) => a.type === 'Compute').map((a) => `${a.worker}:${(a as { key: string }).key}`);
const reports = (as: SchedulerAction[]) =>
  as.filter((a) => a.type === 'ReportToClient').map((a) => (a.type === 'ReportToClient' ? `${a.client}:${a.report.type}:${a.report.key}` : ''));

describe('SchedulerState', () => {
  it('runs a dependency chain, inlines small inputs and frees intermediate data', () => {
    const h = new Harness();
    h.addWorker('w1');
    let acts = h.submit('c', [def('a-1'), def('b-1', ['a-1'])], ['b-1']);
    expect(computes(acts)).toEqual(['w1:a-1']);
    expect(h.state_('b-1')).toBe('waiting');
    acts = h.finish('w1', 'a-1', 8);
    const compute = acts.find((a) => a.type === 'Compute');
    expect(compute).toMatchObject({ worker: 'w1', key: 'b-1', whoHas: [] });
    expect(compute?.type === 'Compute' && compute.inlineInputs.map(([k]) => k)).toEqual(['a-1']);
    acts = h.finish('w1', 'b-1', 8);
    expect(reports(acts)).toEqual(['c:in-memory:b-1']);
    expect(acts).toContainEqual(expect.objectContaining({ type: 'FreeKeys', worker: 'w1', keys: ['a-1'] }));
    expect(h.state_('a-1')).toBe('released');
    expect(h.state.story(['b-1']).map((r) => `${r.start}->${r.finish}`)).toEqual([
      'released->waiting', 'waiting->processing', 'processing->memory',
    ]);
  });

  it('a TasksFinished batch ends in the same state and reports as one TaskFinished per task', () => {
    const run = (batched: boolean) => {
      const h = new Harness();
      h.addWorker('w1', { nthreads: 2 });
      h.addWorker('w2', { nthreads: 2 });
      const keys = Array.from({ length: 12 }, (_, i) => `m-${i}`);
      h.submit('c', [...keys.map((k) => def(k)), def('s-1', ['m-0', 'm-5'])], [...keys, 's-1']);
      const acts: SchedulerAction[] = [];
      for (let round = 0; round < 10; round++) {
        const byWorker = new Map<string, string[]>();
        for (const ws of h.state.workers.values()) byWorker.set(ws.address, [...ws.processing].map((t) => t.key).sort());
        for (const [w, ks] of byWorker) {
          if (ks.length === 0) continue;
          const done = ks.map((key) => ({ key, value: small(4), nbytes: 4, typeName: 'number', startMs: 0, stopMs: 1 }));
          if (batched) acts.push(...h.handle({ type: 'TasksFinished', worker: w, tasks: done }));
          else for (const d of done) acts.push(...h.handle({ type: 'TaskFinished', worker: w, ...d }));
        }
      }
      const states = [...keys, 's-1'].map((k) => `${k}:${h.state_(k)}`);
      return { states, reports: reports(acts).sort(), counts: { ...h.state.counts } };
    };
    const one = run(false);
    const many = run(true);
    expect(many.states).toEqual(one.states);
    expect(many.states.every((s) => s.endsWith(':memory'))).toBe(true);
    expect(many.reports).toEqual(one.reports);
    expect(many.reports).toHaveLength(13);
    expect(many.counts).toEqual(one.counts);
  });

  it('sends who_has for large inputs and prefers the worker holding them', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.addWorker('w2');
    h.submit('c', [def('big-1', [], { workers: ['w2'] })], ['big-1']);
    h.finish('w2', 'big-1', 10_000_000);
    const acts = h.submit('c', [def('use-1', ['big-1'])], ['use-1']);
    const c = acts.find((a) => a.type === 'Compute');
    expect(c).toMatchObject({ worker: 'w2', whoHas: [{ key: 'big-1', workers: ['w2'], nbytes: 10_000_000 }], inlineInputs: [] });
  });

  it('queues root tasks beyond the saturation of the workers', () => {
    const h = new Harness();
    h.addWorker('w1');
    const keys = Array.from({ length: 5 }, (_, i) => `t-${i}`);
    let acts = h.submit('c', keys.map((k) => def(k)), keys);
    expect(computes(acts)).toEqual(['w1:t-0']);
    expect(h.state.counts.queued).toBe(4);
    acts = h.handle({ type: 'TaskFinished', worker: 'w1', key: 't-0', value: small(1), nbytes: 1, typeName: 'n', startMs: 0, stopMs: 400 });
    expect(computes(acts)).toEqual(['w1:t-1']);
    const w2 = h.addWorker('w2');
    expect(computes(w2)).toEqual(['w2:t-2']);
  });

  it('holds tasks without a suitable worker in no-worker until one joins', () => {
    const h = new Harness();
    h.addWorker('cpu');
    h.submit('c', [def('gpu-1', [], { resources: new Map([['GPU', 1]]) })], ['gpu-1']);
    expect(h.state_('gpu-1')).toBe('no-worker');
    const acts = h.addWorker('gpu', { resources: new Map([['GPU', 2]]) });
    expect(computes(acts)).toEqual(['gpu:gpu-1']);
  });

  it('honours worker restrictions and allowOtherWorkers', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c', [def('r-1', [], { workers: ['nope'] })], ['r-1']);
    expect(h.state_('r-1')).toBe('no-worker');
    const acts = h.submit('c', [def('r-2', [], { workers: ['nope'], allowOtherWorkers: true })], ['r-2']);
    expect(computes(acts)).toEqual(['w1:r-2']);
  });

  it('fails a task whose registered function no worker has, with a clear message', () => {
    const h = new Harness();
    h.addWorker('w1', { registeredFunctions: ['inc'] });
    const acts = h.submit('c', [def('x-1', [], { fn: { registered: 'dec', inlineHash: '' } })], ['x-1']);
    const r = acts.find((a) => a.type === 'ReportToClient');
    expect(r?.type === 'ReportToClient' && r.report.type === 'erred' && r.report.error.message).toMatch(/No worker has a function registered as "dec"/);
  });

  it('reports errors with the remote stack and errs dependents with the same error', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c', [def('a-1'), def('b-1', ['a-1'])], ['b-1']);
    const acts = h.err('w1', 'a-1');
    expect(reports(acts)).toEqual(['c:erred:b-1']);
    const r = acts.find((a) => a.type === 'ReportToClient');
    expect(r?.type === 'ReportToClient' && r.report.type === 'erred' && r.report.error).toMatchObject({ message: 'boom', stack: 'at f', type: 'TypeError' });
    expect(h.state_('b-1')).toBe('erred');
  });

  it('retries a failing task `retries` times', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c', [def('f-1', [], { retries: 1 })], ['f-1']);
    let acts = h.err('w1', 'f-1');
    expect(computes(acts)).toEqual(['w1:f-1']);
    expect(reports(acts)).toEqual([]);
    acts = h.err('w1', 'f-1');
    expect(reports(acts)).toEqual(['c:erred:f-1']);
  });

  it('reruns the tasks of a dead worker elsewhere and recomputes results only it held', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.addWorker('w2');
    h.submit('c', [def('a-1', [], { workers: ['w1'], allowOtherWorkers: true })], ['a-1']);
    h.finish('w1', 'a-1', 1000); // not inline: only w1 holds it
    h.submit('c', [def('b-1', [], { workers: ['w1'], allowOtherWorkers: true })], ['b-1']);
    expect(h.state_('b-1')).toBe('processing');
    const acts = h.handle({ type: 'WorkerRemoved', worker: 'w1', expected: false, reason: 'killed' });
    expect(reports(acts)).toEqual(['c:lost:a-1']);
    expect(computes(acts).sort()).toEqual(['w2:a-1', 'w2:b-1']);
    expect(h.state.tasks.get('b-1')!.suspicious).toBe(1);
  });

  it('keeps small results on the scheduler when their only worker dies', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c', [def('a-1')], ['a-1']);
    h.finish('w1', 'a-1', 8);
    const acts = h.handle({ type: 'WorkerRemoved', worker: 'w1', expected: false, reason: 'killed' });
    expect(reports(acts)).toEqual([]);
    expect(h.state_('a-1')).toBe('memory');
  });

  it('fails a task with KilledWorker after more deaths than allowed', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c', [def('bad-1')], ['bad-1']);
    h.addWorker('w2');
    h.handle({ type: 'WorkerRemoved', worker: 'w1', expected: false, reason: 'memory past the limit' });
    expect(h.state_('bad-1')).toBe('processing');
    const acts = h.handle({ type: 'WorkerRemoved', worker: 'w2', expected: false, reason: 'memory past the limit' });
    const r = acts.find((a) => a.type === 'ReportToClient');
    expect(r?.type === 'ReportToClient' && r.report.type === 'erred' && r.report.error).toMatchObject({
      code: 'killed_worker',
      detailsJson: JSON.stringify({ key: 'bad-1', deaths: 2, reason: 'memory past the limit' }),
    });
  });

  it('releases and forgets keys no client wants', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c', [def('a-1')], ['a-1']);
    h.finish('w1', 'a-1');
    const acts = h.handle({ type: 'ClientReleasedKeys', client: 'c', keys: ['a-1'] });
    expect(acts).toContainEqual(expect.objectContaining({ type: 'FreeKeys', worker: 'w1', keys: ['a-1'] }));
    expect(h.state.tasks.has('a-1')).toBe(false);
  });

  it('keeps a key alive while another client wants it, and reports finished keys at once', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c1', [def('a-1')], ['a-1']);
    h.finish('w1', 'a-1');
    const acts = h.submit('c2', [def('a-1')], ['a-1']);
    expect(reports(acts)).toEqual(['c2:in-memory:a-1']);
    h.handle({ type: 'ClientDisconnected', client: 'c1' });
    expect(h.state_('a-1')).toBe('memory');
  });

  it('cancels: reports to the client and stops the work', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c', [def('slow-1')], ['slow-1']);
    const acts = h.handle({ type: 'ClientCancelledKeys', client: 'c', keys: ['slow-1'] });
    expect(reports(acts)).toEqual(['c:cancelled:slow-1']);
    expect(acts).toContainEqual(expect.objectContaining({ type: 'FreeKeys', worker: 'w1', keys: ['slow-1'] }));
    expect(h.state.tasks.has('slow-1')).toBe(false);
  });

  it('errs a task that depends on an unknown key with a message that says what to do', () => {
    const h = new Harness();
    h.addWorker('w1');
    const acts = h.submit('c', [def('b-1', ['ghost-1'])], ['b-1']);
    const r = acts.find((a) => a.type === 'ReportToClient');
    expect(r?.type === 'ReportToClient' && r.report.type === 'erred' && r.report.error.message).toMatch(/depends on "ghost-1"/);
  });

  it('retires a worker: copies its unique results to a peer, then closes it', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.addWorker('w2');
    h.submit('c', [def('big-1', [], { workers: ['w1'] })], ['big-1']);
    h.finish('w1', 'big-1', 1000);
    let acts = h.handle({ type: 'RetireWorkers', workers: ['w1'], n: 0 });
    expect(acts).toContainEqual(expect.objectContaining({ type: 'AcquireReplicas', worker: 'w2', whoHas: [{ key: 'big-1', workers: ['w1'], nbytes: 1000 }] }));
    expect(acts.some((a) => a.type === 'CloseWorker')).toBe(false);
    acts = h.handle({ type: 'ReplicasAdded', worker: 'w2', keys: [{ key: 'big-1', workers: [], nbytes: 1000 }] });
    expect(acts).toContainEqual(expect.objectContaining({ type: 'CloseWorker', worker: 'w1', reason: 'retired' }));
    acts = h.handle({ type: 'WorkerRemoved', worker: 'w1', expected: true, reason: 'retired' });
    expect(reports(acts)).toEqual([]);
    expect(h.state.tasks.get('big-1')!.whoHas.map((w) => w.address)).toEqual(['w2']);
  });

  it('steals not-started tasks for a new worker', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c', [def('root-1')], ['root-1']);
    h.finish('w1', 'root-1', 8);
    const keys = Array.from({ length: 30 }, (_, i) => `d-${i}`);
    h.submit('c', keys.map((k) => def(k, ['root-1'])), keys);
    expect(h.state.workers.get('w1')!.processing.size).toBe(30);
    let acts = h.addWorker('w2');
    const steals = acts.filter((a) => a.type === 'StealRequest');
    expect(steals.length).toBeGreaterThan(0);
    const { key, stimulusId } = steals[0] as { key: string; stimulusId: string };
    // The worker's reply carries the request's stimulus id.
    acts = h.handle({ type: 'StealResponse', worker: 'w1', key, state: 'ready', stimulusId });
    expect(computes(acts)).toEqual([`w2:${key}`]);
  });

  it('broadcasts scattered data to every worker', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.addWorker('w2');
    const acts0 = h.handle({ type: 'GraphUpdated', client: 'c', tasks: [def('data-1')], wanted: ['data-1'], broadcast: ['data-1'] });
    const w = computes(acts0)[0]!.split(':')[0]!;
    const acts = h.finish(w, 'data-1', 1000);
    expect(acts).toContainEqual(expect.objectContaining({ type: 'AcquireReplicas', worker: w === 'w1' ? 'w2' : 'w1' }));
  });

  it('removes a silent worker on Tick', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.now = 60_000;
    const acts = h.handle({ type: 'Tick' });
    expect(acts).toContainEqual(expect.objectContaining({ type: 'CloseWorker', worker: 'w1' }));
    expect(h.state.workers.size).toBe(0);
  });

  it('gives a paused worker no new tasks until it resumes', () => {
    const h = new Harness();
    h.addWorker('w1');
    const hb = (paused: boolean) =>
      h.handle({ type: 'Heartbeat', worker: 'w1', metrics: { executing: 0, ready: 0, memoryRss: 1, managedBytes: 1, spilledBytes: 0, cpuPercent: 0, paused } });
    hb(true);
    expect(h.state.workers.get('w1')!.status).toBe('paused');
    h.submit('c', [def('p-1')], ['p-1']);
    expect(h.state_('p-1')).toBe('no-worker');
    const acts = hb(false);
    expect(computes(acts)).toEqual(['w1:p-1']);
    expect(h.state.workers.get('w1')!.history).toHaveLength(2);
  });

  it('recommends workers for the load and names idle ones to close', () => {
    const h = new Harness();
    expect(h.state.adaptiveTarget().target).toBe(0);
    const keys = Array.from({ length: 40 }, (_, i) => `slow-${i}`);
    h.submit('c', keys.map((k) => def(k)), keys);
    // No workers yet, durations unknown (0.5 s assumed, as in Dask): 40 × 0.5 s within 5 s.
    expect(h.state.adaptiveTarget()).toMatchObject({ target: 4, current: 0 });
    // Within a long target duration a single worker is still required.
    expect(h.state.adaptiveTarget(3_600_000)).toMatchObject({ target: 1 });
    h.addWorker('w1');
    h.handle({ type: 'TaskFinished', worker: 'w1', key: 'slow-0', value: small(1), nbytes: 1, typeName: 'n', startMs: 0, stopMs: 1000 });
    // 39 tasks of ~1 s each, to finish within 5 s on 1-thread workers: 8 workers.
    expect(h.state.adaptiveTarget(5_000)).toMatchObject({ target: 8, current: 1, reason: 'cpu' });
    h.handle({ type: 'ClientReleasedKeys', client: 'c', keys });
    h.addWorker('w2');
    const t = h.state.adaptiveTarget();
    expect(t.target).toBe(0);
    expect(t.workersToClose.sort()).toEqual(['w1', 'w2']);
  });

  it('keeps a compact record: arguments copied out of the wire buffer, shared function and group, and gives them back for Compute', () => {
    const h = new Harness();
    const wire = new Uint8Array([0, 0, 91, 49, 44, 50, 93, 0, 0]); // "[1,2]" inside a bigger buffer
    const args = { encoding: 1, data: wire.subarray(2, 7) };
    h.submit('c', [def('f-1', [], { args }), def('f-2', [], { args: { encoding: 1, data: new Uint8Array([91, 93]) } })], ['f-1', 'f-2']);
    const [a, b] = [h.state.tasks.get('f-1')!, h.state.tasks.get('f-2')!];
    expect(a.fn).toBe(b.fn);
    expect(a.group).toBe('f');
    expect(a.group).toBe(b.group);
    expect(a.dependencies).toHaveLength(0);
    expect(a.dependents).toHaveLength(0);
    wire.fill(0); // the client's buffer is reused: the record must not see it
    const acts = h.addWorker('w1');
    const compute = acts.find((x) => x.type === 'Compute' && x.key === 'f-1');
    expect(compute?.type === 'Compute' && Buffer.from(compute.def.args.data).toString()).toBe('[1,2]');
    expect(compute?.type === 'Compute' && compute.def.args.encoding).toBe(1);
    // A large argument is copied too (not a view).
    const big = new Uint8Array(10_000).fill(7);
    h.submit('c', [def('g-1', [], { args: { encoding: 2, data: big } })], ['g-1']);
    big.fill(0);
    const acts2 = h.finish('w1', 'f-1');
    const c2 = acts2.find((x) => x.type === 'Compute' && x.key === 'g-1') ?? h.finish('w1', 'f-2').find((x) => x.type === 'Compute' && x.key === 'g-1');
    expect(c2?.type === 'Compute' && c2.def.args.data.every((v) => v === 7)).toBe(true);
  });

  it('links a graph whose tasks come before their inputs in the same update', () => {
    const h = new Harness();
    h.addWorker('w1');
    const acts = h.submit('c', [def('b-1', ['a-1']), def('a-1')], ['b-1']);
    expect(computes(acts)).toEqual(['w1:a-1']);
    expect(h.state.tasks.get('b-1')!.dependencies.map((d) => d.key)).toEqual(['a-1']);
    expect(computes(h.finish('w1', 'a-1'))).toEqual(['w1:b-1']);
  });

  it('tracks one wanting client without a set, and several with one, reporting to each', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c1', [def('k-1')], ['k-1']);
    expect(h.state.tasks.get('k-1')!.whoWants).toBe('c1');
    h.submit('c2', [def('k-1')], ['k-1']);
    h.submit('c3', [def('k-1')], ['k-1']);
    expect(reports(h.finish('w1', 'k-1')).sort()).toEqual(['c1:in-memory:k-1', 'c2:in-memory:k-1', 'c3:in-memory:k-1']);
    h.handle({ type: 'ClientReleasedKeys', client: 'c2', keys: ['k-1'] });
    h.handle({ type: 'ClientReleasedKeys', client: 'c1', keys: ['k-1'] });
    expect(h.state.tasks.get('k-1')!.whoWants).toBe('c3');
    h.handle({ type: 'ClientReleasedKeys', client: 'c3', keys: ['k-1'] });
    expect(h.state_('k-1')).toBe('forgotten');
  });
});

// Keys, worker names and resource names are user data (issue 11, item 13).
describe('SchedulerState: names like Object.prototype members', () => {
  const NAMES = ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__', 'isPrototypeOf', '__defineGetter__', 'propertyIsEnumerable'];

  it.each([
    ['inline', 8],
    ['held by a worker', 100_000],
  ])('computes such keys as dependencies (%s values) and reports them', (_, bytes) => {
    const h = new Harness();
    h.addWorker('w1', { name: '__proto__', nthreads: 16, resources: new Map([['constructor', 1], ['__proto__', 1]]) });
    const deps = NAMES.map((k) => def(k, [], { workers: ['__proto__'] }));
    const uses = NAMES.map((k) => def(`use-${k}`, [k], { resources: new Map([['constructor', 1], ['__proto__', 1]]) }));
    let acts = h.submit('c', [...deps, ...uses], [...NAMES, ...uses.map((u) => u.key)]);
    expect(computes(acts)).toEqual(NAMES.map((k) => `w1:${k}`));
    for (const k of NAMES) {
      acts = h.finish('w1', k, bytes);
      const c = acts.find((a) => a.type === 'Compute');
      expect(c).toMatchObject({ worker: 'w1', key: `use-${k}` });
      if (c?.type !== 'Compute') throw new Error('no Compute');
      if (bytes <= 100) expect(c.inlineInputs.map(([key]) => key)).toEqual([k]);
      else expect(c.whoHas).toEqual([{ key: k, workers: ['w1'], nbytes: bytes }]);
      expect(reports(acts)).toEqual([`c:in-memory:${k}`]);
      acts = h.finish('w1', `use-${k}`);
      expect(reports(acts)).toEqual([`c:in-memory:use-${k}`]);
    }
    for (const k of NAMES) expect(h.state_(k)).toBe('memory');
    h.state.validateState();
  });

  it('places a task needing a resource only on a worker that has it, whatever its name', () => {
    const h = new Harness();
    h.addWorker('w1', { resources: new Map([['toString', 1]]) });
    h.submit('c', [def('needs-ctor', [], { resources: new Map([['constructor', 1]]) }), def('needs-proto', [], { resources: new Map([['__proto__', 1]]) })], ['needs-ctor', 'needs-proto']);
    // w1 has neither (its resources inherit nothing): both wait for a worker that has them.
    expect(h.state_('needs-ctor')).toBe('no-worker');
    expect(h.state_('needs-proto')).toBe('no-worker');
    const acts = h.addWorker('w2', { nthreads: 2, resources: new Map([['constructor', 1], ['__proto__', 1]]) });
    expect(computes(acts).sort()).toEqual(['w2:needs-ctor', 'w2:needs-proto']);
  });
});

const reportsOf = (as: SchedulerAction[]) => as.flatMap((a) => (a.type === 'ReportToClient' ? [{ client: a.client, ...a.report }] : []));

describe('SchedulerState: cancel, restart, retire and bad graphs (issue 11)', () => {
  it('cancelling a key acknowledges every key named and cancels its dependents for every client, transitively', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.addWorker('w2');
    h.submit('c1', [def('x-1'), def('y-1', ['x-1']), def('z-1', ['y-1'])], ['x-1', 'y-1']);
    h.submit('c2', [def('z-1', ['y-1'])], ['z-1']);
    const acts = h.handle({ type: 'ClientCancelledKeys', client: 'c1', keys: ['x-1', 'ghost-1'] });
    expect(reportsOf(acts).map((r) => `${r.client}:${r.type}:${r.key}:${r.type === 'cancelled' ? r.reason : ''}`).sort()).toEqual([
      'c1:cancelled:ghost-1:cancelled by the client',
      'c1:cancelled:x-1:cancelled by the client',
      'c1:cancelled:y-1:its input x-1 was cancelled',
      'c2:cancelled:z-1:its input y-1 was cancelled',
    ]);
    expect(acts).toContainEqual(expect.objectContaining({ type: 'FreeKeys', keys: ['x-1'] }));
    expect(h.state.tasks.size).toBe(0);
    expect(h.state.clients.get('c2')!.size).toBe(0);
  });

  it('cancelling a key another client still wants only drops this client (and cancels no dependent)', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c1', [def('x-1'), def('y-1', ['x-1'])], ['x-1', 'y-1']);
    h.submit('c2', [def('x-1')], ['x-1']);
    const acts = h.handle({ type: 'ClientCancelledKeys', client: 'c1', keys: ['x-1'] });
    expect(reports(acts)).toEqual(['c1:cancelled:x-1']);
    expect(h.state_('y-1')).toBe('waiting');
    expect(h.state.tasks.get('x-1')!.wanters()).toEqual(['c2']);
  });

  it('cancelling a dependent and its input in one message reports each to the client once', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c', [def('x-1'), def('y-1', ['x-1'])], ['x-1', 'y-1']);
    const acts = h.handle({ type: 'ClientCancelledKeys', client: 'c', keys: ['x-1', 'y-1'] });
    expect(reports(acts).sort()).toEqual(['c:cancelled:x-1', 'c:cancelled:y-1']);
    expect(h.state.tasks.size).toBe(0);
  });

  it('a key cancelled while running and resubmitted at once runs again, and the old run may finish it', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.submit('c', [def('k-1')], ['k-1']);
    h.handle({ type: 'ClientCancelledKeys', client: 'c', keys: ['k-1'] });
    expect(h.state_('k-1')).toBe('forgotten');
    expect(computes(h.submit('c', [def('k-1')], ['k-1']))).toEqual(['w1:k-1']);
    expect(reports(h.finish('w1', 'k-1'))).toEqual(['c:in-memory:k-1']);
  });

  it('refuses dependency cycles and self-dependencies at submit, naming the cycle; nothing is left behind', () => {
    const h = new Harness();
    h.addWorker('w1');
    let acts = h.submit('c', [def('ok-1'), def('a-1', ['b-1', 'ok-1']), def('b-1', ['c-1']), def('c-1', ['a-1']), def('down-1', ['a-1', 'ok-1'])], ['a-1', 'down-1', 'ok-1']);
    const erred = reportsOf(acts).filter((r) => r.type === 'erred');
    expect(erred.map((r) => r.key).sort()).toEqual(['a-1', 'down-1']);
    for (const r of erred) {
      expect(r.type === 'erred' && r.error.type).toBe('InvalidArgumentError');
      expect(r.type === 'erred' && r.error.message).toMatch(/"a-1" -> "b-1" -> "c-1" -> "a-1"|"b-1" -> "c-1" -> "a-1" -> "b-1"|"c-1" -> "a-1" -> "b-1" -> "c-1"/);
    }
    expect(computes(acts)).toEqual(['w1:ok-1']);
    acts = h.submit('c', [def('self-1', ['self-1'])], ['self-1']);
    const self = reportsOf(acts).find((r) => r.key === 'self-1');
    expect(self?.type === 'erred' && self.error.message).toMatch(/task "self-1" depends on itself/);
    h.finish('w1', 'ok-1');
    h.handle({ type: 'ClientReleasedKeys', client: 'c', keys: ['a-1', 'down-1', 'ok-1', 'self-1'] });
    expect(h.state.tasks.size).toBe(0);
  });

  it('refuses a NaN, negative or infinite resource quantity at submit', () => {
    const h = new Harness();
    h.addWorker('w1', { resources: new Map([['GPU', 2]]) });
    for (const [key, q] of [['nan-1', NaN], ['neg-1', -1], ['inf-1', Infinity]] as const) {
      const acts = h.submit('c', [def(key, [], { resources: new Map([['GPU', q]]) })], [key]);
      const r = reportsOf(acts).find((x) => x.key === key);
      expect(r?.type === 'erred' && r.error.type).toBe('InvalidArgumentError');
      expect(r?.type === 'erred' && r.error.message).toMatch(/resource "GPU"/);
    }
  });

  it('reports a task no running worker can run as no-worker at once, and resolved when a suitable worker joins', () => {
    const h = new Harness();
    h.addWorker('w1');
    let acts = h.submit('c', [def('r-1', [], { workers: ['gpu-box'] }), def('g-1', [], { resources: new Map([['GPU', 1]]) })], ['r-1', 'g-1']);
    const nw = reportsOf(acts).filter((r) => r.type === 'no-worker');
    expect(nw.map((r) => r.key).sort()).toEqual(['g-1', 'r-1']);
    expect(nw.find((r) => r.key === 'r-1')).toMatchObject({ resolved: false, reason: expect.stringMatching(/gpu-box/) });
    expect(nw.find((r) => r.key === 'g-1')).toMatchObject({ reason: expect.stringMatching(/GPU/) });
    // A client that asks later is told too.
    acts = h.submit('c2', [def('r-1', [], { workers: ['gpu-box'] })], ['r-1']);
    expect(reports(acts)).toEqual(['c2:no-worker:r-1']);
    acts = h.addWorker('w2', { name: 'gpu-box' });
    expect(computes(acts)).toEqual(['w2:r-1']);
    expect(reportsOf(acts).filter((r) => r.type === 'no-worker').map((r) => `${r.client}:${r.key}:${r.type === 'no-worker' && r.resolved}`).sort()).toEqual([
      'c2:r-1:true',
      'c:r-1:true',
    ]);
    expect(h.state_('g-1')).toBe('no-worker');
  });

  it('noWorkersTimeoutMs: an unrunnable task fails with NoValidWorkerError, a queued one with NoWorkerError', () => {
    const h = new Harness();
    h.state = new SchedulerState({ now: () => h.now, validate: true, workerSaturation: 1.0, noWorkersTimeoutMs: 1000 });
    h.addWorker('w1');
    h.submit('c', [def('r-1', [], { workers: ['nope'] })], ['r-1']);
    h.now = 600;
    h.addWorker('w2'); // not suitable either: the wait is counted from the first time
    h.now = 1000;
    expect(reports(h.handle({ type: 'Tick' }))).toEqual([]);
    h.now = 1001;
    let r = reportsOf(h.handle({ type: 'Tick' }));
    expect(r).toHaveLength(1);
    expect(r[0]).toMatchObject({ type: 'erred', key: 'r-1', error: { type: 'NoValidWorkerError', message: expect.stringMatching(/"nope".*1000 ms/) } });

    const h2 = new Harness();
    h2.state = new SchedulerState({ now: () => h2.now, validate: true, workerSaturation: 1.0, noWorkersTimeoutMs: 1000 });
    h2.submit('c', [def('q-1')], ['q-1']);
    h2.handle({ type: 'Tick' });
    h2.now = 900;
    expect(reports(h2.handle({ type: 'Tick' }))).toEqual([]);
    h2.now = 1001;
    r = reportsOf(h2.handle({ type: 'Tick' }));
    expect(r).toMatchObject([{ type: 'erred', key: 'q-1', error: { type: 'NoWorkerError' } }]);
  });

  it('retiring a worker tells the clients that want its results where they are now', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.addWorker('w2');
    h.submit('c', [def('big-1', [], { workers: ['w1'] })], ['big-1']);
    h.finish('w1', 'big-1', 1000);
    h.handle({ type: 'RetireWorkers', workers: ['w1'], n: 0 });
    const acts = h.handle({ type: 'ReplicasAdded', worker: 'w2', keys: [{ key: 'big-1', workers: [], nbytes: 1000 }] });
    const r = reportsOf(acts);
    expect(r).toMatchObject([{ client: 'c', type: 'in-memory', key: 'big-1', workers: ['w2'] }]);
    expect(acts.findIndex((a) => a.type === 'ReportToClient')).toBeLessThan(acts.findIndex((a) => a.type === 'CloseWorker'));
  });

  it('a holder of a replicated result dying tells the clients the remaining holders', () => {
    const h = new Harness();
    h.addWorker('w1');
    h.addWorker('w2');
    // Broadcast: the scheduler asks the other worker for a copy (it takes no replica it did not ask for).
    h.handle({ type: 'GraphUpdated', client: 'c', tasks: [def('big-1')], wanted: ['big-1'], broadcast: ['big-1'] });
    const w = h.state.tasks.get('big-1')!.processingOn!.address;
    const other = w === 'w1' ? 'w2' : 'w1';
    h.finish(w, 'big-1', 1000);
    h.handle({ type: 'ReplicasAdded', worker: other, keys: [{ key: 'big-1', workers: [], nbytes: 1000 }] });
    const r = reportsOf(h.handle({ type: 'WorkerRemoved', worker: w, expected: false, reason: 'killed' }));
    expect(r).toMatchObject([{ client: 'c', type: 'in-memory', key: 'big-1', workers: [other] }]);
  });
});

describe('SchedulerState: order, stealing and loose restrictions (issue 11)', () => {
  /** Two slots per thread before durations are known (the default saturation 1.1 rounds up to 2). */
  const harness = () => {
    const h = new Harness();
    h.state = new SchedulerState({ now: () => h.now, validate: true, workerSaturation: 1.1, inlineBytes: 100, allowedFailures: 1 });
    return h;
  };
  const steals = (as: SchedulerAction[]) => as.filter((a) => a.type === 'StealRequest').map((a) => `${a.worker}:${(a as { key: string }).key}`);

  // Dask test_client::test_long_tasks_dont_trigger_timeout: y = inc(x) waits behind a long w.
  it('an idle worker steals a task queued behind a running one, and the task goes to it', () => {
    const h = harness();
    h.addWorker('A');
    h.addWorker('B');
    let acts = h.submit('c', [def('x'), def('y', ['x']), def('z'), def('w')], ['x', 'y', 'z', 'w']);
    expect(computes(acts)).toEqual(['A:x', 'B:z', 'A:w']);
    // x took 0 ms: y still goes where nothing else waits... unless B is busy; here B still runs z.
    acts = h.handle({ type: 'TaskFinished', worker: 'A', key: 'x', value: small(4), nbytes: 4, typeName: 'number', startMs: 5, stopMs: 5 });
    expect(computes(acts)).toEqual(['A:y']);
    // B runs out of work: it asks A for y (waiting there), not for w (the oldest, running).
    acts = h.err('B', 'z');
    expect(steals(acts)).toEqual(['A:y']);
    const { stimulusId } = acts.find((a) => a.type === 'StealRequest')!;
    acts = h.handle({ type: 'StealResponse', worker: 'A', key: 'y', state: 'ready', stimulusId });
    expect(computes(acts)).toEqual(['B:y']);
    expect(acts).toContainEqual(expect.objectContaining({ type: 'FreeKeys', worker: 'A', keys: ['y'] }));
  });

  it('a worker does not steal from one that has no more tasks than threads', () => {
    const h = harness();
    h.addWorker('A', { nthreads: 2 });
    h.addWorker('B');
    h.submit('c', [def('a'), def('b'), def('c')], ['a', 'b', 'c']);
    expect([...h.state.workers.get('A')!.processing].map((t) => t.key)).toEqual(['a', 'c']);
    expect(steals(h.finish('B', 'b'))).toEqual([]);
  });

  // Dask test_priorities::test_submit (queue on scheduler).
  it('places the tasks of one update best first, so the higher priority ones take the free slots', () => {
    const h = harness();
    h.addWorker('A');
    h.submit('c', [def('blocker')], ['blocker']);
    const acts = h.submit('c', [def('low', [], { priority: -1 }), def('mid'), def('high', [], { priority: 1 })], ['low', 'mid', 'high']);
    expect(computes(acts)).toEqual(['A:high']);
    expect(h.state_('low')).toBe('queued');
    expect(h.state_('mid')).toBe('queued');
    // Durations known: more slots, and the queue hands them out best first.
    expect(computes(h.finish('A', 'blocker'))).toEqual(['A:mid', 'A:low']);
  });

  // Dask test_steal (loose restrictions may be stolen) and allow_other_workers.
  it('tasks restricted to a busy worker with allowOtherWorkers go to other workers; strict ones stay', () => {
    const h = harness();
    h.addWorker('A');
    h.addWorker('B');
    const loose = ['l1', 'l2', 'l3', 'l4'];
    let acts = h.submit('c', loose.map((k) => def(k, [], { workers: ['A'], allowOtherWorkers: true })), loose);
    const placed = computes(acts);
    expect(placed[0]).toBe('A:l1');
    expect(placed.filter((p) => p.startsWith('B:')).length).toBeGreaterThan(0);
    const strict = ['s1', 's2', 's3'];
    acts = h.submit('c', strict.map((k) => def(k, [], { workers: ['A'] })), strict);
    expect(computes(acts)).toEqual(['A:s1', 'A:s2', 'A:s3']);
    // B runs out of work: it may take loose tasks from A, never strict ones.
    for (const p of placed.filter((p) => p.startsWith('B:'))) acts = h.finish('B', p.slice(2));
    const asked = steals(acts);
    for (const s of asked) expect(s).toMatch(/^A:l/);
  });

  it('an idle worker steals a task restricted to it and a busy worker, but not one restricted elsewhere', () => {
    const h = harness();
    h.addWorker('A');
    h.addWorker('B');
    h.addWorker('C');
    h.submit('c', [def('run-1', [], { workers: ['A'] })], ['run-1']);
    h.submit('c', [def('ab-1', [], { workers: ['A', 'B'] }), def('a-2', [], { workers: ['A'] })], ['ab-1', 'a-2']);
    expect(h.state.tasks.get('ab-1')!.processingOn?.address).toBe('B');
    h.submit('c', [def('ab-2', [], { workers: ['A', 'B'] })], ['ab-2']);
    const onA = [...h.state.workers.get('A')!.processing].map((t) => t.key);
    expect(onA).toContain('a-2');
    // C may run none of them; B may run the ab- ones.
    expect(steals(h.handle({ type: 'Tick' }))).toEqual([]);
  });
});

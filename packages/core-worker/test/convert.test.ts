/** Wire ↔ domain conversion of the column forms (ComputeBatch in, TasksFinished out). */
import { describe, expect, it } from 'vitest';
import { ComputeBatch, ComputeTask, Encoding, TaskSpec, WorkerSessionRequest, type InlineFunction, type Value } from '@skein/protocol';
import { InvalidArgumentError, buildValueColumn, encodeValue, readValueColumn } from '@skein/common';
import { computeBatchEvents, computeTaskEvent, toWire, toWireBatch, type Outgoing } from '../src/server/convert.js';
import type { ComputeTaskEvent, SchedulerMessage, WorkerEvent } from '../src/state/types.js';
import { WorkerState } from '../src/state/worker-state.js';
import { compileWorkerOptions, parseResources } from '../src/options.js';

const json = (v: unknown) => encodeValue(v, 'json');
const fn: InlineFunction = { hash: 'h1', source: '(x) => x', name: 'double' };

/** A ComputeBatch (through a protobuf round trip, as a worker receives it) and the ComputeTasks it stands for. */
function batchAndTasks(opts: { inline?: InlineFunction; registered?: string; keys: string[]; args: Array<Value | null> }) {
  const ref = opts.registered !== undefined ? { kind: { $case: 'registered' as const, value: opts.registered } } : { kind: { $case: 'inlineHash' as const, value: 'h1' } };
  const shared = { priority: 3, resources: new Map([['GPU', 1]]), resultEncoding: Encoding.ENCODING_V8 };
  const sequences = opts.keys.map((_, i) => 100 + i);
  const batch = ComputeBatch.decode(
    ComputeBatch.encode({
      tasks: {
        function: ref,
        keys: opts.keys,
        args: buildValueColumn(opts.args),
        dependencyCounts: [],
        dependencies: [],
        retries: 2,
        workers: [],
        allowOtherWorkers: false,
        pure: false,
        ...shared,
      },
      sequences,
      function: opts.inline,
      stimulusId: 'stim-1',
    }).finish(),
  );
  const tasks: ComputeTask[] = opts.keys.map((key, i) => ({
    spec: TaskSpec.create({ key, function: ref, args: opts.args[i] ?? undefined, retries: 2, ...shared }),
    function: opts.inline,
    whoHas: [],
    inlineInputs: new Map(),
    sequence: sequences[i]!,
    stimulusId: 'stim-1',
  }));
  return { batch, tasks };
}

function eventsOf(batch: ComputeBatch): ComputeTaskEvent[] {
  const out: WorkerEvent[] = [];
  computeBatchEvents(batch, out);
  return out as ComputeTaskEvent[];
}

describe('computeBatchEvents', () => {
  it.each([
    ['an inline function with its name', { inline: fn }],
    ['an inline function without its source (named after the key prefix)', {}],
    ['a registered function', { registered: 'add' }],
  ])('gives for each task exactly what computeTaskEvent gives for its ComputeTask: %s', (_, opts) => {
    const { batch, tasks } = batchAndTasks({ ...opts, keys: ['double-a', 'double-b', 'other-c', 'nodash'], args: [json([1]), json([2]), null, json([])] });
    const events = eventsOf(batch);
    expect(events).toHaveLength(4);
    for (let i = 0; i < tasks.length; i++) {
      const expected = computeTaskEvent(tasks[i]!);
      const got = events[i]!;
      expect(got).toStrictEqual(expected);
      // the args are equal bytes (a view into the column, not a copy)
      expect(Buffer.compare(got.call.args.data, expected.call.args.data)).toBe(0);
    }
    // an absent value means the default arguments, as a ComputeTask without args
    expect(events[2]!.call.args).toEqual(computeTaskEvent(tasks[2]!).call.args);
  });

  it('shares the function spec between tasks of one function name', () => {
    const { batch } = batchAndTasks({ keys: ['f-1', 'f-2', 'g-1', 'g-2'], args: [json([1]), json([2]), json([3]), json([4])] });
    const events = eventsOf(batch);
    expect(events[0]!.call.fn).toEqual({ kind: 'inline', hash: 'h1', name: 'f' });
    expect(events[1]!.call.fn).toBe(events[0]!.call.fn);
    expect(events[2]!.call.fn).toEqual({ kind: 'inline', hash: 'h1', name: 'g' });
    expect(events[3]!.call.fn).toBe(events[2]!.call.fn);
  });

  it('an empty batch gives no events', () => {
    const { batch } = batchAndTasks({ keys: [], args: [] });
    expect(eventsOf(batch)).toEqual([]);
  });

  it('rejects a batch whose columns do not match, naming the field, and adds nothing', () => {
    const { batch } = batchAndTasks({ inline: fn, keys: ['a-1', 'a-2', 'a-3'], args: [json([1]), json([2]), json([3])] });
    const check = (b: ComputeBatch, re: RegExp) => {
      const out: WorkerEvent[] = [];
      expect(() => computeBatchEvents(b, out)).toThrow(InvalidArgumentError);
      expect(() => computeBatchEvents(b, out)).toThrow(re);
      expect(out).toEqual([]);
    };
    const t = batch.tasks!;
    check({ ...batch, tasks: { ...t, args: buildValueColumn([json([1]), json([2])]) } }, /ComputeBatch of 3 tasks, tasks\.args: the value column has 2 encodings and 2 lengths for 3 keys/);
    check({ ...batch, tasks: { ...t, args: undefined } }, /tasks\.args: the value column is missing but 3 keys are listed/);
    check({ ...batch, sequences: [1, 2] }, /ComputeBatch of 3 tasks: sequences has 2 entries for 3 keys/);
    check({ ...batch, tasks: { ...t, dependencyCounts: [1, 0, 0], dependencies: ['x-1'] } }, /tasks\.dependency_counts has 3 entries .*only tasks without dependencies/);
    check({ ...batch, tasks: { ...t, dependencies: ['x-1'] } }, /tasks\.dependencies has 1 entries .*only tasks without dependencies/);
    check({ ...batch, tasks: undefined }, /ComputeBatch without tasks/);
  });
});

describe('toWireBatch', () => {
  const finished = (key: string, value: Value | undefined, i: number): SchedulerMessage => ({
    type: 'TaskFinished',
    key,
    value,
    nbytes: value?.data.byteLength ?? 1000,
    typeName: 'number',
    startMs: 10 + i,
    stopMs: 20 + i,
    stimulusId: `task-finished-${i}`,
  });
  const heartbeat: Outgoing = { kind: { $case: 'heartbeat', value: { executing: 1, ready: 0, memoryRss: 1, managedBytes: 0, cpuPercent: 0, nowMs: 0, spilledBytes: 0, paused: false } } };
  const released: SchedulerMessage = { type: 'KeysReleased', keys: ['z'], stimulusId: 'free' };
  const queue: Outgoing[] = [
    finished('a', json(1), 0),
    finished('b', undefined, 1), // too large to inline
    finished('c', json('x'), 2),
    heartbeat,
    finished('d', json(4), 3), // alone between other messages
    released,
    finished('e', { encoding: Encoding.ENCODING_RAW, data: Buffer.alloc(0) }, 4),
    finished('f', json(6), 5),
  ];

  it('without batches, sends each message as toWire does, in order', () => {
    expect(toWireBatch(queue, false)).toEqual(queue.map((m) => ('type' in m ? toWire(m) : m)));
  });

  it('with batches, merges each run of TaskFinished into one TasksFinished and keeps the order', () => {
    const wire = WorkerSessionRequest.decode(WorkerSessionRequest.encode({ messages: toWireBatch(queue, true) }).finish()).messages;
    expect(wire.map((m) => m.kind?.$case)).toEqual(['tasksFinished', 'heartbeat', 'taskFinished', 'keysReleased', 'tasksFinished']);
    const first = wire[0]!.kind!.$case === 'tasksFinished' ? wire[0]!.kind!.value : undefined;
    expect(first).toMatchObject({ keys: ['a', 'b', 'c'], nbytes: [json(1).data.byteLength, 1000, json('x').data.byteLength], typeNames: ['number'], typeNameIndex: [0, 0, 0], startMs: [10, 11, 12], stopMs: [20, 21, 22], stimulusId: 'task-finished-0' });
    const values = readValueColumn(first!.values, 3, 'test');
    expect(values.map((v) => v && [v.encoding, Buffer.from(v.data).toString()])).toEqual([[Encoding.ENCODING_JSON, '1'], null, [Encoding.ENCODING_JSON, '"x"']]);
    expect(wire[2]!.kind).toMatchObject({ $case: 'taskFinished', value: { key: 'd', stimulusId: 'task-finished-3' } });
    const last = wire[4]!.kind!.$case === 'tasksFinished' ? wire[4]!.kind!.value : undefined;
    expect(last?.keys).toEqual(['e', 'f']);
    // an empty value is still a value (RAW, 0 bytes), not an absent one
    expect(readValueColumn(last!.values, 2, 'test').map((v) => v?.encoding ?? 0)).toEqual([Encoding.ENCODING_RAW, Encoding.ENCODING_JSON]);
  });
});

// Keys (and resource names) are user data: named like Object.prototype members they must travel
// from the wire into the state as any other name (issue 11, item 13).
const PROTO_NAMES = ['constructor', 'toString', 'hasOwnProperty', 'valueOf', '__proto__', 'isPrototypeOf', '__defineGetter__', 'propertyIsEnumerable'];

describe('keys named like Object.prototype members', () => {
  const peer = 'tcp://127.0.0.1:2000';
  /** A ComputeTask as the worker receives it (a protobuf round trip), depending on every name. */
  function received(inline: boolean): ComputeTask {
    const sent: ComputeTask = {
      spec: TaskSpec.create({ key: 'use-1', function: { kind: { $case: 'registered', value: 'f' } }, args: json([]), dependencies: PROTO_NAMES, resources: new Map([['__proto__', 1], ['constructor', 2]]) }),
      function: undefined,
      whoHas: inline ? [] : PROTO_NAMES.map((key) => ({ key, workers: [peer], nbytes: 100_000 })),
      inlineInputs: new Map(inline ? PROTO_NAMES.map((k, i) => [k, json(i)]) : []),
      sequence: 1,
      stimulusId: 'compute-use-1',
    };
    return ComputeTask.decode(ComputeTask.encode(sent).finish());
  }

  it('decodes every inline input, holder and resource by its name', () => {
    const ev = computeTaskEvent(received(true));
    expect([...ev.inlineInputs.keys()]).toEqual(PROTO_NAMES);
    expect([...ev.resources]).toEqual([['__proto__', 1], ['constructor', 2]]);
    const fetched = computeTaskEvent(received(false));
    expect([...fetched.whoHas]).toEqual(PROTO_NAMES.map((k) => [k, [peer]]));
    expect([...fetched.nbytes.values()]).toEqual(PROTO_NAMES.map(() => 100_000));
    expect(fetched.inlineInputs.size).toBe(0);
  });

  it.each([
    ['inline inputs', true],
    ['inputs held by a peer', false],
  ])('the worker state runs a task whose dependencies are such keys (%s)', (_, inline) => {
    let t = 0;
    const s = new WorkerState({ address: 'tcp://127.0.0.1:1000', nthreads: 1, inlineBytes: 100, now: () => ++t, validate: true, resources: { ['__proto__']: 1, constructor: 2 } });
    const acts = s.handle(computeTaskEvent(received(inline)));
    if (inline) {
      expect(acts).toEqual([{ type: 'Execute', key: 'use-1', call: expect.anything(), inputs: PROTO_NAMES.map((k, i) => [k, json(i)]), priority: 0, sequence: 1, stimulusId: 'compute-use-1' }]);
    } else {
      expect(acts).toEqual([{ type: 'GatherDep', worker: peer, keys: PROTO_NAMES, totalNbytes: 800_000, stimulusId: 'compute-use-1' }]);
      const data = new Map(PROTO_NAMES.map((k, i) => [k, json(i)]));
      const ran = s.handle({ type: 'GatherDepSuccess', worker: peer, data, missing: [], stimulusId: 'got' });
      expect(ran).toEqual([{ type: 'Execute', key: 'use-1', call: expect.anything(), inputs: PROTO_NAMES.map((k, i) => [k, json(i)]), priority: 0, sequence: 1, stimulusId: 'got' }]);
    }
    expect(s.availableResources).toEqual(new Map([['__proto__', 0], ['constructor', 0]]));
    const done = s.handle({ type: 'ExecuteSuccess', key: 'use-1', value: json(1), typeName: 'number', startMs: 1, stopMs: 2, stimulusId: 'ok' });
    // The result is reported; the inputs, needed by nothing else, are let go (ReleaseData each).
    expect(done.map((a) => a.type)).toEqual(['SendToScheduler', ...PROTO_NAMES.map(() => 'ReleaseData')]);
    expect([...s.tasks.keys()]).toEqual(['use-1']);
    expect(s.availableResources).toEqual(new Map([['__proto__', 1], ['constructor', 2]]));
  });
});


describe('resource names like Object.prototype members', () => {
  it('parses and compiles them as own entries', () => {
    const parsed = parseResources('__proto__=1,constructor=2,toString=3');
    expect(Object.entries(parsed)).toEqual([['__proto__', 1], ['constructor', 2], ['toString', 3]]);
    const o = compileWorkerOptions({ scheduler: 'tcp://127.0.0.1:8786', resources: parsed });
    expect(Object.entries(o.resources)).toEqual([['__proto__', 1], ['constructor', 2], ['toString', 3]]);
    expect(Object.getPrototypeOf(o.resources)).toBe(Object.prototype);
  });
});

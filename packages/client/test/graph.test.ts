import { describe, expect, it } from 'vitest';
import { Encoding } from '@skein/protocol';
import { QUOTE_KEY, decodeValue, makeRef, REF_KEY, substituteRefs } from '@skein/common';
import {
  Delayed,
  buildTask,
  compileTaskOptions,
  delayed,
  flattenDelayed,
  registered,
  resolveFunction,
} from '../src/graph.js';
import { Future, KeyState, type FutureHost } from '../src/future.js';

const host: FutureHost = {
  _valueOf: async () => undefined,
  _decref: () => undefined,
  cancel: async () => undefined,
};
const fakeFuture = (key: string) => new Future(host, new KeyState(key));

function inc(x: number): number {
  return x + 1;
}

describe('keys', () => {
  it('pure keys are <name>-<hash of function and args>, stable across calls', () => {
    const rf = resolveFunction(inc);
    const opts = compileTaskOptions(undefined);
    const a = buildTask(rf, [1], opts).def;
    const b = buildTask(rf, [1], opts).def;
    const c = buildTask(rf, [2], opts).def;
    expect(a.key).toMatch(/^inc-[0-9a-f]{32}$/);
    expect(a.key).toBe(b.key);
    expect(c.key).not.toBe(a.key);
    // A different function with the same name gets another key.
    const other = resolveFunction(function inc(x: number) {
      return x + 2;
    });
    expect(buildTask(other, [1], opts).def.key).not.toBe(a.key);
  });

  it('impure keys are random; explicit keys and prefixes are kept', () => {
    const rf = resolveFunction(inc);
    const impure = compileTaskOptions({ pure: false });
    expect(buildTask(rf, [1], impure).def.key).not.toBe(buildTask(rf, [1], impure).def.key);
    expect(buildTask(rf, [1], compileTaskOptions({}), 'my-key').def.key).toBe('my-key');
    expect(buildTask(rf, [1], compileTaskOptions({}), undefined, 'pre').def.key).toMatch(/^pre-[0-9a-f]{32}$/);
  });

  it('anonymous functions are named lambda; registered functions use their name', () => {
    const anon = resolveFunction((x: number) => x);
    expect(buildTask(anon, [1], compileTaskOptions(undefined)).def.key).toMatch(/^lambda-|^anon-/);
    const reg = resolveFunction(registered('wordCount'));
    const t = buildTask(reg, ['a b'], compileTaskOptions(undefined)).def;
    expect(t.key).toMatch(/^wordCount-[0-9a-f]{32}$/);
    expect(t.fn).toEqual({ kind: 'registered', name: 'wordCount' });
    expect(reg.source).toBeUndefined();
  });

  it('encodes arguments as v8 by default and json on request, and asks for results the same way', () => {
    const rf = resolveFunction(inc);
    const v8 = buildTask(rf, [new Map([[1, 2]])], compileTaskOptions(undefined)).def;
    expect(v8.args.encoding).toBe(Encoding.ENCODING_V8);
    expect(v8.resultEncoding).toBe(Encoding.ENCODING_V8);
    // Small plain arguments travel as JSON (cheaper, same value); the result is still asked for as v8.
    const small = buildTask(rf, [1], compileTaskOptions(undefined)).def;
    expect(small.args.encoding).toBe(Encoding.ENCODING_JSON);
    expect(small.resultEncoding).toBe(Encoding.ENCODING_V8);
    const json = buildTask(rf, [1], compileTaskOptions({ encoding: 'json' })).def;
    expect(json.args.encoding).toBe(Encoding.ENCODING_JSON);
    expect(json.resultEncoding).toBe(Encoding.ENCODING_JSON);
    expect(json.key).not.toBe(small.key);
    expect(Buffer.from(json.args.data).toString()).toBe('[1]');
    expect(json.key).not.toBe(v8.key);
  });

  it('passes options through', () => {
    const t = buildTask(
      resolveFunction(inc),
      [1],
      compileTaskOptions({ priority: 5, retries: 2, resources: { GPU: 1 }, workers: 'w1', allowOtherWorkers: true }),
    ).def;
    expect(t).toMatchObject({ priority: 5, retries: 2, resources: { GPU: 1 }, workers: ['w1'], allowOtherWorkers: true });
    expect(() => compileTaskOptions({ retries: -1 })).toThrow(/retries/);
  });
});

describe('references', () => {
  it('replaces futures, delayed values and refs at any depth and lists them as dependencies', () => {
    const f1 = fakeFuture('a-1');
    const f2 = fakeFuture('b-2');
    const d = delayed(inc)(1);
    const args = [f1, { deep: [1, { x: f2 }], ref: makeRef('c-3') }, [[d]], 'plain'];
    const built = buildTask(resolveFunction((..._a: unknown[]) => 0), args, compileTaskOptions(undefined));
    expect(built.def.dependencies.sort()).toEqual(['a-1', 'b-2', 'c-3', d.key].sort());
    expect(built.delayed).toEqual([d]);
    const decoded = decodeValue(built.def.args);
    expect(decoded).toEqual([
      { [REF_KEY]: 'a-1' },
      { deep: [1, { x: { [REF_KEY]: 'b-2' } }], ref: { [REF_KEY]: 'c-3' } },
      [[{ [REF_KEY]: d.key }]],
      'plain',
    ]);
    // The caller's structures are not modified.
    expect(args[0]).toBe(f1);
  });

  it('quotes data shaped like a marker; only makeRef makes a reference', () => {
    const any = resolveFunction((..._a: unknown[]) => 0);
    const f = fakeFuture('f-1');
    const args = [{ [REF_KEY]: 'abc' }, { [QUOTE_KEY]: { x: f } }, { [REF_KEY]: 'k', more: 1 }, makeRef('m-1')];
    const built = buildTask(any, args, compileTaskOptions(undefined));
    expect(built.def.dependencies.sort()).toEqual(['f-1', 'm-1']);
    const template = decodeValue(built.def.args);
    expect(template).toEqual([
      { [QUOTE_KEY]: { [REF_KEY]: 'abc' } },
      { [QUOTE_KEY]: { [QUOTE_KEY]: { x: { [REF_KEY]: 'f-1' } } } },
      { [QUOTE_KEY]: { [REF_KEY]: 'k', more: 1 } },
      { [REF_KEY]: 'm-1' },
    ]);
    // What the worker makes of it: the data as it was, the future and the ref resolved.
    expect(substituteRefs(template, (k) => `<${k}>`)).toEqual([{ [REF_KEY]: 'abc' }, { [QUOTE_KEY]: { x: '<f-1>' } }, { [REF_KEY]: 'k', more: 1 }, '<m-1>']);
    // JSON arguments are quoted the same way.
    const asJson = buildTask(any, [{ [REF_KEY]: 'abc' }], compileTaskOptions({ encoding: 'json' }));
    expect(asJson.def.dependencies).toEqual([]);
    expect(decodeValue(asJson.def.args)).toEqual([{ [QUOTE_KEY]: { [REF_KEY]: 'abc' } }]);
  });

  it('walks cyclic arguments and class instances, keeping cycles, and leaves the caller\'s values alone', () => {
    const any = resolveFunction((..._a: unknown[]) => 0);
    const f = fakeFuture('f-2');
    const cyc: Record<string, unknown> = { f };
    cyc['self'] = cyc;
    class Box {
      constructor(readonly inner: unknown) {}
    }
    const built = buildTask(any, [cyc, new Box(f)], compileTaskOptions(undefined));
    expect(built.def.dependencies).toEqual(['f-2']);
    const [t, box] = decodeValue(built.def.args) as [Record<string, unknown>, Record<string, unknown>];
    expect(t['f']).toEqual({ [REF_KEY]: 'f-2' });
    expect(t['self']).toBe(t);
    expect(box).toEqual({ inner: { [REF_KEY]: 'f-2' } });
    expect(cyc['f']).toBe(f);
    // A cycle without futures is sent as it is.
    const plain: unknown[] = [1];
    plain.push(plain);
    const p = decodeValue(buildTask(any, [plain], compileTaskOptions(undefined)).def.args) as unknown[][];
    expect(p[0]![1]).toBe(p[0]);
  });

  it('the key of a call on futures depends on their keys', () => {
    const rf = resolveFunction(inc);
    const o = compileTaskOptions(undefined);
    const k1 = buildTask(rf, [fakeFuture('x-1')], o).def.key;
    const k2 = buildTask(rf, [fakeFuture('x-2')], o).def.key;
    expect(k1).not.toBe(k2);
    expect(buildTask(rf, [fakeFuture('x-1')], o).def.key).toBe(k1);
  });

  it('refuses promises as arguments with a clear message', () => {
    expect(() => buildTask(resolveFunction(inc), [Promise.resolve(1)], compileTaskOptions(undefined))).toThrow(/Promise.*Await/);
  });
});

describe('delayed', () => {
  it('builds a graph lazily; flattening lists dependencies first, each key once', () => {
    const add = delayed((a: number, b: number) => a + b);
    const dinc = delayed(inc);
    const x = dinc(1);
    const y = dinc(2);
    const z = add(x, y);
    const w = add(z, x); // x shared
    expect(z).toBeInstanceOf(Delayed);
    expect(z.key).toMatch(/^lambda-/);
    const { tasks, sources } = flattenDelayed([w]);
    const keys = tasks.map((t) => t.key);
    expect(keys).toHaveLength(4);
    expect(new Set(keys).size).toBe(4);
    for (const t of tasks) for (const dep of t.dependencies) expect(keys.indexOf(dep)).toBeLessThan(keys.indexOf(t.key));
    expect(keys[keys.length - 1]).toBe(w.key);
    expect(sources).toHaveLength(2);
    expect(w.graphKeys.sort()).toEqual([...keys].sort());
    // Same calls give the same keys (pure).
    expect(add(dinc(1), dinc(2)).key).toBe(z.key);
  });

  it('flattens very long chains without recursion', () => {
    let d = delayed(inc)(0);
    for (let i = 0; i < 20_000; i++) d = delayed(inc)(d);
    expect(flattenDelayed([d]).tasks).toHaveLength(20_001);
  });

  it('takes options; key names a single call', () => {
    const d = delayed(inc, { key: 'the-one', priority: 3 })(1);
    expect(d.key).toBe('the-one');
    expect(d._task.priority).toBe(3);
    expect(() => delayed(inc, { key: ['a'] })).toThrow(/one key/);
  });
});

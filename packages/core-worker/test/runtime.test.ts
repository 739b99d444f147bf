import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { deserialize } from 'node:v8';
import { Encoding } from '@skein/protocol';
import { decodeValue, encodeValue, inlineFunction, makeRef } from '@skein/common';
import { ThreadPool, type PoolResult, type PoolTask } from '../src/runtime/pool.js';
import { json } from './helpers.js';

const TASKS = fileURLToPath(new URL('./fixtures/tasks.mjs', import.meta.url));
const BROKEN = fileURLToPath(new URL('./fixtures/broken.mjs', import.meta.url));

function run(pool: ThreadPool, task: PoolTask): Promise<PoolResult> {
  return new Promise((resolve) => pool.run(task, resolve));
}

function ok(r: PoolResult): unknown {
  if (!r.ok) throw new Error(`task failed: ${r.error.type}: ${r.error.message}`);
  return decodeValue(r.value);
}

function inline(fn: Function, pool: ThreadPool): PoolTask['fn'] {
  const f = inlineFunction(fn);
  pool.addFunction(f.hash, f.source);
  return { kind: 'inline', hash: f.hash, name: f.name };
}

describe('ThreadPool', () => {
  let pool: ThreadPool;
  beforeAll(async () => {
    pool = await ThreadPool.start({ nthreads: 2, modules: [TASKS] });
  });
  afterAll(async () => {
    await pool.close();
  });

  it('reports the registered functions', () => {
    expect(pool.registeredFunctions.sort()).toEqual(['add', 'bytes', 'fail', 'makeMap', 'pattern', 'slowDouble', 'threadId']);
  });

  it('runs sync and async registered functions', async () => {
    expect(ok(await run(pool, { key: 'add-1', fn: { kind: 'registered', name: 'add' }, args: json([1, 2]), inputs: [] }))).toBe(3);
    expect(ok(await run(pool, { key: 's-1', fn: { kind: 'registered', name: 'slowDouble' }, args: json([21]), inputs: [] }))).toBe(42);
  });

  it('runs inline functions, sync and async, and substitutes references to inputs', async () => {
    const fn = inline((a: number, o: { b: number[] }) => a + o.b[0]! + o.b[1]!, pool);
    const args = json([makeRef('x'), { b: [makeRef('y'), 100] }]);
    const r = await run(pool, { key: 'lambda-1', fn, args, inputs: [['x', json(1)], ['y', encodeValue(10)]] });
    expect(ok(r)).toBe(111);
    // (async arrow functions with parentheses hit a bug in common functionSource; see report)
    const afn = inline(async function (x: number) {
      await Promise.resolve();
      return x + 1;
    }, pool);
    expect(ok(await run(pool, { key: 'lambda-2', fn: afn, args: json([1]), inputs: [] }))).toBe(2);
  });

  it('answers in the encoding asked for (unspecified: JSON, bytes RAW, after JSON arguments; else V8), never another', async () => {
    const r1 = await run(pool, { key: 'a', fn: { kind: 'registered', name: 'add' }, args: json([1, 2]), inputs: [] });
    expect(r1.ok && r1.value.encoding).toBe(Encoding.ENCODING_JSON);
    // A number travels as JSON even from v8 arguments: the same value, cheaper.
    const r2 = await run(pool, { key: 'b', fn: { kind: 'registered', name: 'add' }, args: encodeValue([1, 2, new Map()]), inputs: [] });
    expect(r2.ok && r2.value.encoding).toBe(Encoding.ENCODING_JSON);
    // The client's explicit wish wins over the arguments' encoding.
    const obj = inline(() => ({ a: [1, 2] }), pool);
    const r2b = await run(pool, { key: 'b2', fn: obj, args: json([]), inputs: [] });
    expect(r2b.ok && r2b.value.encoding).toBe(Encoding.ENCODING_JSON);
    const r2c = await run(pool, { key: 'b3', fn: obj, args: json([]), inputs: [], resultEncoding: Encoding.ENCODING_V8 });
    expect(r2c.ok && r2c.value.encoding).toBe(Encoding.ENCODING_V8);
    const r2d = await run(pool, { key: 'b4', fn: obj, args: encodeValue([new Map()]), inputs: [], resultEncoding: Encoding.ENCODING_JSON });
    expect(r2d.ok && r2d.value.encoding).toBe(Encoding.ENCODING_JSON);
    const r3 = await run(pool, { key: 'c', fn: { kind: 'registered', name: 'makeMap' }, args: json([]), inputs: [], resultEncoding: Encoding.ENCODING_V8 });
    expect(r3.ok && r3.value.encoding).toBe(Encoding.ENCODING_V8);
    expect(r3.ok && deserialize(r3.value.data)).toEqual(new Map([[1, 'one']]));
    // JSON arguments without a wish mean a client that reads JSON: a Map is an error, not V8.
    const r3b = await run(pool, { key: 'c2', fn: { kind: 'registered', name: 'makeMap' }, args: json([]), inputs: [] });
    expect(!r3b.ok && r3b.error.message).toMatch(/The result of task c2 is not JSON-representable: a Map at the top level/);
    const r3c = await run(pool, { key: 'c3', fn: inline(() => [1, NaN], pool), args: encodeValue([new Map()]), inputs: [], resultEncoding: Encoding.ENCODING_JSON });
    expect(!r3c.ok && r3c.error.message).toMatch(/NaN at \[1\]/);
    const r3d = await run(pool, { key: 'c4', fn: inline(() => 5, pool), args: json([]), inputs: [], resultEncoding: Encoding.ENCODING_RAW });
    expect(!r3d.ok && r3d.error.message).toMatch(/The result of task c4 is not bytes/);
    const r3e = await run(pool, { key: 'c5', fn: inline(() => new Uint8Array([7]), pool), args: encodeValue([new Map()]), inputs: [] });
    expect(r3e.ok && r3e.value.encoding).toBe(Encoding.ENCODING_RAW_UINT8ARRAY);
    const r4 = await run(pool, { key: 'd', fn: { kind: 'registered', name: 'bytes' }, args: json([5000]), inputs: [] });
    expect(r4.ok && r4.value.encoding).toBe(Encoding.ENCODING_RAW);
    expect(r4.ok && r4.value.data.byteLength).toBe(5000);
    const r5 = await run(pool, { key: 'e', fn: inline(() => undefined, pool), args: json([]), inputs: [] });
    expect(ok(r5)).toBe(null);
  });

  it('returns clear errors', async () => {
    const r1 = await run(pool, { key: 'fail-1', fn: { kind: 'registered', name: 'fail' }, args: json(['nope']), inputs: [] });
    expect(r1).toMatchObject({ ok: false, error: { type: 'TypeError', message: 'nope', key: 'fail-1' } });
    const r2 = await run(pool, { key: 'x-1', fn: { kind: 'registered', name: 'missingFn' }, args: json([]), inputs: [] });
    expect(r2.ok).toBe(false);
    if (!r2.ok) {
      expect(r2.error.message).toMatch(/Function "missingFn" is not registered on this worker/);
      expect(r2.error.message).toContain(TASKS);
      expect(r2.error.message).toMatch(/functions: add, bytes/);
    }
    const captured = 5;
    const r3 = await run(pool, { key: 'lambda-9', fn: inline((x: number) => x + captured, pool), args: json([1]), inputs: [] });
    expect(r3.ok).toBe(false);
    if (!r3.ok) {
      expect(r3.error.type).toBe('ReferenceError');
      expect(r3.error.message).toMatch(/uses "captured", which is not defined on the worker/);
    }
    const r4 = await run(pool, { key: 'lambda-10', fn: { kind: 'inline', hash: 'deadbeef', name: 'ghost' }, args: json([]), inputs: [] });
    expect(!r4.ok && r4.error.message).toMatch(/never sent to this worker/);
    const r5 = await run(pool, { key: 'lambda-11', fn: inline((a: unknown) => a, pool), args: json([makeRef('nothere')]), inputs: [] });
    expect(!r5.ok && r5.error.message).toMatch(/refers to the result of nothere/);
    const r6 = await run(pool, { key: 'lambda-12', fn: inline(() => () => 1, pool), args: json([]), inputs: [], resultEncoding: Encoding.ENCODING_V8 });
    expect(!r6.ok && r6.error.message).toMatch(/cannot be serialized/);
    const r7 = await run(pool, { key: 'lambda-13', fn: inline(() => () => 1, pool), args: json([]), inputs: [] });
    expect(!r7.ok && r7.error.message).toMatch(/not JSON-representable: a function at the top level/);
  });

  it('compiles an inline function once per thread and sends its source once', async () => {
    const fn = inline((x: number) => x * 3, pool);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => run(pool, { key: `t-${i}`, fn, args: json([i]), inputs: [] })));
    expect(results.map(ok)).toEqual(Array.from({ length: 50 }, (_, i) => i * 3));
  });

  it('moves large values in and out', async () => {
    const big = Buffer.alloc(8 * 1024 * 1024, 3);
    const fn = inline((b: Uint8Array) => b.length, pool);
    const r = await run(pool, { key: 'big', fn, args: json([makeRef('b')]), inputs: [['b', { encoding: Encoding.ENCODING_RAW, data: big }]] });
    expect(ok(r)).toBe(big.length);
    expect(big[0]).toBe(3); // the store's copy is intact
  });

  it('runs many tiny tasks, each exactly once with its own result', async () => {
    const fn = inline((x: number) => x * 2, pool);
    const n = 20_000;
    const seen = new Int32Array(n);
    await new Promise<void>((resolve, reject) => {
      let done = 0;
      for (let i = 0; i < n; i++) {
        pool.run({ key: `n-${i}`, fn, args: json([i]), inputs: [] }, (r) => {
          if (!r.ok) return reject(new Error(r.error.message));
          const v = JSON.parse(Buffer.from(r.value.data).toString()) as number;
          if (v !== i * 2) return reject(new Error(`task ${i} returned ${v}`));
          seen[i]!++;
          if (++done === n) resolve();
        });
      }
    });
    expect(seen.every((c) => c === 1)).toBe(true);
  });
});

describe('ThreadPool modules', () => {
  it('fails to start with a broken module, naming it', async () => {
    await expect(ThreadPool.start({ nthreads: 1, modules: [BROKEN] })).rejects.toThrow(/Cannot load task module .*broken\.mjs: this module is broken/);
  });
});

// Issue 11 items 5-7: tasks that have not started can be taken back from a thread.
describe('ThreadPool: queued tasks', () => {
  const nap = (ms: number) => new Promise((r) => setTimeout(() => r(ms), ms));

  it('revoke takes back a task queued on a busy thread; it never runs and its callback is never called', async () => {
    const pool = await ThreadPool.start({ nthreads: 1 });
    try {
      const sleep = inline(nap, pool);
      const count = inline(() => ((globalThis as { ran?: number }).ran = ((globalThis as { ran?: number }).ran ?? 0) + 1), pool);
      const long = run(pool, { key: 'long', fn: sleep, args: json([100]), inputs: [] });
      let called = false;
      pool.run({ key: 'victim', fn: count, args: json([]), inputs: [] }, () => (called = true));
      // Both go to the one thread in one batch; the victim waits behind the long task.
      await new Promise((r) => setImmediate(r));
      expect(pool.revoke(new Set(['victim', 'unknown']))).toEqual(['victim']);
      expect(pool.revoke(new Set(['victim']))).toEqual([]);
      expect(ok(await long)).toBe(100);
      expect(pool.revoke(new Set(['long']))).toEqual([]);
      // Taken back while still in the pool's own queue (before it went to a thread).
      pool.run({ key: 'queued', fn: count, args: json([]), inputs: [] }, () => (called = true));
      expect(pool.revoke(new Set(['queued']))).toEqual(['queued']);
      // The next task is the first to count: the victim never ran.
      expect(ok(await run(pool, { key: 'after', fn: count, args: json([]), inputs: [] }))).toBe(1);
      expect(called).toBe(false);
    } finally {
      await pool.close();
    }
  });

  it('starts waiting tasks best first: priority, then sequence', async () => {
    const pool = await ThreadPool.start({ nthreads: 1 });
    try {
      const order = inline(() => ((globalThis as { n?: number }).n = ((globalThis as { n?: number }).n ?? 0) + 1), pool);
      const task = (key: string, priority: number, sequence: number) => run(pool, { key, fn: order, args: json([]), inputs: [], priority, sequence });
      const rs = await Promise.all([task('a', 0, 2), task('b', -1, 1), task('c', 1, 4), task('d', 0, 1)]);
      expect(rs.map(ok)).toEqual([3, 4, 1, 2]);
    } finally {
      await pool.close();
    }
  });

  it('moves tasks queued behind a long one to the free thread', async () => {
    const pool = await ThreadPool.start({ nthreads: 2 });
    try {
      const sleep = inline(nap, pool);
      const double = inline((x: number) => x * 2, pool);
      let longDone = false;
      const long = run(pool, { key: 'long', fn: sleep, args: json([400]), inputs: [] }).then((r) => ((longDone = true), r));
      const shorts = Array.from({ length: 20 }, (_, i) => run(pool, { key: `s-${i}`, fn: double, args: json([i]), inputs: [] }));
      expect((await Promise.all(shorts)).map(ok)).toEqual(Array.from({ length: 20 }, (_, i) => i * 2));
      expect(longDone).toBe(false);
      expect(ok(await long)).toBe(400);
    } finally {
      await pool.close();
    }
  });

  it('a task queued behind one that kills its thread runs on the new thread', async () => {
    const pool = await ThreadPool.start({ nthreads: 1 });
    try {
      const exit = inline(() => process.exit(3), pool);
      const double = inline((x: number) => x * 2, pool);
      const crash = run(pool, { key: 'crash', fn: exit, args: json([]), inputs: [] });
      const next = run(pool, { key: 'next', fn: double, args: json([21]), inputs: [] });
      const r = await crash;
      expect(r.ok).toBe(false);
      expect(ok(await next)).toBe(42);
    } finally {
      await pool.close();
    }
  });
});

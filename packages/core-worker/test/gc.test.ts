import { describe, expect, it } from 'vitest';
import { ReleasedMemory, fullGcFunction } from '../src/runtime/gc.js';

const tick = () => new Promise((r) => setImmediate(r));

describe('ReleasedMemory', () => {
  it('runs one full collection once the released bytes reach the threshold, none below it', async () => {
    let calls = 0;
    const m = new ReleasedMemory(() => calls++, 100);
    m.add(60);
    await tick();
    expect(calls).toBe(0);
    m.add(50); // 110 >= 100
    m.add(500); // same turn: still one collection
    await tick();
    expect(calls).toBe(1);
    expect(m.collections).toBe(1);
    m.add(99); // the count starts over after a collection
    await tick();
    expect(calls).toBe(1);
    m.add(0);
    m.add(-5);
    m.add(1);
    await tick();
    expect(calls).toBe(2);
  });

  it('finds V8 full collection without --expose-gc, and it returns a dropped large buffer', async () => {
    const gc = fullGcFunction();
    expect(typeof gc).toBe('function');
    gc!();
    const before = process.memoryUsage().arrayBuffers;
    let big: Uint8Array | null = new Uint8Array(new SharedArrayBuffer(200 * 1024 * 1024)).fill(1);
    expect(process.memoryUsage().arrayBuffers - before).toBeGreaterThan(150 * 1024 * 1024);
    big = null;
    const m = new ReleasedMemory(gc!, 64 * 1024 * 1024);
    m.add(200 * 1024 * 1024);
    await tick();
    expect(m.collections).toBe(1);
    expect(big).toBeNull();
    // V8 frees array buffer backing stores on a background thread after the collection.
    const deadline = Date.now() + 5_000;
    while (process.memoryUsage().arrayBuffers - before >= 50 * 1024 * 1024 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(50 * 1024 * 1024);
  });
});

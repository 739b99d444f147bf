import { describe, expect, it } from 'vitest';
import { Batcher } from '../src/index.js';

const turn = () => new Promise((r) => setImmediate(r));

describe('Batcher', () => {
  it('gathers a synchronous burst into one batch', async () => {
    const sent: number[][] = [];
    const b = new Batcher<number>((batch) => sent.push(batch));
    for (let i = 0; i < 10; i++) b.push(i);
    await turn();
    expect(sent).toEqual([[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]);
  });

  it('slices a big burst by count, one slice per turn, in order', async () => {
    const sent: number[][] = [];
    const b = new Batcher<number>((batch) => sent.push(batch), 4);
    for (let i = 0; i < 10; i++) b.push(i);
    await turn();
    expect(sent).toEqual([[0, 1, 2, 3]]);
    await turn();
    await turn();
    expect(sent).toEqual([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]);
  });

  it('slices by weight, and a single heavy item still leaves on its own', async () => {
    const sent: number[][] = [];
    const b = new Batcher<number>((batch) => sent.push(batch), 10, (x) => x);
    for (const x of [3, 3, 3, 3, 50, 1]) b.push(x);
    for (let i = 0; i < 5; i++) await turn();
    // 3+3+3+3 = 12 ≥ 10 closes the first batch; 50 alone; then 1.
    expect(sent).toEqual([[3, 3, 3, 3], [50], [1]]);
  });

  it('close sends everything still queued at once', () => {
    const sent: number[][] = [];
    const b = new Batcher<number>((batch) => sent.push(batch), 2);
    for (let i = 0; i < 5; i++) b.push(i);
    b.close();
    expect(sent.flat()).toEqual([0, 1, 2, 3, 4]);
    b.push(9);
    expect(sent.flat()).toEqual([0, 1, 2, 3, 4]);
  });
});

/**
 * A small seeded pseudo-random generator for the fuzz test and the state machine simulation: the
 * same seed gives the same sequence, so a failure found with a seed can be replayed with it.
 */
export class Rng {
  private s: number;

  constructor(readonly seed: number) {
    this.s = seed >>> 0 || 0x9e3779b9;
  }

  /** A float in [0, 1) (mulberry32). */
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(xs: readonly T[]): T {
    if (xs.length === 0) throw new Error('Rng.pick from an empty list');
    return xs[this.int(xs.length)]!;
  }

  /** Up to `max` items of `xs` (with repeats). */
  some<T>(xs: readonly T[], max: number): T[] {
    if (xs.length === 0) return [];
    const n = this.int(max + 1);
    return Array.from({ length: n }, () => this.pick(xs));
  }

  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }

  /** A fresh seed for a derived generator. */
  fork(): Rng {
    return new Rng(this.int(2 ** 32));
  }
}

/** The seed from the environment variable `name` (decimal or 0x hex), else a random one. */
export function seedFrom(name: string): number {
  const text = process.env[name];
  if (text === undefined || text === '') return Math.floor(Math.random() * 2 ** 32);
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 32) throw new Error(`${name}=${text}: give a whole number from 0 to 4294967295.`);
  return n;
}

/** A whole number ≥ 1 from the environment variable `name`, else `fallback`. */
export function countFrom(name: string, fallback: number): number {
  const text = process.env[name];
  if (text === undefined || text === '') return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`${name}=${text}: give a whole number ≥ 1.`);
  return n;
}

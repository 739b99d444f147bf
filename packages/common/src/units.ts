import { totalmem, availableParallelism } from 'node:os';
import { InvalidArgumentError } from './errors.js';

// Looked up by what the user wrote: a Map, so `1constructor` is an unknown unit, not NaN bytes.
const UNITS: ReadonlyMap<string, number> = new Map(Object.entries({
  b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12,
  kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40,
  k: 1e3, m: 1e6, g: 1e9, t: 1e12,
}));

/** Parses a byte size: `4GB`, `512MiB`, `1e9`, `1000`. */
export function parseBytes(text: string | number, what = 'size'): number {
  if (typeof text === 'number') return text;
  const m = /^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*$/i.exec(text);
  const unit = m?.[2]?.toLowerCase() ?? '';
  if (!m || (unit !== '' && !UNITS.has(unit))) {
    throw new InvalidArgumentError(`Bad ${what} "${text}": use a number of bytes or a size such as 512MB, 4GB or 2GiB.`);
  }
  return Math.round(Number(m[1]) * (unit === '' ? 1 : UNITS.get(unit)!));
}

/**
 * A worker's memory limit: `auto` (the machine's memory shared by `nworkers`), a fraction of the
 * machine (`0.5`), a size (`4GB`), or 0/`none` for no limit.
 */
export function parseMemoryLimit(text: string | number | undefined, nworkers = 1): number {
  const total = totalmem();
  if (text === undefined || text === 'auto') return Math.floor(total / Math.max(1, nworkers));
  if (text === 'none' || text === 0 || text === '0') return 0;
  const n = typeof text === 'number' ? text : Number(text);
  if (!Number.isNaN(n) && n > 0 && n <= 1) return Math.floor(total * n);
  return parseBytes(text, 'memory limit');
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function cpuCount(): number {
  return availableParallelism();
}

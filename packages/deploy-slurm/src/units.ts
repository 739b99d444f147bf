import { InvalidArgumentError } from '@skein/common';

// Looked up by what the user wrote: a Map, so an unknown unit is an error, never a prototype member.
const UNITS: ReadonlyMap<string, number> = new Map(
  Object.entries({
    b: 1,
    k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12, p: 1e15, pb: 1e15,
    kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30, tib: 2 ** 40, pib: 2 ** 50,
  }),
);

/**
 * A job's memory, as a size: `128GB`, `500 MB`, `2GiB`, `4e9` or a number of bytes (GB = 10^9, GiB =
 * 2^30, as in Dask). Throws an `InvalidArgumentError` naming the option and showing what works.
 */
export function parseMemory(value: string | number, what = 'memory'): number {
  if (typeof value === 'number') {
    if (Number.isFinite(value) && value > 0) return Math.round(value);
    throw new InvalidArgumentError(`${what} must be a size > 0 (bytes, or a string such as "128GB"), got ${value}.`);
  }
  const m = /^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-z]*)\s*$/i.exec(String(value));
  const unit = m?.[2]?.toLowerCase() ?? '';
  const n = m ? Number(m[1]) * (unit === '' ? 1 : (UNITS.get(unit) ?? NaN)) : NaN;
  if (!(n > 0) || !Number.isFinite(n)) {
    throw new InvalidArgumentError(
      `${what} "${String(value)}" is not a size: write a number with a unit, e.g. "128GB", "500MB" or "2GiB" (GB = 10^9 bytes, GiB = 2^30).`,
      { details: { option: what, value: String(value) } },
    );
  }
  return Math.round(n);
}

/**
 * A walltime in seconds, from Slurm's forms: `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`,
 * `D-HH:MM:SS` (`"00:30:00"`, `"1-00:00:00"`), or a number of seconds.
 */
export function parseWalltime(value: string | number, what = 'walltime'): number {
  const bad = () =>
    new InvalidArgumentError(
      `${what} "${String(value)}" is not a walltime: write HH:MM:SS ("00:30:00"), D-HH:MM:SS ("1-00:00:00"), MM or MM:SS, or a number of seconds.`,
      { details: { option: what, value: String(value) } },
    );
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value > 0) return value;
    throw bad();
  }
  const m = /^\s*(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\s*$/.exec(String(value));
  if (!m) throw bad();
  const [, d, a, b, c] = m;
  const days = d === undefined ? 0 : Number(d);
  let h = 0;
  let min = 0;
  let s = 0;
  if (d !== undefined) {
    // D-HH, D-HH:MM, D-HH:MM:SS
    h = Number(a);
    min = b === undefined ? 0 : Number(b);
    s = c === undefined ? 0 : Number(c);
  } else if (c !== undefined) {
    h = Number(a);
    min = Number(b);
    s = Number(c);
  } else if (b !== undefined) {
    min = Number(a);
    s = Number(b);
  } else min = Number(a);
  // Seconds always below 60; minutes too once hours are given; hours below 24 once days are.
  const hoursGiven = c !== undefined || (d !== undefined && b !== undefined);
  if (s > 59 || (hoursGiven && min > 59) || (d !== undefined && h > 23)) throw bad();
  const total = ((days * 24 + h) * 60 + min) * 60 + s;
  if (total <= 0) throw bad();
  return total;
}

const pad = (n: number) => String(n).padStart(2, '0');

/** Seconds as `HH:MM:SS` (hours may pass 24), the form PBS, SGE and Slurm all read. */
export function formatHms(seconds: number): string {
  return `${pad(Math.floor(seconds / 3600))}:${pad(Math.floor((seconds % 3600) / 60))}:${pad(seconds % 60)}`;
}

/** Seconds as Slurm's `D-HH:MM:SS` (or `HH:MM:SS` under a day). */
export function formatSlurmTime(seconds: number): string {
  const days = Math.floor(seconds / 86400);
  const rest = formatHms(seconds % 86400);
  return days > 0 ? `${days}-${rest}` : rest;
}

/** Seconds as LSF's `[HH:]MM` (rounded up to a minute). */
export function formatLsfTime(seconds: number): string {
  const minutes = Math.ceil(seconds / 60);
  return minutes >= 60 ? `${Math.floor(minutes / 60)}:${pad(minutes % 60)}` : String(minutes);
}

/** Bytes for `#SBATCH --mem` (Slurm's K/M/G are 2^10, 2^20, 2^30), rounded up: '1K' at least. */
export function slurmMemory(n: number): string {
  if (n >= 2 ** 30) return `${Math.ceil(n / 2 ** 30)}G`;
  if (n >= 2 ** 20) return `${Math.ceil(n / 2 ** 20)}M`;
  if (n >= 2 ** 10) return `${Math.ceil(n / 2 ** 10)}K`;
  return '1K';
}

/** Bytes for PBS's `mem=` (PBS's kb/mb/gb are powers of 2), rounded up, in the largest unit that keeps 2 digits. */
export function pbsMemory(n: number): string {
  if (n >= 10 * 2 ** 30) return `${Math.ceil(n / 2 ** 30)}GB`;
  if (n >= 10 * 2 ** 20) return `${Math.ceil(n / 2 ** 20)}MB`;
  if (n >= 10 * 2 ** 10) return `${Math.ceil(n / 2 ** 10)}kB`;
  return `${n}B`;
}

/** Bytes for LSF's `-M`, in the cluster's LSF_UNIT_FOR_LIMITS (kb default; powers of 10 as dask-jobqueue), rounded up. */
export function lsfMemory(n: number, units: 'kb' | 'mb' | 'gb' | 'tb' = 'kb'): string {
  const div = { kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12 }[units];
  return String(Math.ceil(n / div));
}

/** Bytes as a worker memory limit (`--memory-limit`), exact: '4000000000' → '4GB' when it divides. */
export function workerMemory(n: number): string {
  const b = Math.floor(n);
  for (const [unit, size] of [['GB', 1e9], ['MB', 1e6], ['kB', 1e3]] as const) {
    if (b >= size && b % size === 0) return `${b / size}${unit}`;
  }
  return String(b);
}

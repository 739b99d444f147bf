/**
 * The worker's memory policy as a pure function (after Dask's "Worker Memory Management"). The
 * shell's monitor timer measures, calls `memoryDecision`, spills what it says and feeds pause
 * changes to the state. No I/O here.
 *
 * - target (of the limit, applied to managed memory, the results held in memory): above it,
 *   spill least recently used results until managed memory is below it.
 * - spill (applied to process memory, RSS): above it, spill least recently used results until
 *   RSS is below the target (or below spill when target is off), or nothing is left to spill.
 * - pause (applied to RSS): above it, start no new tasks; resume once below it again.
 * - terminate is the nanny's business.
 */

/** A threshold as a fraction of the memory limit, or false when it is turned off. */
export type MemoryFraction = number | false;

export interface MemoryFractions {
  target: MemoryFraction;
  spill: MemoryFraction;
  pause: MemoryFraction;
}

/** Dask's defaults. */
export const DEFAULT_MEMORY_FRACTIONS: Readonly<MemoryFractions> = { target: 0.6, spill: 0.7, pause: 0.8 };

export interface MemoryInputs {
  /** Process memory (resident set size), bytes. */
  rss: number;
  /** Bytes of results held in memory (that could be spilled). */
  managed: number;
  /** The worker's memory limit, bytes; 0 means no limit (nothing is ever spilled or paused). */
  limit: number;
  fractions: MemoryFractions;
  /** Whether the worker is paused now. */
  paused: boolean;
}

export interface MemoryDecision {
  /** Bytes of least recently used results to spill now (0: none). At most `managed`. */
  spillBytes: number;
  /** Which threshold asked for the spill. */
  spillReason: 'target' | 'spill' | undefined;
  /** Whether the worker should be paused. */
  paused: boolean;
  /** `paused` differs from the input: the shell feeds PauseChanged and logs a warning. */
  pauseChanged: boolean;
}

/** Decides what the worker should do about its memory. Pure. */
export function memoryDecision(m: MemoryInputs): MemoryDecision {
  const { rss, managed, limit, fractions: f } = m;
  if (!(limit > 0)) return { spillBytes: 0, spillReason: undefined, paused: false, pauseChanged: m.paused };
  let spillBytes = 0;
  let spillReason: MemoryDecision['spillReason'];
  if (f.target !== false && managed > f.target * limit) {
    spillBytes = managed - Math.floor(f.target * limit);
    spillReason = 'target';
  }
  if (f.spill !== false && rss > f.spill * limit) {
    // Like Dask: once past spill, free memory until the process is below target.
    const goal = (f.target !== false ? Math.min(f.target, f.spill) : f.spill) * limit;
    const want = rss - Math.floor(goal);
    if (want > spillBytes) {
      spillBytes = want;
      spillReason = 'spill';
    }
  }
  spillBytes = Math.max(0, Math.min(spillBytes, managed));
  if (spillBytes === 0) spillReason = undefined;
  const paused = f.pause !== false && rss > f.pause * limit;
  return { spillBytes, spillReason, paused, pauseChanged: paused !== m.paused };
}

import { InvalidArgumentError } from '@skein/common';

/** Options of `cluster.adapt()`. */
export interface AdaptiveOptions {
  /** Never fewer workers than this (default 0). */
  minimum?: number;
  /** Never more workers than this (default Infinity). */
  maximum?: number;
  /** Aim to finish queued and running work within this time (default 5000 ms, as in Dask). */
  targetDurationMs?: number;
  /** How often to ask the scheduler (default 1000 ms). */
  intervalMs?: number;
  /** Retire a worker only after this many consecutive recommendations to close it (default 3). */
  waitCount?: number;
  /**
   * Retire at most this share of the current workers in one round (at least one worker; default
   * 0.5; 1: all the scheduler names), so a sudden quiet moment shrinks a large cluster step by step.
   */
  maxRetireFraction?: number;
}

export interface CompiledAdaptiveOptions {
  minimum: number;
  maximum: number;
  targetDurationMs: number;
  intervalMs: number;
  waitCount: number;
  maxRetireFraction: number;
}

export function compileAdaptiveOptions(o: AdaptiveOptions): CompiledAdaptiveOptions {
  const minimum = o.minimum ?? 0;
  const maximum = o.maximum ?? Infinity;
  if (!Number.isInteger(minimum) || minimum < 0) throw new InvalidArgumentError(`adapt({ minimum }) must be a whole number ≥ 0, got ${minimum}.`);
  if (!(maximum >= minimum) || (maximum !== Infinity && !Number.isInteger(maximum))) {
    throw new InvalidArgumentError(`adapt({ maximum }) must be a whole number ≥ minimum (${minimum}), got ${maximum}.`);
  }
  const targetDurationMs = o.targetDurationMs ?? 5_000;
  const intervalMs = o.intervalMs ?? 1_000;
  const waitCount = o.waitCount ?? 3;
  if (!(targetDurationMs > 0)) throw new InvalidArgumentError(`adapt({ targetDurationMs }) must be > 0, got ${targetDurationMs}.`);
  if (!(intervalMs > 0)) throw new InvalidArgumentError(`adapt({ intervalMs }) must be > 0, got ${intervalMs}.`);
  if (!Number.isInteger(waitCount) || waitCount < 1) throw new InvalidArgumentError(`adapt({ waitCount }) must be a whole number ≥ 1, got ${waitCount}.`);
  const maxRetireFraction = o.maxRetireFraction ?? 0.5;
  if (!(maxRetireFraction > 0 && maxRetireFraction <= 1)) {
    throw new InvalidArgumentError(`adapt({ maxRetireFraction }) must be a fraction in (0, 1], got ${maxRetireFraction}.`);
  }
  return { minimum, maximum, targetDurationMs, intervalMs, waitCount, maxRetireFraction };
}

/** The inputs of one adaptive decision. */
export interface AdaptiveInput {
  /** The scheduler's recommended worker count. */
  target: number;
  /** Workers the cluster wants now (running or starting). */
  current: number;
  /** Names of the workers the scheduler would close first, best candidates first (only the cluster's own). */
  workersToClose: readonly string[];
  minimum: number;
  maximum: number;
  waitCount: number;
  /** How many consecutive rounds each worker has been named for closing (from the previous decision). */
  closeCounts: ReadonlyMap<string, number>;
  /** At most this share of `current` is retired in one round (at least one; default 1). */
  maxRetireFraction?: number;
}

export type AdaptiveDecision =
  | { type: 'same'; target: number }
  | { type: 'up'; target: number }
  | { type: 'down'; target: number; retire: string[] };

/**
 * One round of adaptive scaling (Dask's `AdaptiveCore.recommendations`), pure: clamps the
 * scheduler's target to [minimum, maximum]; scales up at once; scales down only the workers the
 * scheduler named in `waitCount` consecutive rounds, so one quiet moment does not flap the
 * cluster. Returns the decision and the counts to pass to the next round.
 */
export function decideAdaptive(input: AdaptiveInput): { decision: AdaptiveDecision; closeCounts: Map<string, number> } {
  const target = Math.max(input.minimum, Math.min(input.maximum, Math.max(0, Math.floor(input.target))));
  if (target > input.current) return { decision: { type: 'up', target }, closeCounts: new Map() };
  if (target === input.current) return { decision: { type: 'same', target }, closeCounts: new Map() };
  const candidates = [...new Set(input.workersToClose)].slice(0, input.current - target);
  const closeCounts = new Map<string, number>();
  const retire: string[] = [];
  for (const name of candidates) {
    const count = (input.closeCounts.get(name) ?? 0) + 1;
    if (count >= input.waitCount) retire.push(name);
    else closeCounts.set(name, count);
  }
  // The rest stay named: their counts carry over, so they go in the next rounds.
  const cap = Math.max(1, Math.floor(input.current * (input.maxRetireFraction ?? 1)));
  for (const name of retire.splice(cap)) closeCounts.set(name, input.waitCount);
  if (retire.length === 0) return { decision: { type: 'same', target }, closeCounts };
  return { decision: { type: 'down', target: input.current - retire.length, retire }, closeCounts };
}

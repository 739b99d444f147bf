/**
 * Pure pieces of the nanny's decisions: when to kill a worker for memory, and how long to wait
 * before starting a worker that keeps dying. No I/O, no timers.
 */
import { InvalidArgumentError } from '@skein/common/lite';

export interface RestartPolicyOptions {
  /** First delay after a quick death (ms). */
  baseDelayMs: number;
  /** Longest delay (ms). */
  maxDelayMs: number;
  /** A worker that lived at least this long resets the back-off (ms). */
  healthyAfterMs: number;
}

/** Exponential back-off for a worker that keeps dying soon after it starts. */
export class RestartPolicy {
  private quickDeaths = 0;
  constructor(readonly options: RestartPolicyOptions = { baseDelayMs: 250, maxDelayMs: 30_000, healthyAfterMs: 30_000 }) {}

  /** Records a death after `livedMs` and returns how long to wait before the next start. */
  onDeath(livedMs: number): number {
    if (livedMs >= this.options.healthyAfterMs) this.quickDeaths = 0;
    this.quickDeaths++;
    if (this.quickDeaths === 1) return 0;
    return Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** (this.quickDeaths - 2));
  }

  get consecutiveQuickDeaths(): number {
    return this.quickDeaths;
  }
}

/** Why the nanny must kill the worker now, or null. */
export function memoryVerdict(rss: number, memoryLimit: number, terminateFraction: number | false): string | null {
  if (!memoryLimit || terminateFraction === false) return null;
  const threshold = memoryLimit * terminateFraction;
  if (rss <= threshold) return null;
  const mb = (n: number) => `${(n / 1e6).toFixed(0)} MB`;
  return `memory past the limit: RSS ${mb(rss)} > ${Math.round(terminateFraction * 100)}% of the ${mb(memoryLimit)} memory limit`;
}

/** CPU percent between two samples of a process's CPU time (seconds). */
export function cpuPercent(prevCpuS: number, prevTimeMs: number, cpuS: number, timeMs: number): number {
  const dt = (timeMs - prevTimeMs) / 1000;
  return dt > 0 ? Math.max(0, ((cpuS - prevCpuS) / dt) * 100) : 0;
}

/** The worker's `--death-timeout SECONDS` (or `--death-timeout=SECONDS`) in ms, if given. */
export function workerDeathTimeoutMs(workerArgs: readonly string[]): number | undefined {
  let text: string | undefined;
  for (let i = 0; i < workerArgs.length; i++) {
    const a = workerArgs[i]!;
    if (a === '--death-timeout') text = workerArgs[i + 1];
    else if (a.startsWith('--death-timeout=')) text = a.slice('--death-timeout='.length);
  }
  if (text === undefined) return undefined;
  const seconds = text.trim() === '' ? NaN : Number(text);
  if (!(seconds >= 0)) throw new InvalidArgumentError(`--death-timeout must be a number of seconds, got "${text}".`);
  return seconds * 1000;
}

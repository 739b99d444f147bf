/**
 * Returning large freed values to the operating system at once. A result dropped from the store
 * is only garbage until V8's next full collection, which a worker whose JS heap barely changes may
 * not run for a long time: hundreds of MB stay in its RSS (the nanny's memory limits and the
 * spill/pause thresholds read RSS), and the next large value lands on fresh pages, which is much
 * slower to fill than reused memory (a 500 MB fetch here: 1.1–1.5 GB/s with the old buffer
 * collected, 0.5–0.6 GB/s without). Task threads matter as much as the main thread: a fetched
 * value reaches a thread as a SharedArrayBuffer, and the thread's own heap, idle between tasks,
 * keeps it alive (a worker consuming one 500 MB input per run grew by 480 MB per run). So once at
 * least `thresholdBytes` have been released, one full collection runs on the next turn of the
 * event loop, in the main thread and in every task thread; smaller frees never trigger one.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** V8's full collection: globalThis.gc under --expose-gc, else the same function from a fresh context. */
export function fullGcFunction(): (() => void) | undefined {
  const g = (globalThis as { gc?: () => void }).gc;
  if (typeof g === 'function') return g;
  try {
    setFlagsFromString('--expose-gc');
    const fn = runInNewContext('gc') as unknown;
    setFlagsFromString('--no-expose-gc');
    return typeof fn === 'function' ? (fn as () => void) : undefined;
  } catch {
    return undefined;
  }
}

export class ReleasedMemory {
  private released = 0;
  private scheduled = false;
  /** Full collections run so far (for tests and status). */
  collections = 0;

  /** Bytes released since the last collection. */
  get pending(): number {
    return this.released;
  }

  /** @param gc runs the collections (the main thread's and the task threads'). */
  constructor(
    private readonly gc: () => void,
    readonly thresholdBytes = 64 * 1024 * 1024,
  ) {}

  /** Counts `nbytes` just released; schedules one full collection once the threshold is reached. */
  add(nbytes: number): void {
    if (nbytes <= 0) return;
    this.released += nbytes;
    if (this.released < this.thresholdBytes || this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.released = 0;
      this.collections++;
      this.gc();
    }).unref();
  }
}

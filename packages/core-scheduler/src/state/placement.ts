import type { WorkerRecord } from './records.js';

/** The running workers with one number of threads, as a binary min-heap by (tasks processing, registration order). */
interface Group {
  nthreads: number;
  heap: WorkerRecord[];
}

/** Steal victims: the most loaded first (tasks per thread), the first registered among equals. */
function moreLoaded(a: WorkerRecord, b: WorkerRecord): boolean {
  const x = a.processing.size / a.nthreads;
  const y = b.processing.size / b.nthreads;
  return x !== y ? x > y : a.order < b.order;
}

function less(a: WorkerRecord, b: WorkerRecord): boolean {
  const x = a.processing.size;
  const y = b.processing.size;
  return x !== y ? x < y : a.order < b.order;
}

/**
 * Where the scheduler finds the least busy worker and the workers to steal from without a scan
 * of every worker per task (bench/scale.mjs, scale-workers): the running workers in one min-heap
 * per distinct number of threads, ordered by tasks processing, and the set of workers (running or
 * not) that hold more tasks than threads. Workers of one group share their slot count, so the top
 * of each heap stands for its group; a placement looks at one worker per group, O(groups), and a
 * task assigned or done moves its worker in O(log workers).
 *
 * The choice is the one a scan of the running workers in registration order makes: the lowest
 * load (tasks per thread), the first registered among equals.
 */
export class LoadIndex {
  private groups: Group[] = [];
  /** Workers with more tasks than threads (steal victims), registered ones only: a max-heap by load (see moreLoaded). */
  private readonly victims: WorkerRecord[] = [];

  /** How many workers hold more tasks than threads. */
  get overloadedCount(): number {
    return this.victims.length;
  }

  /** The running workers changed (joined, left, paused, resumed, retiring): regroup them. */
  rebuild(running: readonly WorkerRecord[]): void {
    for (const g of this.groups) for (const w of g.heap) w.loadPos = -1;
    const byThreads = new Map<number, WorkerRecord[]>();
    for (const w of running) {
      let heap = byThreads.get(w.nthreads);
      if (!heap) byThreads.set(w.nthreads, (heap = []));
      heap.push(w);
    }
    this.groups = [];
    for (const [nthreads, heap] of byThreads) {
      // A sorted array is a heap.
      heap.sort((a, b) => (less(a, b) ? -1 : less(b, a) ? 1 : 0));
      const g = this.groups.length;
      heap.forEach((w, i) => {
        w.loadPos = i;
        w.loadGroup = g;
      });
      this.groups.push({ nthreads, heap });
    }
  }

  /** `ws.processing` changed size; `registered`: ws is still one of the state's workers. */
  changed(ws: WorkerRecord, registered: boolean): void {
    const over = registered && ws.processing.size > ws.nthreads;
    if (over !== ws.overloaded) {
      ws.overloaded = over;
      if (over) {
        ws.victimPos = this.victims.length;
        this.victims.push(ws);
        this.victimUp(ws.victimPos);
      } else this.removeVictim(ws);
    } else if (over) this.victimUp(this.victimDown(ws.victimPos));
    if (ws.loadPos < 0) return;
    const heap = this.groups[ws.loadGroup]!.heap;
    this.up(heap, this.down(heap, ws.loadPos));
  }

  /** A worker left the state (or lost all its tasks at once): no longer a victim. */
  forget(ws: WorkerRecord): void {
    if (ws.overloaded) {
      ws.overloaded = false;
      this.removeVictim(ws);
    }
  }

  /**
   * Up to `max` steal victims but `except`, the most loaded first (the first registered among
   * equals), into `out` (emptied first): O(max log max), not a sort of every victim.
   */
  topVictims(except: WorkerRecord, max: number, out: WorkerRecord[]): void {
    out.length = 0;
    const h = this.victims;
    if (h.length === 0) return;
    // Best-first walk of the heap: a frontier of heap positions, itself a heap, the most loaded on top.
    const f = this.frontier;
    f.length = 0;
    f.push(0);
    while (f.length > 0 && out.length < max) {
      const top = f[0]!;
      const last = f.pop()!;
      if (f.length > 0) {
        f[0] = last;
        this.frontierDown(h, f);
      }
      for (let c = 2 * top + 1; c <= 2 * top + 2 && c < h.length; c++) {
        f.push(c);
        this.frontierUp(h, f);
      }
      const w = h[top]!;
      if (w !== except) out.push(w);
    }
  }

  private readonly frontier: number[] = [];

  private frontierDown(h: readonly WorkerRecord[], f: number[]): void {
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < f.length && moreLoaded(h[f[l]!]!, h[f[m]!]!)) m = l;
      if (r < f.length && moreLoaded(h[f[r]!]!, h[f[m]!]!)) m = r;
      if (m === i) return;
      const t = f[i]!;
      f[i] = f[m]!;
      f[m] = t;
      i = m;
    }
  }

  private frontierUp(h: readonly WorkerRecord[], f: number[]): void {
    for (let i = f.length - 1; i > 0; ) {
      const p = (i - 1) >> 1;
      if (!moreLoaded(h[f[i]!]!, h[f[p]!]!)) return;
      const t = f[i]!;
      f[i] = f[p]!;
      f[p] = t;
      i = p;
    }
  }

  private removeVictim(ws: WorkerRecord): void {
    const h = this.victims;
    const i = ws.victimPos;
    ws.victimPos = -1;
    const last = h.pop()!;
    if (last === ws) return;
    h[i] = last;
    last.victimPos = i;
    this.victimUp(this.victimDown(i));
  }

  private victimUp(i: number): number {
    const h = this.victims;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!moreLoaded(h[i]!, h[p]!)) break;
      this.victimSwap(i, p);
      i = p;
    }
    return i;
  }

  private victimDown(i: number): number {
    const h = this.victims;
    const n = h.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && moreLoaded(h[l]!, h[m]!)) m = l;
      if (r < n && moreLoaded(h[r]!, h[m]!)) m = r;
      if (m === i) return i;
      this.victimSwap(i, m);
      i = m;
    }
  }

  private victimSwap(i: number, j: number): void {
    const h = this.victims;
    const a = h[i]!;
    const b = h[j]!;
    h[i] = b;
    h[j] = a;
    a.victimPos = j;
    b.victimPos = i;
  }

  /**
   * The running worker with the lowest load (the first registered among equals), among those
   * `hasRoom` accepts when given; hasRoom must answer the same for workers with the same number
   * of threads and tasks, and no for more tasks if no for fewer (a slot count per thread count).
   */
  leastBusy(hasRoom?: (ws: WorkerRecord) => boolean): WorkerRecord | undefined {
    let best: WorkerRecord | undefined;
    let bestLoad = Infinity;
    for (const g of this.groups) {
      const top = g.heap[0];
      if (top === undefined || (hasRoom !== undefined && !hasRoom(top))) continue;
      const load = top.processing.size / top.nthreads;
      if (load < bestLoad || (load === bestLoad && best !== undefined && top.order < best.order)) {
        best = top;
        bestLoad = load;
      }
    }
    return best;
  }

  /** What is wrong with the index against the state's workers and running list (validateState), or null. */
  problem(workers: ReadonlyMap<string, WorkerRecord>, running: readonly WorkerRecord[] | null): string | null {
    for (const [i, w] of this.victims.entries()) {
      if (workers.get(w.address) !== w) return `steal victim ${w.address} is not registered`;
      if (w.victimPos !== i) return `steal victim ${w.address} misplaced`;
      if (i > 0 && moreLoaded(w, this.victims[(i - 1) >> 1]!)) return `steal victim heap order broken at ${w.address}`;
    }
    for (const w of workers.values()) {
      const listed = w.victimPos >= 0 && this.victims[w.victimPos] === w;
      if (w.overloaded !== w.processing.size > w.nthreads || w.overloaded !== listed) return `${w.address} overloaded=${w.overloaded} with ${w.processing.size} tasks on ${w.nthreads} threads`;
    }
    if (running === null) return null;
    let members = 0;
    for (const [g, { nthreads, heap }] of this.groups.entries()) {
      for (let i = 0; i < heap.length; i++) {
        const w = heap[i]!;
        members++;
        if (w.loadPos !== i || w.loadGroup !== g || w.nthreads !== nthreads) return `${w.address} misplaced in the load index`;
        if (i > 0 && less(w, heap[(i - 1) >> 1]!)) return `load heap order broken at ${w.address}`;
      }
    }
    if (members !== running.length || running.some((w) => w.loadPos < 0)) return `the load index holds ${members} workers, ${running.length} run`;
    return null;
  }

  private up(heap: WorkerRecord[], i: number): number {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(heap[i]!, heap[p]!)) break;
      this.swap(heap, i, p);
      i = p;
    }
    return i;
  }

  private down(heap: WorkerRecord[], i: number): number {
    const n = heap.length;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < n && less(heap[l]!, heap[m]!)) m = l;
      if (r < n && less(heap[r]!, heap[m]!)) m = r;
      if (m === i) return i;
      this.swap(heap, i, m);
      i = m;
    }
  }

  private swap(heap: WorkerRecord[], i: number, j: number): void {
    const a = heap[i]!;
    const b = heap[j]!;
    heap[i] = b;
    heap[j] = a;
    a.loadPos = j;
    b.loadPos = i;
  }
}

/**
 * A pool of worker_threads that runs task functions. Each thread is kept fed with a few tasks at
 * once (pipelining) while tasks are short, so tiny tasks do not pay a thread round trip each;
 * a thread running long tasks gets one at a time so waiting tasks go to the first free thread.
 *
 * Tasks wait in the pool's queue best first (priority, then sequence). A task sent to a thread
 * but not started yet can be taken back (`revoke`, and when the task ahead of it runs long): each
 * thread has a shared array of claim cells, one per queued task, and a thread starts a task only
 * if it wins the cell (compare-and-swap) before the main thread takes the task back. A thread
 * whose current task has run longer than HOLD_MS gets no more tasks, and the tasks queued behind
 * it go back to the pool's queue when another thread has nothing to do.
 */
import { Worker as Thread } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { RemoteError } from '@skein/protocol';
import { SkeinError, toRemoteError } from '@skein/common';
import type { Encoded, FunctionSpec } from '../state/types.js';
import { exactBytes, asBuffer } from './execute.js';
import { CLAIM_CELLS, PACK_MAX_BYTES, claimCell, claimTag, decodeDone, encodeRun, type DoneBatch, type FromThread, type ThreadTask, type ToThread } from './messages.js';
import { Packer } from './pack.js';

export interface PoolTask {
  key: string;
  fn: FunctionSpec;
  args: Encoded;
  inputs: ReadonlyArray<readonly [string, Encoded]>;
  /** Encoding asked for the result (protocol Encoding; 0 or absent: follow the arguments). */
  resultEncoding?: number;
  /** Higher runs first. Default 0. */
  priority?: number;
  /** Among equal priorities, lower runs first (the scheduler's order). Default 0. */
  sequence?: number;
}

export type PoolResult =
  | { ok: true; value: Encoded; typeName: string; startMs: number; stopMs: number }
  | { ok: false; error: RemoteError; startMs: number; stopMs: number };

export interface ThreadPoolOptions {
  nthreads: number;
  /** Absolute paths or URLs of ES modules whose exported functions are registered. */
  modules?: readonly string[];
  /** Tasks queued on one thread at once while its tasks are short. Default 4. */
  pipelineDepth?: number;
  /** The process's package directories (packages.ts): each thread's imports fall back to them. */
  packageDirs?: SharedArrayBuffer;
}

interface Pending {
  id: number;
  task: PoolTask;
  cb: (r: PoolResult) => void;
  priority: number;
  sequence: number;
  /** The thread it was sent to, or null while in the pool's queue (or after it left the pool). */
  slot: Slot | null;
  /** Left the pool: finished, failed or revoked. */
  gone: boolean;
}

interface Slot {
  thread: Thread;
  inflight: Map<number, Pending>;
  /** Moving average of task durations on this thread, ms. */
  avgMs: number;
  outgoing: ThreadTask[];
  transfer: ArrayBuffer[];
  packer: Packer;
  /** Functions this thread has been sent (with source, for inline ones): by hash, and by name. */
  inlineFns: Map<string, ThreadTask['fn']>;
  registeredFns: Map<string, ThreadTask['fn']>;
  /** Claim cells shared with the thread (see claimCell / claimTag in messages.ts). */
  claims: Int32Array;
  /** [0]: when the thread's current task started (epoch ms), 0 while it is idle. Shared. */
  clock: Float64Array;
}

/** Long tasks (by moving average) run one per thread. */
const SHORT_TASK_MS = 5;
/** Tasks this short (moving average) are sent to a thread many at a time. */
const TINY_TASK_MS = 0.2;
/** Tasks in flight on one thread while its tasks are tiny. */
const TINY_TASK_WINDOW = 512;
/** Buffers at least this large are transferred to threads; smaller ones are cheaper to clone. */
const TRANSFER_MIN_BYTES = 64 * 1024;
/**
 * A task that has run this long holds its thread: no task is queued behind it, and the ones
 * queued behind it move to a thread with nothing to do (checked every HOLD_MS while tasks are
 * queued on threads).
 */
const HOLD_MS = 3;

function better(a: Pending, b: Pending): boolean {
  return a.priority !== b.priority ? a.priority > b.priority : a.sequence < b.sequence;
}

function threadScript(): URL {
  const here = new URL('./thread.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  // Running from TypeScript sources (tests): use the compiled thread.
  return new URL('../../dist/runtime/thread.js', import.meta.url);
}

export class ThreadPool {
  private readonly slots: Slot[] = [];
  /** Tasks waiting for a thread, best first from queueHead (entries that left are `gone`). */
  private queue: Pending[] = [];
  private queueHead = 0;
  private queued = 0;
  private watch: NodeJS.Timeout | undefined;
  private readonly sources = new Map<string, string>();
  private nextId = 1;
  private pumpScheduled = false;
  private closed = false;
  private readonly depth: number;
  /** Names of the functions the modules export. */
  registeredFunctions: string[] = [];

  private constructor(private readonly opts: ThreadPoolOptions) {
    this.depth = Math.max(1, opts.pipelineDepth ?? 4);
  }

  static async start(opts: ThreadPoolOptions): Promise<ThreadPool> {
    const pool = new ThreadPool(opts);
    try {
      const names = await Promise.all(Array.from({ length: Math.max(1, opts.nthreads) }, () => pool.spawn()));
      pool.registeredFunctions = names[0] ?? [];
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  get size(): number {
    return this.slots.length;
  }

  /** Tasks waiting for or running on a thread. */
  get busy(): number {
    let n = this.queued;
    for (const s of this.slots) n += s.inflight.size;
    return n;
  }

  /**
   * Takes back the tasks of `keys` that have not started (waiting in the pool or queued on a
   * thread) and returns their keys: their callbacks are never called. A task that runs or ran is
   * left alone (its result comes). One pass over the tasks in the pool, so that running a task
   * costs no index by key.
   */
  revoke(keys: ReadonlySet<string>): string[] {
    const out: string[] = [];
    if (keys.size === 0) return out;
    for (let i = this.queueHead; i < this.queue.length; i++) {
      const p = this.queue[i]!;
      if (p.gone || !keys.has(p.task.key)) continue;
      p.gone = true;
      this.queued--;
      out.push(p.task.key);
    }
    for (const slot of this.slots) {
      for (const p of slot.inflight.values()) {
        if (!keys.has(p.task.key) || !this.takeBack(slot, p)) continue;
        p.gone = true;
        out.push(p.task.key);
      }
    }
    return out;
  }

  /** Remembers an inline function's source; each thread compiles it on first use. */
  addFunction(hash: string, source: string): void {
    if (source && !this.sources.has(hash)) this.sources.set(hash, source);
  }

  /** Asks every thread for a full garbage collection (see gc.ts). */
  collectGarbage(): void {
    for (const s of this.slots) s.thread.postMessage({ t: 'gc' } satisfies ToThread);
  }

  hasFunction(hash: string): boolean {
    return this.sources.has(hash);
  }

  /** Runs a task; `cb` is called once with its result. */
  run(task: PoolTask, cb: (r: PoolResult) => void): void {
    if (this.closed) {
      const now = Date.now();
      cb({ ok: false, error: toRemoteError(new SkeinError('cancelled', 'The worker is closing.'), task.key), startMs: now, stopMs: now });
      return;
    }
    const p: Pending = { id: this.nextId++, task, cb, priority: task.priority ?? 0, sequence: task.sequence ?? 0, slot: null, gone: false };
    this.enqueue(p);
    if (!this.pumpScheduled) {
      this.pumpScheduled = true;
      queueMicrotask(this.pump);
    }
  }

  /** Terminates the threads; tasks still running get a cancelled error. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.watch) clearInterval(this.watch);
    const slots = this.slots.splice(0);
    await Promise.allSettled(slots.map((s) => s.thread.terminate()));
    const now = Date.now();
    const err = (key: string) => toRemoteError(new SkeinError('cancelled', 'The worker closed while the task ran.'), key);
    for (const s of slots) for (const p of s.inflight.values()) p.cb({ ok: false, error: err(p.task.key), startMs: now, stopMs: now });
    for (const p of this.queue.splice(this.queueHead)) if (!p.gone) p.cb({ ok: false, error: err(p.task.key), startMs: now, stopMs: now });
    this.queued = 0;
  }

  /** Puts a task into the queue at its place (best first); most arrive in order, at the end. */
  private enqueue(p: Pending): void {
    p.slot = null;
    this.queued++;
    const q = this.queue;
    let hi = q.length;
    if (hi === this.queueHead || !better(p, q[hi - 1]!)) {
      q.push(p);
      return;
    }
    let lo = this.queueHead;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (better(p, q[mid]!)) hi = mid;
      else lo = mid + 1;
    }
    q.splice(lo, 0, p);
  }

  /** Takes a task sent to `slot` back if the thread has not started it. */
  private takeBack(slot: Slot, p: Pending): boolean {
    const tag = claimTag(p.id);
    if (Atomics.compareExchange(slot.claims, claimCell(p.id), tag, 0) !== tag) return false;
    slot.inflight.delete(p.id);
    p.slot = null;
    return true;
  }

  /**
   * Every HOLD_MS while tasks are queued on threads: when a thread has nothing to do, a thread
   * whose task has run longer than HOLD_MS gives back the tasks queued behind it, for it.
   */
  private readonly check = (): void => {
    if (this.closed) return;
    const now = Date.now();
    let waiting = false;
    let moved = false;
    // Only for a thread with nothing to do: moving tasks between busy threads (or on a pool of
    // one) gains nothing and costs a resend (a thread the OS paused looks busy too).
    let idle = false;
    for (const slot of this.slots) if (slot.inflight.size === 0) idle = true;
    for (const slot of this.slots) {
      if (slot.inflight.size < 2) continue;
      if (!idle) {
        waiting = true;
        continue;
      }
      const since = slot.clock[0]!;
      if (since === 0 || now - since <= HOLD_MS) {
        waiting = true;
        continue;
      }
      // Newest first: the thread runs them oldest first, so stop at the first it has claimed.
      const sent = [...slot.inflight.values()];
      const back: Pending[] = [];
      for (let i = sent.length - 1; i >= 0; i--) {
        const p = sent[i]!;
        if (!this.takeBack(slot, p)) break;
        back.push(p);
      }
      // Oldest first: in order, they mostly go to the end of the queue.
      for (let i = back.length - 1; i >= 0; i--) this.enqueue(back[i]!);
      if (back.length > 0) moved = true;
    }
    if (moved) this.pump();
    else if (!waiting && this.watch) {
      clearInterval(this.watch);
      this.watch = undefined;
    }
  };

  private spawn(): Promise<string[]> {
    const thread = new Thread(threadScript());
    const claims = new Int32Array(new SharedArrayBuffer(CLAIM_CELLS * 4));
    const clock = new Float64Array(new SharedArrayBuffer(8));
    const slot: Slot = { thread, inflight: new Map(), avgMs: 0, outgoing: [], transfer: [], packer: new Packer(), inlineFns: new Map(), registeredFns: new Map(), claims, clock };
    this.slots.push(slot);
    return new Promise<string[]>((resolve, reject) => {
      let ready = false;
      thread.on('message', (msg: FromThread) => {
        switch (msg.t) {
          case 'ready':
            ready = true;
            resolve(msg.functions);
            return;
          case 'init-error':
            reject(new SkeinError('invalid_argument', msg.message));
            return;
          case 'done':
            this.onResults(slot, msg);
            return;
        }
      });
      thread.on('error', (err) => {
        if (!ready) reject(err);
        this.onThreadDeath(slot, `task thread crashed: ${err.message}`);
      });
      thread.on('exit', (code) => {
        if (!ready) reject(new SkeinError('internal', `task thread exited during start (code ${code})`));
        this.onThreadDeath(slot, `task thread exited with code ${code} (did a task call process.exit?)`);
      });
      const init: ToThread = { t: 'init', modules: [...(this.opts.modules ?? [])], claims: claims.buffer as SharedArrayBuffer, clock: clock.buffer as SharedArrayBuffer, packageDirs: this.opts.packageDirs };
      thread.postMessage(init);
    });
  }

  private onThreadDeath(slot: Slot, reason: string): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    const now = Date.now();
    for (const p of [...slot.inflight.values()]) {
      // A task the thread never started runs on another thread.
      if (!this.closed && this.takeBack(slot, p)) {
        this.enqueue(p);
        continue;
      }
      p.gone = true;
      p.cb({ ok: false, error: toRemoteError(new SkeinError('internal', `Task ${p.task.key} failed: ${reason}.`), p.task.key), startMs: now, stopMs: now });
    }
    slot.inflight.clear();
    if (!this.closed) {
      this.spawn().then(
        () => this.pump(),
        () => undefined,
      );
    }
  }

  private onResults(slot: Slot, msg: DoneBatch): void {
    const packed = msg.packed;
    for (const r of decodeDone(msg)) {
      const p = slot.inflight.get(r.id);
      if (!p) continue;
      slot.inflight.delete(r.id);
      p.gone = true;
      const ms = r.stopMs - r.startMs;
      slot.avgMs = slot.avgMs * 0.8 + ms * 0.2;
      if (r.ok) {
        // A packed result is copied out (into Node's buffer pool for small sizes): a view would keep
        // the whole batch's buffer alive as long as this one result.
        const data = r.data ? asBuffer(r.data) : Buffer.from(packed!.subarray(r.at, r.at + r.len));
        p.cb({ ok: true, value: { encoding: r.enc, data }, typeName: r.typeName, startMs: r.startMs, stopMs: r.stopMs });
      } else {
        p.cb({ ok: false, error: r.error, startMs: r.startMs, stopMs: r.stopMs });
      }
    }
    this.pump();
  }

  private readonly pump = (): void => {
    this.pumpScheduled = false;
    if (this.closed) return;
    const n = this.slots.length;
    if (n === 0) return;
    const now = Date.now();
    // Fill the emptiest threads first, one task at a time, up to each thread's limit; a thread
    // busy with a long task gets none.
    let progress = true;
    while (this.queued > 0 && progress) {
      progress = false;
      for (let i = 0; i < n && this.queued > 0; i++) {
        const slot = this.slots[i]!;
        if (!this.accepts(slot, now)) continue;
        let p = this.queue[this.queueHead]!;
        while (p.gone) p = this.queue[++this.queueHead]!;
        // The claim cell is still held by an older task queued on this thread: try another one.
        if (Atomics.load(slot.claims, claimCell(p.id)) > 0) continue;
        this.queueHead++;
        this.queued--;
        this.assign(slot, p);
        progress = true;
      }
    }
    if (this.queued === 0 && this.queueHead > 0) {
      this.queue = [];
      this.queueHead = 0;
    } else if (this.queueHead >= 1024 && this.queueHead * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.queueHead);
      this.queueHead = 0;
    }
    let queuedOnThreads = false;
    for (const slot of this.slots) {
      if (slot.inflight.size > 1) queuedOnThreads = true;
      if (slot.outgoing.length === 0) continue;
      const packed = slot.packer.finish();
      if (packed) slot.transfer.push(packed.buffer as ArrayBuffer);
      const msg: ToThread = encodeRun(slot.outgoing, packed);
      slot.thread.postMessage(msg, slot.transfer);
      slot.outgoing = [];
      slot.transfer = [];
    }
    if (queuedOnThreads && !this.watch) {
      this.watch = setInterval(this.check, HOLD_MS);
      this.watch.unref();
    }
  };

  /** Whether `slot` takes another task now. */
  private accepts(slot: Slot, now: number): boolean {
    // Long tasks one at a time; very short ones in large batches, so the cost of a
    // postMessage (tens of µs) is shared by many tasks.
    const limit = slot.avgMs > SHORT_TASK_MS ? 1 : slot.avgMs < TINY_TASK_MS ? TINY_TASK_WINDOW : this.depth;
    const n = slot.inflight.size + slot.outgoing.length;
    if (n >= limit) return false;
    if (n === 0) return true;
    const since = slot.clock[0]!;
    return since === 0 || now - since <= HOLD_MS;
  }

  private assign(slot: Slot, p: Pending): void {
    const { task } = p;
    const fn = this.threadFunction(slot, task.fn);
    const a = task.args.data;
    const small = a.byteLength <= PACK_MAX_BYTES && !(a.buffer instanceof SharedArrayBuffer);
    const args = small ? null : this.bytes(slot, a);
    const at = small ? slot.packer.add(a) : 0;
    const inputs: ThreadTask['inputs'] = [];
    for (const [k, v] of task.inputs) inputs.push([k, v.encoding, this.bytes(slot, v.data)]);
    Atomics.store(slot.claims, claimCell(p.id), claimTag(p.id));
    p.slot = slot;
    slot.inflight.set(p.id, p);
    slot.outgoing.push({ id: p.id, key: task.key, fn, enc: task.args.encoding, renc: task.resultEncoding ?? 0, args, at, len: a.byteLength, inputs });
  }

  /**
   * The function as the thread gets it: with its source the first time this thread sees it, else
   * one shared object per function and thread (a batch sends each distinct function once).
   */
  private threadFunction(slot: Slot, spec: FunctionSpec): ThreadTask['fn'] {
    if (spec.kind === 'registered') {
      let f = slot.registeredFns.get(spec.name);
      if (!f) slot.registeredFns.set(spec.name, (f = { kind: 'registered', name: spec.name }));
      return f;
    }
    const known = slot.inlineFns.get(spec.hash);
    if (known) return known;
    const source = this.sources.get(spec.hash);
    // Without a source yet the thread answers "never sent"; ask again next time.
    if (!source) return { kind: 'inline', hash: spec.hash, name: spec.name };
    slot.inlineFns.set(spec.hash, { kind: 'inline', hash: spec.hash, name: spec.name });
    return { kind: 'inline', hash: spec.hash, name: spec.name, source };
  }

  /** Bytes to send: a view on its own buffer is cloned as is; a slice of a larger one is copied and transferred. */
  private bytes(slot: Slot, data: Buffer): Uint8Array {
    const exact = exactBytes(data);
    if (exact !== data && exact.byteLength >= TRANSFER_MIN_BYTES) slot.transfer.push(exact.buffer as ArrayBuffer);
    return exact;
  }
}

/**
 * A pool of worker_threads that runs task functions. Each thread is kept fed with a few tasks at
 * once (pipelining) while tasks are short, so tiny tasks do not pay a thread round trip each;
 * a thread running long tasks gets one at a time so waiting tasks go to the first free thread.
 */
import { Worker as Thread } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { RemoteError } from '@skein/protocol';
import { SkeinError, toRemoteError } from '@skein/common';
import type { Encoded, FunctionSpec } from '../state/types.js';
import { exactBytes, asBuffer } from './execute.js';
import { PACK_MAX_BYTES, decodeDone, encodeRun, type DoneBatch, type FromThread, type ThreadTask, type ToThread } from './messages.js';
import { Packer } from './pack.js';

export interface PoolTask {
  key: string;
  fn: FunctionSpec;
  args: Encoded;
  inputs: ReadonlyArray<readonly [string, Encoded]>;
  /** Encoding asked for the result (protocol Encoding; 0 or absent: follow the arguments). */
  resultEncoding?: number;
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
}

interface Pending {
  id: number;
  task: PoolTask;
  cb: (r: PoolResult) => void;
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
}

/** Long tasks (by moving average) run one per thread. */
const SHORT_TASK_MS = 5;
/** Tasks this short (moving average) are sent to a thread many at a time. */
const TINY_TASK_MS = 0.2;
/** Tasks in flight on one thread while its tasks are tiny. */
const TINY_TASK_WINDOW = 512;
/** Buffers at least this large are transferred to threads; smaller ones are cheaper to clone. */
const TRANSFER_MIN_BYTES = 64 * 1024;

function threadScript(): URL {
  const here = new URL('./thread.js', import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  // Running from TypeScript sources (tests): use the compiled thread.
  return new URL('../../dist/runtime/thread.js', import.meta.url);
}

export class ThreadPool {
  private readonly slots: Slot[] = [];
  private readonly queue: Pending[] = [];
  private queueHead = 0;
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
    let n = this.queue.length - this.queueHead;
    for (const s of this.slots) n += s.inflight.size;
    return n;
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
    this.queue.push({ id: this.nextId++, task, cb });
    if (!this.pumpScheduled) {
      this.pumpScheduled = true;
      queueMicrotask(this.pump);
    }
  }

  /** Terminates the threads; tasks still running get a cancelled error. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const slots = this.slots.splice(0);
    await Promise.allSettled(slots.map((s) => s.thread.terminate()));
    const now = Date.now();
    const err = (key: string) => toRemoteError(new SkeinError('cancelled', 'The worker closed while the task ran.'), key);
    for (const s of slots) for (const p of s.inflight.values()) p.cb({ ok: false, error: err(p.task.key), startMs: now, stopMs: now });
    for (const p of this.queue.splice(this.queueHead)) p.cb({ ok: false, error: err(p.task.key), startMs: now, stopMs: now });
  }

  private spawn(): Promise<string[]> {
    const thread = new Thread(threadScript());
    const slot: Slot = { thread, inflight: new Map(), avgMs: 0, outgoing: [], transfer: [], packer: new Packer(), inlineFns: new Map(), registeredFns: new Map() };
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
      const init: ToThread = { t: 'init', modules: [...(this.opts.modules ?? [])] };
      thread.postMessage(init);
    });
  }

  private onThreadDeath(slot: Slot, reason: string): void {
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    this.slots.splice(i, 1);
    const now = Date.now();
    for (const p of slot.inflight.values()) {
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
    // Fill the emptiest threads first, one task at a time, up to each thread's limit.
    let progress = true;
    while (this.queueHead < this.queue.length && progress) {
      progress = false;
      for (let i = 0; i < n && this.queueHead < this.queue.length; i++) {
        const slot = this.slots[i]!;
        // Long tasks one at a time; very short ones in large batches, so the cost of a
        // postMessage (tens of µs) is shared by many tasks.
        const limit = slot.avgMs > SHORT_TASK_MS ? 1 : slot.avgMs < TINY_TASK_MS ? TINY_TASK_WINDOW : this.depth;
        if (slot.inflight.size + slot.outgoing.length >= limit) continue;
        const p = this.queue[this.queueHead++]!;
        this.assign(slot, p);
        progress = true;
      }
    }
    if (this.queueHead > 0 && this.queueHead === this.queue.length) {
      this.queue.length = 0;
      this.queueHead = 0;
    }
    for (const slot of this.slots) {
      if (slot.outgoing.length === 0) continue;
      const packed = slot.packer.finish();
      if (packed) slot.transfer.push(packed.buffer as ArrayBuffer);
      const msg: ToThread = encodeRun(slot.outgoing, packed);
      slot.thread.postMessage(msg, slot.transfer);
      slot.outgoing = [];
      slot.transfer = [];
    }
  };

  private assign(slot: Slot, p: Pending): void {
    const { task } = p;
    const fn = this.threadFunction(slot, task.fn);
    const a = task.args.data;
    const small = a.byteLength <= PACK_MAX_BYTES && !(a.buffer instanceof SharedArrayBuffer);
    const args = small ? null : this.bytes(slot, a);
    const at = small ? slot.packer.add(a) : 0;
    const inputs: ThreadTask['inputs'] = [];
    for (const [k, v] of task.inputs) inputs.push([k, v.encoding, this.bytes(slot, v.data)]);
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

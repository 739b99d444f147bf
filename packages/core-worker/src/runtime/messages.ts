/** Messages between the main thread and the task threads (structured clone). */
import type { RemoteError } from '@skein/protocol';

export type ThreadFunction =
  | { kind: 'registered'; name: string }
  | { kind: 'inline'; hash: string; name: string; source?: string };

export interface ThreadTask {
  id: number;
  key: string;
  fn: ThreadFunction;
  /** Encoding of the argument array. */
  enc: number;
  /** Encoding asked for the result (0: follow the arguments). */
  renc: number;
  /** The argument bytes, or null when they are packed: bytes [at, at + len) of the batch's `packed`. */
  args: Uint8Array | null;
  at: number;
  len: number;
  /** [key, encoding, bytes] of each input. */
  inputs: Array<[string, number, Uint8Array]>;
}

export type ThreadResult =
  /** data null: the bytes are [at, at + len) of the batch's `packed` (small results). */
  | { id: number; ok: true; enc: number; data: Uint8Array | null; at: number; len: number; typeName: string; startMs: number; stopMs: number }
  | { id: number; ok: false; error: RemoteError; startMs: number; stopMs: number };

/**
 * A batch of tasks as it crosses to a thread: column by column. Structured clone writes every
 * property name of every object and makes an ArrayBuffer per Uint8Array; for tiny tasks that cost
 * more than running them. Small byte arrays travel packed in one buffer (`packed`, at offsets).
 */
export interface RunBatch {
  t: 'run';
  ids: Float64Array;
  keys: string[];
  /** The distinct functions of the batch, and for each task the index of its function. */
  fns: ThreadFunction[];
  fnOf: Int32Array;
  /** Per task: enc, renc, at, len. */
  nums: Int32Array;
  /** Per task: its own argument bytes (not packed), or null; null when every task's are packed. */
  args: Array<Uint8Array | null> | null;
  /** Per task: its inputs; null when no task of the batch has any. */
  inputs: Array<ThreadTask['inputs']> | null;
  packed: Uint8Array | null;
}

/** A batch of results from a thread, column by column (see RunBatch). */
export interface DoneBatch {
  t: 'done';
  ids: Float64Array;
  /** Per result: 1 ok, 0 failed. */
  ok: Uint8Array;
  /** Per result: enc, at, len, index into typeNames. */
  nums: Int32Array;
  /** Per result: startMs, stopMs. */
  times: Float64Array;
  typeNames: string[];
  /** Per result: own bytes (not packed), or null; null when all are packed. */
  datas: Array<Uint8Array | null> | null;
  /** Per result: the error of a failed task, or null; null when none failed. */
  errors: Array<RemoteError | null> | null;
  packed: Uint8Array | null;
}

/**
 * `init`: the modules to load, and the thread's shared claim cells and clock (see claimCell).
 * `gc`: run a full collection (after the worker released large values; see gc.ts).
 */
export type ToThread = { t: 'init'; modules: string[]; claims: SharedArrayBuffer; clock: SharedArrayBuffer; packageDirs?: SharedArrayBuffer } | { t: 'gc' } | RunBatch;

/**
 * Claim cells: Int32 cells shared by the main thread and one task thread. Sending task `id`, the
 * main thread stores claimTag(id) in cell claimCell(id); the thread starts the task only if it
 * swaps that tag for its negative, and the main thread takes an unstarted task back by swapping
 * the tag for 0. A cell is reused only once it no longer holds a positive tag.
 */
export const CLAIM_CELLS = 4096;

export function claimCell(id: number): number {
  return id & (CLAIM_CELLS - 1);
}

export function claimTag(id: number): number {
  return (id % 0x3fffffff) + 1;
}

/** Byte arrays up to this size are packed into the batch's buffer. */
export const PACK_MAX_BYTES = 1024;

export type FromThread = { t: 'ready'; functions: string[] } | { t: 'init-error'; message: string } | DoneBatch;

const NO_INPUTS: ThreadTask['inputs'] = [];

export function encodeRun(tasks: readonly ThreadTask[], packed: Uint8Array | null): RunBatch {
  const n = tasks.length;
  const ids = new Float64Array(n);
  const keys = new Array<string>(n);
  const fns: ThreadFunction[] = [];
  const fnIndex = new Map<ThreadFunction, number>();
  const fnOf = new Int32Array(n);
  const nums = new Int32Array(4 * n);
  let args: Array<Uint8Array | null> | null = null;
  let inputs: Array<ThreadTask['inputs']> | null = null;
  for (let i = 0; i < n; i++) {
    const t = tasks[i]!;
    ids[i] = t.id;
    keys[i] = t.key;
    let f = fnIndex.get(t.fn);
    if (f === undefined) {
      f = fns.push(t.fn) - 1;
      fnIndex.set(t.fn, f);
    }
    fnOf[i] = f;
    nums[4 * i] = t.enc;
    nums[4 * i + 1] = t.renc;
    nums[4 * i + 2] = t.at;
    nums[4 * i + 3] = t.len;
    if (t.args) (args ??= new Array<Uint8Array | null>(n).fill(null))[i] = t.args;
    if (t.inputs.length > 0) (inputs ??= new Array<ThreadTask['inputs']>(n).fill(NO_INPUTS))[i] = t.inputs;
  }
  return { t: 'run', ids, keys, fns, fnOf, nums, args, inputs, packed };
}

export function decodeRun(b: RunBatch): ThreadTask[] {
  const n = b.ids.length;
  const out = new Array<ThreadTask>(n);
  const nums = b.nums;
  for (let i = 0; i < n; i++) {
    out[i] = {
      id: b.ids[i]!,
      key: b.keys[i]!,
      fn: b.fns[b.fnOf[i]!]!,
      enc: nums[4 * i]!,
      renc: nums[4 * i + 1]!,
      args: b.args?.[i] ?? null,
      at: nums[4 * i + 2]!,
      len: nums[4 * i + 3]!,
      inputs: b.inputs?.[i] ?? NO_INPUTS,
    };
  }
  return out;
}

export function encodeDone(results: readonly ThreadResult[], packed: Uint8Array | null): DoneBatch {
  const n = results.length;
  const ids = new Float64Array(n);
  const ok = new Uint8Array(n);
  const nums = new Int32Array(4 * n);
  const times = new Float64Array(2 * n);
  const typeNames: string[] = [];
  const typeIndex = new Map<string, number>();
  let datas: Array<Uint8Array | null> | null = null;
  let errors: Array<RemoteError | null> | null = null;
  for (let i = 0; i < n; i++) {
    const r = results[i]!;
    ids[i] = r.id;
    times[2 * i] = r.startMs;
    times[2 * i + 1] = r.stopMs;
    if (r.ok) {
      ok[i] = 1;
      let ti = typeIndex.get(r.typeName);
      if (ti === undefined) {
        ti = typeNames.push(r.typeName) - 1;
        typeIndex.set(r.typeName, ti);
      }
      nums[4 * i] = r.enc;
      nums[4 * i + 1] = r.at;
      nums[4 * i + 2] = r.len;
      nums[4 * i + 3] = ti;
      if (r.data) (datas ??= new Array<Uint8Array | null>(n).fill(null))[i] = r.data;
    } else {
      (errors ??= new Array<RemoteError | null>(n).fill(null))[i] = r.error;
    }
  }
  return { t: 'done', ids, ok, nums, times, typeNames, datas, errors, packed };
}

export function decodeDone(b: DoneBatch): ThreadResult[] {
  const n = b.ids.length;
  const out = new Array<ThreadResult>(n);
  const { nums, times } = b;
  for (let i = 0; i < n; i++) {
    const id = b.ids[i]!;
    const startMs = times[2 * i]!;
    const stopMs = times[2 * i + 1]!;
    out[i] = b.ok[i]
      ? {
          id,
          ok: true,
          enc: nums[4 * i]!,
          data: b.datas?.[i] ?? null,
          at: nums[4 * i + 1]!,
          len: nums[4 * i + 2]!,
          typeName: b.typeNames[nums[4 * i + 3]!]!,
          startMs,
          stopMs,
        }
      : { id, ok: false, error: b.errors![i]!, startMs, stopMs };
  }
  return out;
}

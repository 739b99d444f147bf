/**
 * The body of one task thread: compiles inline functions once per hash, imports the task
 * modules, runs tasks one at a time (sync ones back to back, without awaiting) and sends the
 * results back in batches, transferring their bytes. A task starts only if the thread claims it
 * (the main thread may have taken it back meanwhile); `clock` tells the main thread since when
 * the current task runs.
 */
import { parentPort } from 'node:worker_threads';
import type { Value } from '@skein/protocol';
import { compileFunction, explainReferenceError, toRemoteError, typeName, SkeinError } from '@skein/common/lite';
import { decodeArgs, encodeResult, exactBytes, asBuffer, loadModules, unknownFunctionError } from './execute.js';
import { PACK_MAX_BYTES, claimCell, claimTag, decodeRun, encodeDone, type FromThread, type ThreadResult, type ThreadTask, type ToThread } from './messages.js';
import { Packer } from './pack.js';
import { fullGcFunction } from './gc.js';
import { checkResolveHook, installResolveHook } from './packages.js';

const port = parentPort!;
let fullGc: (() => void) | undefined;
let registered = new Map<string, Function>();
let modules: string[] = [];
const inline = new Map<string, Function>();
/** Claim cells and clock shared with the main thread (see messages.ts). */
let claims: Int32Array<ArrayBufferLike> = new Int32Array(1);
let clock: Float64Array<ArrayBufferLike> = new Float64Array(1);

/** A queued task with the packed buffer of its batch. */
interface Queued {
  task: ThreadTask;
  packed: Uint8Array | null;
}

let queue: Queued[] = [];
let head = 0;
let running = false;
let outbox: ThreadResult[] = [];
let transfer: ArrayBuffer[] = [];
const packer = new Packer();

function post(msg: FromThread, list: ArrayBuffer[] = []): void {
  port.postMessage(msg, list);
}

function flush(): void {
  if (outbox.length === 0) return;
  const results = outbox;
  const list = transfer;
  outbox = [];
  transfer = [];
  const packed = packer.finish();
  if (packed) list.push(packed.buffer as ArrayBuffer);
  post(encodeDone(results, packed), list);
}

function resolveFunction(task: ThreadTask): Function {
  const f = task.fn;
  if (f.kind === 'registered') {
    const fn = registered.get(f.name);
    if (!fn) throw unknownFunctionError(f.name, modules, registered.keys());
    return fn;
  }
  let fn = inline.get(f.hash);
  if (!fn) {
    if (!f.source) {
      throw new SkeinError(
        'not_found',
        `Inline function ${f.name} (hash ${f.hash.slice(0, 12)}) was never sent to this worker; the scheduler must send its source with the first task that uses it.`,
      );
    }
    fn = compileFunction(f.source);
    inline.set(f.hash, fn);
  }
  return fn;
}

function succeed(task: ThreadTask, value: unknown, startMs: number): ThreadResult {
  try {
    const v = encodeResult(value, task.enc, task.renc, task.key);
    if (v.data.byteLength <= PACK_MAX_BYTES) {
      const at = packer.add(v.data);
      return { id: task.id, ok: true, enc: v.encoding, data: null, at, len: v.data.byteLength, typeName: typeName(value), startMs, stopMs: Date.now() };
    }
    const data = exactBytes(v.data);
    // Large results move to the main thread without a copy (shared memory is shared anyway).
    if (data.byteLength >= 64 * 1024 && !(data.buffer instanceof SharedArrayBuffer)) transfer.push(data.buffer as ArrayBuffer);
    return { id: task.id, ok: true, enc: v.encoding, data, at: 0, len: data.byteLength, typeName: typeName(value), startMs, stopMs: Date.now() };
  } catch (err) {
    return fail(task, err, startMs);
  }
}

function fail(task: ThreadTask, err: unknown, startMs: number): ThreadResult {
  return { id: task.id, ok: false, error: toRemoteError(explainReferenceError(err, task.fn.name), task.key), startMs, stopMs: Date.now() };
}

function runTask(task: ThreadTask, packed: Uint8Array | null): ThreadResult | Promise<ThreadResult> {
  const startMs = Date.now();
  clock[0] = startMs;
  try {
    const fn = resolveFunction(task);
    const inputs = new Map<string, Value>();
    for (const [k, enc, data] of task.inputs) inputs.set(k, { encoding: enc, data: asBuffer(data) });
    const bytes = task.args ?? packed!.subarray(task.at, task.at + task.len);
    const args = decodeArgs({ encoding: task.enc, data: asBuffer(bytes) }, inputs, task.key);
    const out: unknown = fn(...args);
    if (out !== null && typeof out === 'object' && typeof (out as { then?: unknown }).then === 'function') {
      return (out as Promise<unknown>).then(
        (v) => succeed(task, v, startMs),
        (e: unknown) => fail(task, e, startMs),
      );
    }
    return succeed(task, out, startMs);
  } catch (err) {
    return fail(task, err, startMs);
  }
}

async function loop(): Promise<void> {
  running = true;
  while (head < queue.length) {
    const { task, packed } = queue[head++]!;
    const tag = claimTag(task.id);
    // Taken back by the main thread (cancelled, or moved to another thread): skip it.
    if (Atomics.compareExchange(claims, claimCell(task.id), tag, -tag) !== tag) continue;
    const r = runTask(task, packed);
    if (r instanceof Promise) {
      flush();
      outbox.push(await r);
    } else {
      outbox.push(r);
      // Hand results back in slices so the main thread can keep this thread fed.
      if (outbox.length >= 128) flush();
    }
    if (head >= 1024 && head * 2 >= queue.length) {
      queue = queue.slice(head);
      head = 0;
    }
  }
  queue = [];
  head = 0;
  clock[0] = 0;
  flush();
  running = false;
}

port.on('message', (msg: ToThread) => {
  switch (msg.t) {
    case 'init':
      modules = msg.modules;
      claims = new Int32Array(msg.claims);
      clock = new Float64Array(msg.clock);
      if (msg.packageDirs) installResolveHook(msg.packageDirs);
      loadModules(msg.modules).then(
        (fns) => {
          registered = fns;
          post({ t: 'ready', functions: [...fns.keys()] });
        },
        (err: unknown) => post({ t: 'init-error', message: (err as Error)?.message ?? String(err) }),
      );
      return;
    case 'run':
      checkResolveHook();
      // Compiled on arrival, not first use: the task that brought the source may be taken back.
      for (const f of msg.fns) {
        if (f.kind === 'inline' && f.source && !inline.has(f.hash)) {
          try {
            inline.set(f.hash, compileFunction(f.source));
          } catch {
            // reported by the task that brought it (resolveFunction compiles it again)
          }
        }
      }
      for (const task of decodeRun(msg)) queue.push({ task, packed: msg.packed });
      if (!running) void loop();
      return;
    case 'gc':
      (fullGc ??= fullGcFunction() ?? (() => undefined))();
      return;
  }
});

/**
 * Building tasks: resolving functions, replacing futures and delayed values inside arguments with
 * references, generating keys, and the lazy `delayed` graph builder. No I/O here.
 */
import * as nodeCrypto from 'node:crypto';
import { randomUUID } from 'node:crypto';
import {
  CancelledError,
  InvalidArgumentError,
  KEEP,
  QUOTE,
  QUOTE_KEY,
  REF_KEY,
  WALK,
  encodeValue,
  functionName,
  inlineFunction,
  isMadeRef,
  mapTemplate,
  sha256,
  type TaskRef,
} from '@skein/common';
import { Encoding } from '@skein/protocol';
import { Future } from './future.js';
import type { FunctionSource, FunctionSpec, TaskDef, TaskOptions } from './types.js';

// ---------------------------------------------------------------- functions

const REGISTERED = Symbol.for('skein.registeredFunction');

/**
 * A function loaded on the workers by name (`skein worker --module ./tasks.js`), typed by its
 * arguments and result. Create with `registered('name')`.
 */
export interface RegisteredFunction<A extends unknown[] = unknown[], R = unknown> {
  readonly [REGISTERED]: string;
  /** Phantom field carrying the signature. */
  readonly __signature?: (...args: A) => R;
}

/** Refers to a function registered on the workers by name; any language's workers can serve it. */
export function registered<A extends unknown[] = unknown[], R = unknown>(name: string): RegisteredFunction<A, R> {
  if (typeof name !== 'string' || name === '') {
    throw new InvalidArgumentError('registered(name) needs the non-empty name of a function the workers loaded with --module.');
  }
  return Object.freeze({ [REGISTERED]: name }) as RegisteredFunction<A, R>;
}

export function isRegistered(fn: unknown): fn is RegisteredFunction {
  return typeof fn === 'object' && fn !== null && typeof (fn as Record<symbol, unknown>)[REGISTERED] === 'string';
}

/** What a task can call: a JS function (sent as source) or a registered function. */
export type TaskFunction<A extends unknown[], R> = ((...args: A) => R) | RegisteredFunction<A, R>;

/** A function resolved for sending. */
export interface ResolvedFunction {
  spec: FunctionSpec;
  /** Key prefix. */
  name: string;
  /** What identifies the function in a pure key's token. */
  id: string;
  /** Source to send once per session (inline functions only). */
  source: FunctionSource | undefined;
}

const resolvedInline = new WeakMap<Function, ResolvedFunction>();

export function resolveFunction(fn: unknown): ResolvedFunction {
  if (typeof fn === 'function') {
    let r = resolvedInline.get(fn);
    if (!r) {
      const f = inlineFunction(fn);
      r = {
        spec: { kind: 'inline', hash: f.hash },
        name: f.name || functionName(fn),
        id: `inline:${f.hash}`,
        source: { hash: f.hash, source: f.source, name: f.name },
      };
      resolvedInline.set(fn, r);
    }
    return r;
  }
  if (isRegistered(fn)) {
    const name = fn[REGISTERED];
    return { spec: { kind: 'registered', name }, name, id: `registered:${name}`, source: undefined };
  }
  throw new InvalidArgumentError(
    `A task needs a function or registered('name'), got ${fn === null ? 'null' : typeof fn}.`,
  );
}

// ---------------------------------------------------------------- lazy values and typing

type Opaque = string | number | boolean | bigint | symbol | null | undefined | Function | Uint8Array | Date | RegExp | Map<unknown, unknown> | Set<unknown> | ArrayBuffer;

/**
 * A value, or something that stands for it on the cluster: a Future, a Delayed, or a structure
 * (array or plain object) holding such things at any depth.
 */
export type Lazy<T> =
  | T
  | Future<T>
  | Delayed<T>
  | (T extends Opaque ? never : T extends readonly unknown[] ? { [K in keyof T]: Lazy<T[K]> } : T extends object ? { [K in keyof T]: Lazy<T[K]> } : never);

/** Positional arguments where each may be lazy. */
export type LazyArgs<A extends unknown[]> = { [K in keyof A]: Lazy<A[K]> };

// ---------------------------------------------------------------- options

/** TaskOptions with defaults applied, compiled once per call. */
export interface CompiledTaskOptions {
  pure: boolean;
  priority: number;
  retries: number;
  resources: Record<string, number>;
  workers: string[];
  allowOtherWorkers: boolean;
  encoding: 'v8' | 'json';
}

const DEFAULT_OPTIONS: CompiledTaskOptions = Object.freeze({
  pure: true,
  priority: 0,
  retries: 0,
  resources: Object.freeze({}) as Record<string, number>,
  workers: Object.freeze([]) as unknown as string[],
  allowOtherWorkers: false,
  encoding: 'v8',
});

export function compileTaskOptions(o: TaskOptions | undefined): CompiledTaskOptions {
  if (!o) return DEFAULT_OPTIONS;
  const int = (v: number | undefined, name: string): number => {
    if (v === undefined) return 0;
    if (!Number.isInteger(v)) throw new InvalidArgumentError(`Task option ${name} must be an integer, got ${v}.`);
    return v;
  };
  if (o.encoding !== undefined && o.encoding !== 'v8' && o.encoding !== 'json') {
    throw new InvalidArgumentError(`Task option encoding must be 'v8' or 'json', got ${String(o.encoding)}.`);
  }
  const retries = int(o.retries, 'retries');
  if (retries < 0) throw new InvalidArgumentError(`Task option retries must be 0 or more, got ${retries}.`);
  const workers = o.workers === undefined ? [] : typeof o.workers === 'string' ? [o.workers] : [...o.workers];
  if (o.allowOtherWorkers && workers.length === 0) {
    throw new InvalidArgumentError(
      'Task option allowOtherWorkers: true needs workers: it lets the task leave the workers it names. Name workers, or drop allowOtherWorkers.',
    );
  }
  const resources = { ...(o.resources ?? {}) };
  for (const [name, q] of Object.entries(resources)) {
    if (typeof q !== 'number' || !Number.isFinite(q) || q < 0) {
      throw new InvalidArgumentError(`Task option resources.${name} must be a finite number, 0 or more, got ${String(q)}.`);
    }
  }
  return {
    pure: o.pure ?? true,
    priority: int(o.priority, 'priority'),
    retries,
    resources,
    workers,
    allowOtherWorkers: o.allowOtherWorkers ?? false,
    encoding: o.encoding ?? 'v8',
  };
}

// ---------------------------------------------------------------- argument walking

/** Collects what a task's arguments refer to. */
export interface ArgContext {
  dependencies: Set<string> | undefined;
  /** Delayed values found in the arguments (their graphs must travel with the task). */
  delayed: Delayed<unknown>[];
}

// Shared empty list (frozen) for the common case of arguments without Delayed values.
const NO_DELAYED = Object.freeze([]) as unknown as Delayed<unknown>[];

function isPlainObject(v: object): boolean {
  const p = Object.getPrototypeOf(v);
  return p === Object.prototype || p === null;
}

/**
 * Objects V8 serializes as something other than a plain object: they reach the worker as
 * themselves and are never read as templates there, so they are not walked here either. Every
 * other object (a class instance) arrives as a plain object and is walked like one.
 */
function keepsItsType(v: object): boolean {
  return (
    ArrayBuffer.isView(v) ||
    v instanceof Map ||
    v instanceof Set ||
    v instanceof Date ||
    v instanceof RegExp ||
    v instanceof Error ||
    v instanceof ArrayBuffer ||
    (typeof SharedArrayBuffer !== 'undefined' && v instanceof SharedArrayBuffer) ||
    v instanceof Boolean ||
    v instanceof Number ||
    v instanceof String ||
    v instanceof BigInt
  );
}

function visitArg(v: object, ctx: ArgContext): unknown {
  if (v instanceof Future) {
    if (v._state.status === 'cancelled') {
      throw new CancelledError(v.key, 'a task cannot take a cancelled future as an input; submit that task again for a new future');
    }
    (ctx.dependencies ??= new Set()).add(v.key);
    return refTo(v.key);
  }
  if (v instanceof Delayed) {
    (ctx.dependencies ??= new Set()).add(v.key);
    if (ctx.delayed === NO_DELAYED) ctx.delayed = [];
    ctx.delayed.push(v as Delayed<unknown>);
    return refTo(v.key);
  }
  if (typeof (v as { then?: unknown }).then === 'function') {
    throw new InvalidArgumentError(
      'A task argument is a Promise; it cannot travel to a worker. Await it first, or pass a Future (client.submit) instead.',
    );
  }
  if (!isPlainObject(v) && keepsItsType(v)) return KEEP;
  // User data that could be read as a marker is quoted (the worker unwraps it); a reference made
  // with makeRef is the only object sent as a reference.
  if (REF_KEY in v || QUOTE_KEY in v) {
    if (isMadeRef(v)) {
      (ctx.dependencies ??= new Set()).add(v[REF_KEY]);
      return KEEP;
    }
    return QUOTE;
  }
  return WALK;
}

/**
 * Replaces Futures, Delayed values and references made with makeRef at any depth inside arrays
 * and objects with references, recording their keys, and quotes data shaped like a marker (see
 * TaskSpec.args in common.proto). Copies only the parts that change; cycles are kept.
 */
export function replaceLazy(v: unknown, ctx: ArgContext): unknown {
  return mapTemplate(v, visitArg, ctx);
}

function refTo(key: string): TaskRef {
  return { [REF_KEY]: key };
}

// ---------------------------------------------------------------- keys and tasks

const ENCODING_TAG = { v8: 'v8', json: 'json', raw: 'raw' } as const;

/** A random token (32 hex digits). */
export function randomToken(): string {
  return randomUUID().replace(/-/g, '');
}

// crypto.hash (Node >= 20.12) hashes small inputs several times faster than createHash, which
// matters at one hash per task; fall back to @skein/common's sha256 elsewhere.
const oneShotHash = (nodeCrypto as { hash?: (alg: string, data: Uint8Array, enc: 'hex') => string }).hash;
const sha256Hex: (data: Uint8Array) => string = oneShotHash ? (d) => oneShotHash('sha256', d, 'hex') : sha256;
const headCache = new Map<string, Buffer>();

/** The deterministic token of a call: a hash of the function and the encoded arguments. */
export function callToken(fnId: string, encodingTag: string, data: Uint8Array): string {
  const headText = `${fnId}\0${encodingTag}\0`;
  let head = headCache.get(headText);
  if (!head) {
    head = Buffer.from(headText, 'utf8');
    if (headCache.size > 10_000) headCache.clear();
    headCache.set(headText, head);
  }
  return sha256Hex(Buffer.concat([head, data])).slice(0, 32);
}

export interface BuiltTask {
  def: TaskDef;
  /** Delayed values the arguments refer to. */
  delayed: Delayed<unknown>[];
}

/**
 * Builds one task. `key` is an explicit key; otherwise `<prefix>-<token>` with prefix defaulting
 * to the function's name, token pure (hash) or random per the options.
 */
export function buildTask(
  fn: ResolvedFunction,
  args: readonly unknown[],
  opts: CompiledTaskOptions,
  key?: string,
  prefix?: string,
): BuiltTask {
  const ctx: ArgContext = { dependencies: undefined, delayed: NO_DELAYED };
  const template = replaceLazy(args, ctx);
  const encoded = encodeValue(template, opts.encoding);
  let k = key;
  if (k === undefined) {
    const token = opts.pure ? callToken(fn.id, ENCODING_TAG[opts.encoding], encoded.data) : randomToken();
    k = `${prefix ?? fn.name}-${token}`;
  } else if (typeof k !== 'string' || k === '') {
    throw new InvalidArgumentError(`A task key must be a non-empty string, got ${JSON.stringify(k)}.`);
  }
  return {
    def: {
      key: k,
      fn: fn.spec,
      args: encoded,
      dependencies: ctx.dependencies ? [...ctx.dependencies] : [],
      priority: opts.priority,
      retries: opts.retries,
      resources: opts.resources,
      workers: opts.workers,
      allowOtherWorkers: opts.allowOtherWorkers,
      resultEncoding: opts.encoding === 'json' ? Encoding.ENCODING_JSON : Encoding.ENCODING_V8,
      pure: key === undefined && opts.pure,
    },
    delayed: dedupe(ctx.delayed),
  };
}

// ---------------------------------------------------------------- delayed

/**
 * A lazy call (Dask's Delayed): nothing runs until `client.compute` / `client.persist`. Pass it to
 * other delayed calls (or to `client.submit`) to build a graph.
 */
export class Delayed<T = unknown> {
  /** The key its result will have. */
  readonly key: string;
  /** @internal */
  readonly _task: TaskDef;
  /** @internal */
  readonly _source: FunctionSource | undefined;
  /** @internal Delayed values this one's arguments refer to. */
  readonly _children: readonly Delayed<unknown>[];
  /** Phantom field carrying the result type. */
  declare readonly __result?: T;

  /** @internal Created by `delayed(fn)(...args)`. */
  constructor(task: TaskDef, source: FunctionSource | undefined, children: readonly Delayed<unknown>[]) {
    this.key = task.key;
    this._task = task;
    this._source = source;
    this._children = children;
  }

  /** The keys of this value's graph (itself and every delayed dependency). */
  get graphKeys(): string[] {
    return flattenDelayed([this as Delayed<unknown>]).tasks.map((t) => t.key);
  }

  toString(): string {
    return `Delayed('${this.key}')`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

/** A function made lazy by `delayed(fn)`. */
export type DelayedFunction<A extends unknown[], R> = (...args: LazyArgs<A>) => Delayed<Awaited<R>>;

/**
 * Makes `fn` lazy: calling the result builds a Delayed instead of running. Options apply to every
 * call (`key` names a single call's key). No client is needed to build a graph.
 *
 * @example
 * const inc = delayed((x: number) => x + 1);
 * const add = delayed((a: number, b: number) => a + b);
 * const total = add(inc(1), inc(2));
 * await client.compute(total).result(); // 5
 */
export function delayed<A extends unknown[], R>(fn: TaskFunction<A, R>, options?: TaskOptions): DelayedFunction<A, R> {
  const rf = resolveFunction(fn);
  const opts = compileTaskOptions(options);
  const key = options?.key;
  if (key !== undefined && typeof key !== 'string') {
    throw new InvalidArgumentError('delayed(fn, { key }) takes one key string; it names the single call.');
  }
  return (...args: LazyArgs<A>): Delayed<Awaited<R>> => {
    const built = buildTask(rf, args as unknown[], opts, key);
    return new Delayed<Awaited<R>>(built.def, rf.source, dedupe(built.delayed));
  };
}

function dedupe(ds: Delayed<unknown>[]): Delayed<unknown>[] {
  if (ds.length < 2) return ds;
  return [...new Set(ds)];
}

/** The tasks of delayed graphs, dependencies first, each key once. */
export function flattenDelayed(roots: readonly Delayed<unknown>[]): { tasks: TaskDef[]; sources: FunctionSource[] } {
  const tasks: TaskDef[] = [];
  const sources = new Map<string, FunctionSource>();
  const seen = new Set<string>();
  // Iterative post-order DFS: long chains must not overflow the stack.
  const stack: Array<{ node: Delayed<unknown>; next: number }> = [];
  for (const root of roots) {
    if (seen.has(root.key)) continue;
    seen.add(root.key);
    stack.push({ node: root, next: 0 });
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      const children = top.node._children;
      if (top.next < children.length) {
        const child = children[top.next++]!;
        if (!seen.has(child.key)) {
          seen.add(child.key);
          stack.push({ node: child, next: 0 });
        }
        continue;
      }
      stack.pop();
      tasks.push(top.node._task);
      const src = top.node._source;
      if (src && !sources.has(src.hash)) sources.set(src.hash, src);
    }
  }
  return { tasks, sources: [...sources.values()] };
}

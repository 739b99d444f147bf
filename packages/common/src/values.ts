import { serialize, deserialize } from 'node:v8';
import type { Value } from '@skein/protocol';
import { InvalidArgumentError } from './errors.js';

/** The protocol's Encoding values (skein.v1.Encoding), as constants so this module loads without the generated code. */
export const Encoding = { ENCODING_UNSPECIFIED: 0, ENCODING_JSON: 1, ENCODING_V8: 2, ENCODING_RAW: 3, ENCODING_RAW_UINT8ARRAY: 4 } as const;

/** The property name that marks a reference to another task's result inside task arguments. */
export const REF_KEY = '__skein_ref__';
/** The property name that quotes an object in task arguments: `{"__skein_quote__": obj}` is `obj`, never a marker. */
export const QUOTE_KEY = '__skein_quote__';

export type EncodingName = 'json' | 'v8' | 'raw';

/** A reference to another task's result, as it travels inside an argument template. */
export interface TaskRef {
  readonly [REF_KEY]: string;
}

// References made on purpose (makeRef); an object that merely looks like one is user data.
const madeRefs = new WeakSet<object>();

/**
 * A reference to the result of `key`, to pass inside task arguments (the task then depends on
 * `key`). Only an object made here is taken as a reference: data shaped like one stays data.
 */
export function makeRef(key: string): TaskRef {
  const r = Object.freeze({ [REF_KEY]: key });
  madeRefs.add(r);
  return r;
}

/** Whether `v` was made by makeRef (and so stands for a task's result rather than for data). */
export function isMadeRef(v: object): v is TaskRef {
  return madeRefs.has(v);
}

/** Whether `v` has exactly one own enumerable property (without allocating a key list). */
function hasOneKey(v: object): boolean {
  let n = 0;
  for (const k in v) {
    if (!Object.prototype.hasOwnProperty.call(v, k)) continue;
    if (++n > 1) return false;
  }
  return n === 1;
}

/** Whether a decoded template node is a reference: a plain object whose only property is `__skein_ref__`, a string. */
export function isRef(v: unknown): v is TaskRef {
  if (v === null || typeof v !== 'object') return false;
  const k = (v as Record<string, unknown>)[REF_KEY];
  return typeof k === 'string' && isPlainObject(v) && hasOneKey(v);
}

/** Whether a decoded template node is a quote: a plain object whose only property is `__skein_quote__`, a plain object. */
export function isQuote(v: unknown): boolean {
  if (v === null || typeof v !== 'object') return false;
  const q = (v as Record<string, unknown>)[QUOTE_KEY];
  return q !== null && typeof q === 'object' && isPlainObject(q) && isPlainObject(v) && hasOneKey(v);
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

// ---------------------------------------------------------------- walking templates

/** What a template walk does with an object (arrays are always walked): see mapTemplate. */
export const WALK: unique symbol = Symbol('skein.walk');
export const KEEP: unique symbol = Symbol('skein.keep');
export const QUOTE: unique symbol = Symbol('skein.quote');
export const UNQUOTE: unique symbol = Symbol('skein.unquote');

/**
 * Classifies one object (not an array) met in a walk: WALK (its own enumerable properties are
 * walked, the object copied if any changes), KEEP (left as it is, not looked into), QUOTE (walked,
 * and the result wrapped as `{"__skein_quote__": result}`), UNQUOTE (the object is a quote: the
 * result is its inner object, walked) or anything else: the value that replaces it (not walked).
 */
export type TemplateVisitor<C> = (v: object, ctx: C) => unknown;

const BAIL = Symbol('skein.bail');
// Beyond this depth or this many objects the walk restarts on the general path (cycles, deep or huge values).
const FAST_MAX_DEPTH = 64;
const FAST_MAX_OBJECTS = 20_000;

interface Walk<C> {
  visit: TemplateVisitor<C>;
  ctx: C;
  objects: number;
  /** Copies of objects below the root, so an object met twice is copied once (identity is kept). */
  memo: Map<object, unknown> | undefined;
}

function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  if (k === '__proto__') Object.defineProperty(o, k, { value: v, writable: true, enumerable: true, configurable: true });
  else o[k] = v;
}

function fastWalk<C>(v: unknown, w: Walk<C>, depth: number): unknown {
  if (v === null || typeof v !== 'object') return v;
  if (depth > FAST_MAX_DEPTH || ++w.objects > FAST_MAX_OBJECTS) throw BAIL;
  if (w.memo !== undefined) {
    const m = w.memo.get(v);
    if (m !== undefined) return m;
  }
  let out: unknown;
  if (Array.isArray(v)) {
    let copy: unknown[] | undefined;
    for (let i = 0; i < v.length; i++) {
      const item: unknown = v[i];
      const sub = fastWalk(item, w, depth + 1);
      if (sub !== item) {
        copy ??= v.slice();
        copy[i] = sub;
      }
    }
    if (copy === undefined) return v;
    out = copy;
  } else {
    const r = w.visit(v, w.ctx);
    if (r === WALK) {
      out = fastWalkObject(v, w, depth);
      if (out === v) return v;
    } else if (r === KEEP) {
      return v;
    } else if (r === QUOTE) {
      out = { [QUOTE_KEY]: fastWalkObject(v, w, depth) };
    } else if (r === UNQUOTE) {
      out = fastWalkObject((v as Record<string, object>)[QUOTE_KEY]!, w, depth);
    } else {
      return r;
    }
  }
  if (depth > 0) (w.memo ??= new Map()).set(v, out);
  return out;
}

function fastWalkObject<C>(v: object, w: Walk<C>, depth: number): unknown {
  let copy: Record<string, unknown> | undefined;
  for (const k in v) {
    const item = (v as Record<string, unknown>)[k];
    const sub = fastWalk(item, w, depth + 1);
    if (sub !== item) {
      copy ??= { ...(v as Record<string, unknown>) };
      setOwn(copy, k, sub);
    }
  }
  return copy ?? v;
}

/** The general walk: any depth (no recursion), cycles and shared objects kept as they are. */
function generalWalk<C>(root: object, visit: TemplateVisitor<C>, ctx: C): unknown {
  // 1. Classify every reachable object once.
  const kinds = new Map<object, unknown>();
  const stack: object[] = [root];
  const pushChildren = (o: object): void => {
    for (const k in o) {
      const x = (o as Record<string, unknown>)[k];
      if (x !== null && typeof x === 'object' && !kinds.has(x)) stack.push(x);
    }
  };
  let changed = false;
  while (stack.length > 0) {
    const o = stack.pop()!;
    if (kinds.has(o)) continue;
    if (Array.isArray(o)) {
      kinds.set(o, WALK);
      for (let i = 0; i < o.length; i++) {
        const x: unknown = o[i];
        if (x !== null && typeof x === 'object' && !kinds.has(x)) stack.push(x);
      }
      continue;
    }
    const r = visit(o, ctx);
    kinds.set(o, r);
    if (r === WALK || r === QUOTE) {
      pushChildren(o);
    } else if (r === UNQUOTE) {
      const inner = (o as Record<string, object>)[QUOTE_KEY]!;
      if (!kinds.has(inner)) {
        kinds.set(inner, WALK);
        pushChildren(inner);
      }
    }
    if (r !== WALK && r !== KEEP) changed = true;
  }
  if (!changed) return root;
  // 2. Copy every walked object (the copies link to each other as the originals do).
  const copies = new Map<object, unknown>();
  const fill: Array<[object, unknown[] | Record<string, unknown>]> = [];
  const copyOf = (x: unknown): unknown => {
    if (x === null || typeof x !== 'object') return x;
    if (copies.has(x)) return copies.get(x);
    let out: unknown;
    if (Array.isArray(x)) {
      const a = new Array<unknown>(x.length);
      fill.push([x, a]);
      out = a;
    } else {
      const r = kinds.get(x);
      if (r === WALK || r === QUOTE || r === UNQUOTE) {
        const o: Record<string, unknown> = {};
        fill.push([r === UNQUOTE ? (x as Record<string, object>)[QUOTE_KEY]! : x, o]);
        out = r === QUOTE ? { [QUOTE_KEY]: o } : o;
      } else {
        out = r === KEEP ? x : r;
      }
    }
    copies.set(x, out);
    return out;
  };
  const result = copyOf(root);
  while (fill.length > 0) {
    const [src, dst] = fill.pop()!;
    if (Array.isArray(src)) {
      const a = dst as unknown[];
      for (let i = 0; i < src.length; i++) if (i in src) a[i] = copyOf(src[i]);
    } else {
      for (const k in src) setOwn(dst as Record<string, unknown>, k, copyOf((src as Record<string, unknown>)[k]));
    }
  }
  return result;
}

/**
 * Walks a value through arrays and the objects `visit` says to walk, replacing what it says to
 * replace. Copies only the parts that change (the input itself when nothing does); cycles and
 * objects met twice stay so in the copy; any depth (small values take a recursive fast path,
 * others an iterative one).
 */
export function mapTemplate<C>(root: unknown, visit: TemplateVisitor<C>, ctx: C): unknown {
  if (root === null || typeof root !== 'object') return root;
  const w: Walk<C> = { visit, ctx, objects: 0, memo: undefined };
  try {
    return fastWalk(root, w, 0);
  } catch (err) {
    if (err !== BAIL) throw err;
  }
  return generalWalk(root, visit, ctx);
}

function visitDecoded(v: object, lookup: (key: string) => unknown): unknown {
  if (!isPlainObject(v)) return KEEP;
  const r = (v as Record<string, unknown>)[REF_KEY];
  if (r !== undefined) return typeof r === 'string' && hasOneKey(v) ? lookup(r) : WALK;
  return isQuote(v) ? UNQUOTE : WALK;
}

/**
 * Resolves a decoded argument template: replaces every reference (`{"__skein_ref__": key}`) inside
 * arrays and plain objects, at any depth, with `lookup(key)`, and unwraps every quote
 * (`{"__skein_quote__": obj}` is `obj`, whose properties are templates again). Returns the input
 * itself when it holds neither, so such values are not copied. Cycles are kept.
 */
export function substituteRefs(template: unknown, lookup: (key: string) => unknown): unknown {
  return mapTemplate(template, visitDecoded, lookup);
}

/** The keys referenced anywhere inside a decoded template. */
export function collectRefs(template: unknown, into: Set<string> = new Set()): Set<string> {
  mapTemplate(template, visitDecoded, (key: string) => {
    into.add(key);
    return KEEP;
  });
  return into;
}

// ---------------------------------------------------------------- JSON

const JSON_MAX_DEPTH = 1000;

function describeNonJson(v: unknown): string | undefined {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return undefined;
    case 'number':
      return Number.isFinite(v) ? undefined : String(v);
    case 'undefined':
      return 'undefined';
    case 'bigint':
      return `a bigint (${String(v)}n)`;
    case 'function':
      return `a function${(v as Function).name ? ` (${(v as Function).name})` : ''}`;
    case 'symbol':
      return `a symbol (${String(v)})`;
    case 'object':
      if (v === null || Array.isArray(v) || isPlainObject(v)) return undefined;
      return `a ${(v as object).constructor?.name ?? 'non-plain object'}`;
    default:
      return 'a value JSON cannot hold';
  }
}

function fastJsonSafe(v: unknown, depth: number): boolean {
  if (v === null || typeof v !== 'object') return describeNonJson(v) === undefined;
  if (depth > FAST_MAX_DEPTH) throw BAIL;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (!fastJsonSafe(v[i], depth + 1)) return false;
    return true;
  }
  if (!isPlainObject(v)) return false;
  for (const k in v) if (!fastJsonSafe((v as Record<string, unknown>)[k], depth + 1)) return false;
  return true;
}

function pathText(path: readonly (string | number)[]): string {
  if (path.length === 0) return 'the top level';
  let s = '';
  for (const p of path) s += typeof p === 'number' ? `[${p}]` : /^[A-Za-z_$][\w$]*$/.test(p) ? (s === '' ? p : `.${p}`) : `[${JSON.stringify(p)}]`;
  return s;
}

/** The first thing (with its path) that keeps `v` from being JSON as it is; iterative, cycles found. */
function jsonProblemAt(root: unknown): string | undefined {
  interface Frame { node: object; keys: (string | number)[]; next: number; seg: string | number | undefined }
  const top = describeNonJson(root);
  if (top !== undefined) return `${top} at the top level`;
  if (root === null || typeof root !== 'object') return undefined;
  const path: (string | number)[] = [];
  const onPath = new Set<object>();
  const frames: Frame[] = [];
  const enter = (node: object, seg: string | number | undefined): void => {
    if (seg !== undefined) path.push(seg);
    onPath.add(node);
    frames.push({ node, keys: Array.isArray(node) ? Array.from(node.keys()) : Object.keys(node), next: 0, seg });
  };
  enter(root, undefined);
  while (frames.length > 0) {
    const f = frames[frames.length - 1]!;
    if (f.next >= f.keys.length) {
      frames.pop();
      onPath.delete(f.node);
      if (f.seg !== undefined) path.pop();
      continue;
    }
    const k = f.keys[f.next++]!;
    const x = (f.node as Record<string | number, unknown>)[k];
    if (x === undefined && Array.isArray(f.node) && !(k in f.node)) return `an empty array slot at ${pathText([...path, k])}`;
    const what = describeNonJson(x);
    if (what !== undefined) return `${what} at ${pathText([...path, k])}`;
    if (x === null || typeof x !== 'object') continue;
    if (onPath.has(x)) return `a cycle (a reference back to ${pathText(path.slice(0, [...onPath].indexOf(x)))}) at ${pathText([...path, k])}`;
    if (frames.length >= JSON_MAX_DEPTH) return `nesting deeper than ${JSON_MAX_DEPTH} levels at ${pathText([...path, k])}`;
    enter(x, k);
  }
  return undefined;
}

/**
 * Why `v` cannot travel as JSON without changing (e.g. `NaN at [0].y`, `a Map at the top level`),
 * or undefined when it can: null, booleans, strings, finite numbers, and arrays and plain objects
 * of those, without cycles. A top-level undefined counts as JSON (it is sent as null).
 */
export function jsonProblem(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  try {
    if (fastJsonSafe(v, 0)) return undefined;
  } catch (err) {
    if (err !== BAIL) throw err;
  }
  return jsonProblemAt(v);
}

/**
 * A value JSON carries exactly, cheap to check: a string, boolean, null, finite number other than
 * -0, a task reference, or a short array of those (no holes). No shared objects can hide in it, so
 * JSON's copy-per-occurrence cannot change the decoded value.
 */
function isPlainScalarValue(v: unknown, depth: number): boolean {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(v) && !Object.is(v, -0);
    case 'object': {
      if (v === null) return true;
      if (Array.isArray(v)) {
        if (depth > 0 || v.length > 32) return false;
        for (let i = 0; i < v.length; i++) if (!isPlainScalarValue(v[i], 1)) return false;
        return true;
      }
      return isRef(v);
    }
    case 'bigint':
    case 'function':
    case 'symbol':
    case 'undefined':
      return false;
  }
}

/**
 * Encodes a JS value. Bytes travel raw: a Buffer as `ENCODING_RAW`, a plain Uint8Array as
 * `ENCODING_RAW_UINT8ARRAY` (the same bytes; JavaScript decodes each back to its own type).
 * Otherwise `v8` unless `json` is asked for. Small plain values (numbers, strings, booleans,
 * null, references, short arrays of them) travel as JSON even when `v8` is preferred: they decode
 * to the same value, and JSON costs a fraction of a v8 serializer for them (each serializer is an
 * object with its own buffer). With `json`, values JSON cannot represent exactly are refused with
 * an error naming the value and where it is.
 */
export function encodeValue(value: unknown, prefer: EncodingName = 'v8'): Value {
  if (prefer !== 'json' && value instanceof Uint8Array) {
    if (Buffer.isBuffer(value)) return { encoding: Encoding.ENCODING_RAW, data: value };
    if (value.constructor === Uint8Array) {
      return { encoding: Encoding.ENCODING_RAW_UINT8ARRAY, data: Buffer.from(value.buffer, value.byteOffset, value.byteLength) };
    }
  }
  if (prefer === 'json') {
    const problem = jsonProblem(value);
    if (problem !== undefined) {
      throw new InvalidArgumentError(
        `Value cannot be encoded as JSON without loss: ${problem}. Pass plain JSON data (objects, arrays, strings, ` +
          'finite numbers, booleans, null), or use the v8 encoding between JavaScript processes.',
      );
    }
    return { encoding: Encoding.ENCODING_JSON, data: Buffer.from(JSON.stringify(value ?? null), 'utf8') };
  }
  if (isPlainScalarValue(value, 0)) return { encoding: Encoding.ENCODING_JSON, data: Buffer.from(JSON.stringify(value), 'utf8') };
  try {
    return { encoding: Encoding.ENCODING_V8, data: serialize(value) };
  } catch (err) {
    if (err instanceof RangeError) {
      throw new InvalidArgumentError(
        `Value cannot be serialized: it is nested too deeply for V8's serializer (${err.message}; a few thousand levels ` +
          'of arrays or objects is its limit). Flatten it, for example into a list of nodes and parent indexes.',
        { cause: err },
      );
    }
    throw new InvalidArgumentError(
      `Value cannot be serialized (${(err as Error).message}). Functions, class instances with private ` +
        'state, sockets and promises cannot travel between processes; pass plain data instead.',
      { cause: err },
    );
  }
}

/** Decodes a Value into a JS value (a Buffer is a view of the Value's data, not a copy). */
export function decodeValue(value: Value | undefined): unknown {
  if (!value) return undefined;
  // As a number: Encoding above copies the wire enum's values, and a newer peer may send others.
  switch (value.encoding as number) {
    case Encoding.ENCODING_JSON:
      return value.data.length === 0 ? undefined : JSON.parse(Buffer.from(value.data.buffer, value.data.byteOffset, value.data.byteLength).toString('utf8'));
    case Encoding.ENCODING_V8:
      return deserialize(value.data);
    case Encoding.ENCODING_RAW:
      return Buffer.from(value.data.buffer, value.data.byteOffset, value.data.byteLength);
    case Encoding.ENCODING_RAW_UINT8ARRAY: {
      // A Uint8Array over exactly its own memory, as one made with new Uint8Array(n) is: a view into
      // a larger message buffer is copied (small inline values); exact and shared buffers are not.
      const d = value.data;
      if (d.buffer instanceof SharedArrayBuffer || (d.byteOffset === 0 && d.byteLength === d.buffer.byteLength)) {
        return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
      }
      return new Uint8Array(d);
    }
    default:
      throw new InvalidArgumentError(
        `Unknown value encoding ${String(value.encoding)}: expected ENCODING_JSON (1), ENCODING_V8 (2), ENCODING_RAW (3) or ENCODING_RAW_UINT8ARRAY (4).`,
      );
  }
}

export function encodingName(e: number): EncodingName {
  return e === Encoding.ENCODING_JSON ? 'json' : e === Encoding.ENCODING_RAW || e === Encoding.ENCODING_RAW_UINT8ARRAY ? 'raw' : 'v8';
}

/** A short type name for a value, shown in futures and the dashboard. */
export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  return (v as object).constructor?.name ?? 'Object';
}

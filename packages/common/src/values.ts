import { serialize, deserialize } from 'node:v8';
import type { Value } from '@skein/protocol';
import { InvalidArgumentError } from './errors.js';

/** The protocol's Encoding values (skein.v1.Encoding), as constants so this module loads without the generated code. */
export const Encoding = { ENCODING_UNSPECIFIED: 0, ENCODING_JSON: 1, ENCODING_V8: 2, ENCODING_RAW: 3 } as const;

/** The property name that marks a reference to another task's result inside task arguments. */
export const REF_KEY = '__skein_ref__';

export type EncodingName = 'json' | 'v8' | 'raw';

/** A reference to another task's result, as it travels inside an argument template. */
export interface TaskRef {
  readonly [REF_KEY]: string;
}

export function makeRef(key: string): TaskRef {
  return { [REF_KEY]: key };
}

export function isRef(v: unknown): v is TaskRef {
  if (v === null || typeof v !== 'object') return false;
  const k = (v as Record<string, unknown>)[REF_KEY];
  return typeof k === 'string' && Object.keys(v).length === 1;
}

function isPlainObject(v: object): boolean {
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Replaces every TaskRef inside arrays and plain objects (at any depth) with `lookup(key)`.
 * Returns the input itself when it holds no reference, so values without references are not copied.
 */
export function substituteRefs(template: unknown, lookup: (key: string) => unknown): unknown {
  if (template === null || typeof template !== 'object') return template;
  if (isRef(template)) return lookup(template[REF_KEY]);
  if (Array.isArray(template)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < template.length; i++) {
      const item: unknown = template[i];
      const sub = substituteRefs(item, lookup);
      if (sub !== item) {
        out ??= template.slice();
        out[i] = sub;
      }
    }
    return out ?? template;
  }
  if (!isPlainObject(template)) return template;
  let out: Record<string, unknown> | undefined;
  for (const [k, item] of Object.entries(template as Record<string, unknown>)) {
    const sub = substituteRefs(item, lookup);
    if (sub !== item) {
      out ??= { ...(template as Record<string, unknown>) };
      out[k] = sub;
    }
  }
  return out ?? template;
}

/** The keys referenced anywhere inside a template. */
export function collectRefs(template: unknown, into: Set<string> = new Set()): Set<string> {
  if (template === null || typeof template !== 'object') return into;
  if (isRef(template)) {
    into.add(template[REF_KEY]);
    return into;
  }
  if (Array.isArray(template)) {
    for (const item of template) collectRefs(item, into);
  } else if (isPlainObject(template)) {
    for (const item of Object.values(template as Record<string, unknown>)) collectRefs(item, into);
  }
  return into;
}

function isJsonSafe(v: unknown, depth = 0): boolean {
  if (depth > 64) return false;
  if (v === null) return true;
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(v);
    case 'object':
      if (Array.isArray(v)) return v.every((x) => isJsonSafe(x, depth + 1));
      if (!isPlainObject(v)) return false;
      return Object.values(v as Record<string, unknown>).every((x) => isJsonSafe(x, depth + 1));
    default:
      return false;
  }
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
      return isRef(v) && isPlainObject(v);
    }
    default:
      return false;
  }
}

/**
 * Encodes a JS value. `raw` for a Buffer/Uint8Array, otherwise `v8` unless `json` is asked for.
 * Small plain values (numbers, strings, booleans, null, references, short arrays of them) travel
 * as JSON even when `v8` is preferred: they decode to the same value, and JSON costs a fraction of
 * a v8 serializer for them (each serializer is an object with its own buffer).
 * With `json`, values JSON cannot represent exactly are refused with a clear error.
 */
export function encodeValue(value: unknown, prefer: EncodingName = 'v8'): Value {
  if (prefer !== 'json' && (Buffer.isBuffer(value) || (value instanceof Uint8Array && value.constructor === Uint8Array))) {
    const u8 = value as Uint8Array;
    return { encoding: Encoding.ENCODING_RAW, data: Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength) };
  }
  if (prefer === 'json') {
    if (value !== undefined && !isJsonSafe(value)) {
      throw new InvalidArgumentError(
        'Value cannot be encoded as JSON without loss (it holds a typed array, Map, Set, BigInt, Date, ' +
          'undefined, a non-finite number or a class instance). Use the v8 encoding between JavaScript processes.',
      );
    }
    return { encoding: Encoding.ENCODING_JSON, data: Buffer.from(JSON.stringify(value ?? null), 'utf8') };
  }
  if (isPlainScalarValue(value, 0)) return { encoding: Encoding.ENCODING_JSON, data: Buffer.from(JSON.stringify(value), 'utf8') };
  try {
    return { encoding: Encoding.ENCODING_V8, data: serialize(value) };
  } catch (err) {
    throw new InvalidArgumentError(
      `Value cannot be serialized (${(err as Error).message}). Functions, class instances with private ` +
        'state, sockets and promises cannot travel between processes; pass plain data instead.',
      { cause: err },
    );
  }
}

/** Decodes a Value into a JS value. */
export function decodeValue(value: Value | undefined): unknown {
  if (!value) return undefined;
  switch (value.encoding) {
    case Encoding.ENCODING_JSON:
      return value.data.length === 0 ? undefined : JSON.parse(Buffer.from(value.data.buffer, value.data.byteOffset, value.data.byteLength).toString('utf8'));
    case Encoding.ENCODING_V8:
      return deserialize(value.data);
    case Encoding.ENCODING_RAW:
      return Buffer.from(value.data.buffer, value.data.byteOffset, value.data.byteLength);
    default:
      throw new InvalidArgumentError(
        `Unknown value encoding ${String(value.encoding)}: expected ENCODING_JSON (1), ENCODING_V8 (2) or ENCODING_RAW (3).`,
      );
  }
}

export function encodingName(e: number): EncodingName {
  return e === Encoding.ENCODING_JSON ? 'json' : e === Encoding.ENCODING_RAW ? 'raw' : 'v8';
}

/** A short type name for a value, shown in futures and the dashboard. */
export function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v !== 'object') return typeof v;
  return (v as object).constructor?.name ?? 'Object';
}

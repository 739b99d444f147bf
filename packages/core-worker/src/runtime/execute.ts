/**
 * Calling a task function: shared by the worker threads and the main thread (Run RPC).
 * Values arrive as bytes; they are decoded here, references substituted, the result encoded.
 */
import { pathToFileURL } from 'node:url';
import { resolve as resolvePath } from 'node:path';
import type { Value } from '@skein/protocol';
import { Encoding, SkeinError, decodeValue, encodeValue, jsonProblem, substituteRefs, InvalidArgumentError } from '@skein/common/lite';

/** Bytes as a Buffer over exactly its own ArrayBuffer (copied only when it shares one). */
export function exactBytes(data: Uint8Array): Uint8Array {
  // Shared memory is passed to threads as is (they read it in place); an exact buffer is cloned.
  if (data.buffer instanceof SharedArrayBuffer) return data;
  if (data.byteOffset === 0 && data.byteLength === data.buffer.byteLength) {
    return data;
  }
  const copy = new Uint8Array(data.byteLength);
  copy.set(data);
  return copy;
}

/** A Uint8Array seen as a Buffer, without a copy. */
export function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Decodes the positional argument array and replaces every `__skein_ref__` with the decoded
 * input of that key (each input decoded once, only when referenced).
 */
export function decodeArgs(args: Value, inputs: ReadonlyMap<string, Value>, key: string): unknown[] {
  const template = args.data.byteLength === 0 ? [] : decodeValue(args);
  const decoded = new Map<string, unknown>();
  const lookup = (k: string): unknown => {
    if (decoded.has(k)) return decoded.get(k);
    const v = inputs.get(k);
    if (!v) {
      throw new SkeinError(
        'invalid_argument',
        `Task ${key} refers to the result of ${k}, which is not among its inputs. List every referenced key in the task's dependencies.`,
      );
    }
    const out = decodeValue(v);
    decoded.set(k, out);
    return out;
  };
  const out = substituteRefs(template, lookup);
  if (!Array.isArray(out)) {
    throw new InvalidArgumentError(`Task ${key}: arguments must be an encoded array of positional arguments, got ${typeof out}.`);
  }
  return out;
}

/**
 * Encodes a result in the encoding the client asked for (TaskSpec.result_encoding), never another:
 * a result that encoding cannot carry fails the task with an error naming the value. V8 sends
 * bytes raw (a Buffer as RAW, a Uint8Array as RAW_UINT8ARRAY). Unspecified with JSON arguments
 * (clients in other languages) means JSON, with bytes as RAW (which every language reads);
 * unspecified otherwise means V8.
 */
export function encodeResult(value: unknown, argsEncoding: number, resultEncoding = Encoding.ENCODING_UNSPECIFIED as number, key = ''): Value {
  let want = resultEncoding;
  if (want === Encoding.ENCODING_UNSPECIFIED) {
    if (argsEncoding !== Encoding.ENCODING_JSON) return encodeValue(value);
    want = value instanceof Uint8Array ? Encoding.ENCODING_RAW : Encoding.ENCODING_JSON;
  }
  switch (want) {
    case Encoding.ENCODING_V8:
      return encodeValue(value);
    case Encoding.ENCODING_JSON: {
      const problem = jsonProblem(value);
      if (problem !== undefined) {
        throw new InvalidArgumentError(
          `The result of task ${key} is not JSON-representable: ${problem}. Return plain JSON (objects, arrays, strings, ` +
            'finite numbers, booleans, null) or ask for ENCODING_V8.',
          { details: { key, problem } },
        );
      }
      return { encoding: Encoding.ENCODING_JSON, data: Buffer.from(JSON.stringify(value ?? null), 'utf8') };
    }
    case Encoding.ENCODING_RAW:
    case Encoding.ENCODING_RAW_UINT8ARRAY: {
      if (!(value instanceof Uint8Array)) {
        throw new InvalidArgumentError(
          `The result of task ${key} is not bytes (it is ${value === null ? 'null' : typeof value === 'object' ? `a ${value.constructor?.name ?? 'object'}` : typeof value}), ` +
            'but the client asked for ENCODING_RAW. Return a Buffer or Uint8Array, or ask for ENCODING_JSON or ENCODING_V8.',
          { details: { key } },
        );
      }
      return { encoding: want, data: Buffer.from(value.buffer, value.byteOffset, value.byteLength) };
    }
    default:
      throw new InvalidArgumentError(
        `Task ${key} asks for its result in encoding ${want}, which this worker does not know: ask for ENCODING_JSON (1), ENCODING_V8 (2) or ENCODING_RAW (3).`,
      );
  }
}

/** Imports ES modules and collects their exported functions by export name (later modules win). */
export async function loadModules(paths: readonly string[]): Promise<Map<string, Function>> {
  const fns = new Map<string, Function>();
  for (const p of paths) {
    const url = /^(file|data|node):/.test(p) ? p : pathToFileURL(resolvePath(p)).href;
    let mod: Record<string, unknown>;
    try {
      mod = (await import(url)) as Record<string, unknown>;
    } catch (err) {
      throw new InvalidArgumentError(`Cannot load task module ${p}: ${(err as Error)?.message ?? String(err)}`, { cause: err });
    }
    for (const [name, v] of Object.entries(mod)) if (typeof v === 'function') fns.set(name, v as Function);
  }
  return fns;
}

/** The error for a registered function this worker does not know. */
export function unknownFunctionError(name: string, modules: readonly string[], known: Iterable<string>): SkeinError {
  const names = [...known].sort();
  return new SkeinError(
    'not_found',
    `Function "${name}" is not registered on this worker. ` +
      (modules.length > 0
        ? `Modules loaded: ${modules.join(', ')} (functions: ${names.join(', ') || 'none'}). `
        : 'No modules are loaded. ') +
      `Export "${name}" from a module and start the worker with --module path/to/module.js.`,
    { details: { name, modules: [...modules], functions: names } },
  );
}

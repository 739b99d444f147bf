import { createHash } from 'node:crypto';
import type { InlineFunction } from '@skein/protocol';
import { InvalidArgumentError } from './errors.js';

/** The name prefix of task keys: the function's name, or "lambda". */
export function functionName(fn: Function): string {
  const n = fn.name && /^[A-Za-z_$][\w$]*$/.test(fn.name) ? fn.name : 'lambda';
  return n;
}

/** Source text of a JS function, as an expression the worker can evaluate. */
export function functionSource(fn: Function): string {
  const src = Function.prototype.toString.call(fn);
  if (/\{\s*\[native code\]\s*\}$/.test(src)) {
    throw new InvalidArgumentError(
      `Function ${fn.name || '(anonymous)'} is native or bound and has no source to send to workers. ` +
        'Wrap it: (x) => Math.sqrt(x), or register it on the workers with --module.',
    );
  }
  if (parses(`return (${src});`)) return src;
  // A method written as `name(a) { ... }` (or async/generator) is not an expression; make it one.
  const name = /^(?:async\s+)?\*?\s*([A-Za-z_$][\w$]*)\s*\(/.exec(src)?.[1];
  const wrapped = name ? `({ ${src} })[${JSON.stringify(name)}]` : '';
  if (wrapped && parses(`return (${wrapped});`)) return wrapped;
  throw new InvalidArgumentError(
    `Cannot send function ${fn.name || '(anonymous)'} to workers: its source does not parse on its own ` +
      '(getters, setters and class members cannot travel). Pass an arrow function or a function expression.',
  );
}

function parses(body: string): boolean {
  try {
    // Only parses: the function object is created but never called.
    new Function(body);
    return true;
  } catch {
    return false;
  }
}

export function sha256(text: string | Uint8Array): string {
  return createHash('sha256').update(text).digest('hex');
}

const cache = new WeakMap<Function, InlineFunction>();

/** The wire form of a JS function: source plus content hash (memoized per function object). */
export function inlineFunction(fn: Function): InlineFunction {
  let f = cache.get(fn);
  if (!f) {
    const source = functionSource(fn);
    f = { hash: sha256(source), source, name: functionName(fn) };
    cache.set(fn, f);
  }
  return f;
}

/**
 * Compiles inline function source in a fresh scope. A function that uses variables it did not
 * receive fails at call time with a ReferenceError, which explainReferenceError turns into a
 * message that says how to fix it.
 */
export function compileFunction(source: string): Function {
  const fn: unknown = new Function(`"use strict"; return (${source});`)();
  if (typeof fn !== 'function') {
    throw new InvalidArgumentError(`Inline function source does not evaluate to a function: ${source.slice(0, 80)}`);
  }
  return fn as Function;
}

/** Rewrites the ReferenceError of a function that relied on a captured variable. */
export function explainReferenceError(err: unknown, fnName: string): unknown {
  if (err instanceof ReferenceError) {
    const m = /^(\S+) is not defined/.exec(err.message);
    if (m) {
      const e = new ReferenceError(
        `Function ${fnName} uses "${m[1]}", which is not defined on the worker. Inline functions travel as ` +
          `source text, so they cannot capture variables, imports or closures from where they were written. ` +
          `Pass "${m[1]}" as an argument, or register the function on the workers with --module.`,
      );
      e.stack = `${e.name}: ${e.message}\n${(err.stack ?? '').split('\n').slice(1).join('\n')}`;
      return e;
    }
  }
  return err;
}

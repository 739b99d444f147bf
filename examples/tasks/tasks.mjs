// Functions registered on workers started with `skein worker <scheduler> --module examples/tasks/tasks.mjs`.
// Every named export that is a function can be called by name from any client, in any language
// (FunctionRef.registered), e.g. examples/python. Arguments and results here are JSON-safe so that
// non-JavaScript clients can read them.

/** x + 1 */
export function inc(x) {
  return x + 1;
}

/** a + b */
export function add(a, b) {
  return a + b;
}

/** The sum of an array of numbers. */
export function sum(xs) {
  return xs.reduce((total, x) => total + x, 0);
}

/** x + 1 after `ms` milliseconds (for tests of long-running tasks). */
export async function slowInc(x, ms = 100) {
  await new Promise((resolve) => setTimeout(resolve, ms));
  return x + 1;
}

/** Throws an Error with `message` (for tests of erred tasks). */
export function fail(message = 'failed on purpose') {
  throw new Error(message);
}

/** Returns its argument as it is (for tests of argument encoding: markers, quoting). */
export function echo(x) {
  return x;
}

/** NaN, which JSON cannot carry (for tests of result encodings). */
export function nan() {
  return NaN;
}

/** A string of `n` times `char` (for tests of inline and fetched results). */
export function text(n, char = 'x') {
  return char.repeat(n);
}

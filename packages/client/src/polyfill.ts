/**
 * `Symbol.dispose` / `Symbol.asyncDispose` for runtimes that lack them, using the symbols Node
 * itself registers, so `using` / `await using` work on Node 20.
 */
const S = Symbol as unknown as { dispose?: symbol; asyncDispose?: symbol };
S.dispose ??= Symbol.for('nodejs.dispose');
S.asyncDispose ??= Symbol.for('nodejs.asyncDispose');
export {};

/** WorkerService.Run: calls an inline function in the worker's main thread (client.run). */
import type { InlineFunction, RunResponse, Value } from '@skein/protocol';
import { InvalidArgumentError, compileFunction, explainReferenceError, toRemoteError } from '@skein/common';
import { decodeArgs, encodeResult } from '../runtime/execute.js';

export class MainThreadRunner {
  private readonly compiled = new Map<string, Function>();

  async run(fn: InlineFunction | undefined, args: Value | undefined, resultEncoding = 0): Promise<RunResponse> {
    const name = fn?.name || 'lambda';
    try {
      if (!fn || (!fn.source && !this.compiled.has(fn.hash))) {
        throw new InvalidArgumentError('Run needs an InlineFunction with its source.');
      }
      let f = this.compiled.get(fn.hash);
      if (!f) {
        f = compileFunction(fn.source);
        if (fn.hash) this.compiled.set(fn.hash, f);
      }
      const a = args ?? { encoding: 1, data: Buffer.from('[]') };
      const decoded = decodeArgs(a, new Map(), `run-${name}`);
      const out: unknown = await f(...decoded);
      return { outcome: { $case: 'result', value: encodeResult(out, a.encoding, resultEncoding, `run-${name}`) } };
    } catch (err) {
      return { outcome: { $case: 'error', value: toRemoteError(explainReferenceError(err, name), `run-${name}`) } };
    }
  }
}

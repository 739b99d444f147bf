import { createHash } from 'node:crypto';
import { Encoding } from './values.js';

/**
 * The token of a pure key (TaskSpec.pure): the first 32 hex digits of the SHA-256 of
 * `<function id>\0<encoding tag>\0<args bytes>`, the function id being `inline:<hash>` or
 * `registered:<name>` and the tag `json` or `v8` (the result encoding asked for).
 */
export function pureKeyToken(functionId: string, encodingTag: string, args: Uint8Array): string {
  return createHash('sha256').update(`${functionId}\0${encodingTag}\0`, 'utf8').update(args).digest('hex').slice(0, 32);
}

/** Whether `key` is `<prefix>-<token>` for this definition (see pureKeyToken). */
export function pureKeyMatches(key: string, fn: { registered: string; inlineHash: string }, resultEncoding: number, args: Uint8Array): boolean {
  const id = fn.registered ? `registered:${fn.registered}` : `inline:${fn.inlineHash}`;
  const tag = resultEncoding === Encoding.ENCODING_JSON ? 'json' : 'v8';
  const token = pureKeyToken(id, tag, args);
  return key.length > token.length + 1 && key.endsWith(token) && key.charCodeAt(key.length - token.length - 1) === 0x2d; // '-'
}

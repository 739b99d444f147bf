/** Messages between the main thread and the task threads (structured clone). */
import type { RemoteError } from '@skein/protocol';

export type ThreadFunction =
  | { kind: 'registered'; name: string }
  | { kind: 'inline'; hash: string; name: string; source?: string };

export interface ThreadTask {
  id: number;
  key: string;
  fn: ThreadFunction;
  /** Encoding of the argument array. */
  enc: number;
  /** Encoding asked for the result (0: follow the arguments). */
  renc: number;
  /** The argument bytes, or null when they are packed: bytes [at, at + len) of the batch's `packed`. */
  args: Uint8Array | null;
  at: number;
  len: number;
  /** [key, encoding, bytes] of each input. */
  inputs: Array<[string, number, Uint8Array]>;
}

export type ThreadResult =
  /** data null: the bytes are [at, at + len) of the batch's `packed` (small results). */
  | { id: number; ok: true; enc: number; data: Uint8Array | null; at: number; len: number; typeName: string; startMs: number; stopMs: number }
  | { id: number; ok: false; error: RemoteError; startMs: number; stopMs: number };

/**
 * Small byte arrays of a batch travel packed in one buffer: structured clone makes an ArrayBuffer
 * per Uint8Array, which cost more than the task itself for tiny tasks.
 */
export type ToThread = { t: 'init'; modules: string[] } | { t: 'run'; tasks: ThreadTask[]; packed: Uint8Array | null };

/** Byte arrays up to this size are packed into the batch's buffer. */
export const PACK_MAX_BYTES = 1024;

export type FromThread =
  | { t: 'ready'; functions: string[] }
  | { t: 'init-error'; message: string }
  | { t: 'done'; results: ThreadResult[]; packed: Uint8Array | null };

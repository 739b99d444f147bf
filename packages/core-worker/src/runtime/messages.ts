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
  args: Uint8Array;
  /** [key, encoding, bytes] of each input. */
  inputs: Array<[string, number, Uint8Array]>;
}

export type ThreadResult =
  | { id: number; ok: true; enc: number; data: Uint8Array; typeName: string; startMs: number; stopMs: number }
  | { id: number; ok: false; error: RemoteError; startMs: number; stopMs: number };

export type ToThread = { t: 'init'; modules: string[] } | { t: 'run'; tasks: ThreadTask[] };

export type FromThread =
  | { t: 'ready'; functions: string[] }
  | { t: 'init-error'; message: string }
  | { t: 'done'; results: ThreadResult[] };

/**
 * Streaming values from workers with WorkerService.GetData: chunks are reassembled into one
 * preallocated buffer per key; `missing` marks keys the worker does not hold.
 */
import { Metadata, type ClientReadableStream } from '@grpc/grpc-js';
import { CommClosedError, SkeinError, toSkeinError } from '@skein/common';
import type { GetDataResponse, WorkerServiceClient } from '@skein/protocol';
import type { EncodedValue } from './types.js';

export interface FetchResult {
  values: Map<string, EncodedValue>;
  /** Keys the worker said it does not hold, or whose stream ended incomplete. */
  missing: Set<string>;
}

interface Partial {
  encoding: EncodedValue['encoding'];
  buf: Buffer;
  offset: number;
}

/** Anything with a cancel(), tracked so close() can stop it. */
export interface Cancellable {
  cancel(): void;
}

/**
 * Fetches `keys` from one worker. Rejects with CommClosedError when the worker cannot be reached
 * or the stream breaks; resolves with what it got otherwise.
 */
export function fetchFromWorker(
  worker: WorkerServiceClient,
  address: string,
  keys: readonly string[],
  track: (c: Cancellable) => () => void,
): Promise<FetchResult> {
  return new Promise<FetchResult>((resolve, reject) => {
    const values = new Map<string, EncodedValue>();
    const missing = new Set<string>();
    const partial = new Map<string, Partial>();
    let failed = false;
    const call: ClientReadableStream<GetDataResponse> = worker.getData({ keys: [...keys], requester: 'client', acceptBulk: false }, new Metadata());
    const untrack = track(call);
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      untrack();
      call.cancel();
      reject(err);
    };
    call.on('data', (chunk: GetDataResponse) => {
      if (failed) return;
      const key = chunk.key;
      if (chunk.missing) {
        missing.add(key);
        return;
      }
      let p = partial.get(key);
      if (!p) {
        if (values.has(key)) return fail(new SkeinError('internal', `Worker ${address} sent key ${key} twice.`));
        const total = chunk.totalSize;
        if (chunk.data.length === total) {
          // The whole value in one chunk: no copy.
          values.set(key, { encoding: chunk.encoding, data: chunk.data });
          return;
        }
        p = { encoding: chunk.encoding, buf: Buffer.allocUnsafe(total), offset: 0 };
        partial.set(key, p);
      }
      const data = chunk.data;
      if (p.offset + data.length > p.buf.length) {
        return fail(
          new SkeinError('internal', `Worker ${address} sent more bytes for ${key} than its announced size ${p.buf.length}.`),
        );
      }
      p.buf.set(data, p.offset);
      p.offset += data.length;
      if (p.offset === p.buf.length) {
        partial.delete(key);
        values.set(key, { encoding: p.encoding, data: p.buf });
      }
    });
    call.on('error', (err) => {
      const e = toSkeinError(err, `Fetching ${keys.length === 1 ? keys[0] : `${keys.length} keys`} from worker ${address}`);
      fail(e.code === 'unavailable' ? new CommClosedError(address, e.message, { cause: err }) : e);
    });
    call.on('end', () => {
      if (failed) return;
      untrack();
      for (const k of partial.keys()) missing.add(k);
      for (const k of keys) if (!values.has(k)) missing.add(k);
      resolve({ values, missing });
    });
  });
}

/** The worker's gRPC WorkerService: GetData (chunked stream), Run, GetStatus. */
import type { ServerWritableStream } from '@grpc/grpc-js';
import type { GetDataRequest, GetDataResponse, GetStatusResponse, Value, WorkerServiceServer } from '@skein/protocol';
import { toGrpcStatus } from '@skein/common';
import type { MainThreadRunner } from './run.js';

export interface WorkerServiceBackend {
  /** The value of a key held here, or undefined. */
  getValue(key: string): Value | undefined;
  status(): GetStatusResponse;
  runner: MainThreadRunner;
  chunkBytes: number;
}

function writeAsync(call: ServerWritableStream<GetDataRequest, GetDataResponse>, msg: GetDataResponse): Promise<void> | undefined {
  if (call.write(msg)) return undefined;
  return new Promise((resolve) => call.once('drain', resolve));
}

/** Streams the requested keys, each split into chunks of `chunkBytes` (views, no copies). */
async function streamData(call: ServerWritableStream<GetDataRequest, GetDataResponse>, backend: WorkerServiceBackend): Promise<void> {
  const chunk = Math.max(1, backend.chunkBytes);
  for (const key of call.request.keys) {
    if (call.cancelled) return;
    const v = backend.getValue(key);
    if (!v) {
      await writeAsync(call, { key, encoding: 0, totalSize: 0, data: Buffer.alloc(0), missing: true });
      continue;
    }
    const total = v.data.byteLength;
    let offset = 0;
    do {
      const end = Math.min(total, offset + chunk);
      const first = offset === 0;
      await writeAsync(call, {
        key,
        encoding: first ? v.encoding : 0,
        totalSize: first ? total : 0,
        data: v.data.subarray(offset, end),
        missing: false,
      });
      offset = end;
    } while (offset < total && !call.cancelled);
  }
  call.end();
}

export function createWorkerService(backend: WorkerServiceBackend): WorkerServiceServer {
  return {
    getData(call) {
      streamData(call, backend).catch((err: unknown) => call.destroy(Object.assign(new Error(String(err)), toGrpcStatus(err))));
    },
    run(call, callback) {
      backend.runner.run(call.request.function, call.request.args).then(
        (res) => callback(null, res),
        (err: unknown) => callback(toGrpcStatus(err)),
      );
    },
    getStatus(_call, callback) {
      try {
        callback(null, backend.status());
      } catch (err) {
        callback(toGrpcStatus(err));
      }
    },
  };
}

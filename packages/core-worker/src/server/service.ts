/** The worker's gRPC WorkerService: GetData (chunked stream), Run, GetStatus, GetStory. */
import type { ServerWritableStream } from '@grpc/grpc-js';
import type { GetDataRequest, GetDataResponse, GetStatusResponse, PluginResult, PluginSpec, Value, WorkerServiceGetStoryResponse, WorkerServiceServer } from '@skein/protocol';
import { ANY_ROLE, SkeinError, authorizeService, checkPackageNames, toGrpcStatus, toVersionsMessage, type RoleTable, type Security, type Versions } from '@skein/common';
import type { MainThreadRunner } from './run.js';
import { BULK_MIN_BYTES, type BulkServer } from './bulk.js';

export interface WorkerServiceBackend {
  /** The value of a key held here in memory, or undefined. */
  getValue(key: string): Value | undefined;
  /** A key held here but spilled to disk, read from its file as the stream goes. */
  getSpilled?(key: string): SpilledSource | undefined;
  status(): GetStatusResponse;
  /** The worker's address and the transitions it recorded for these keys, oldest first. */
  story?(keys: string[]): WorkerServiceGetStoryResponse;
  runner: MainThreadRunner;
  chunkBytes: number;
  /** Raw TCP path for large values (encrypted when the cluster has TLS), offered to requesters that accept it. */
  bulk?: BulkServer;
  /** What this worker runs, with the named packages (client.getVersions). */
  versions?(packages: string[]): Versions;
  /** Who may call (see WORKER_ROLES); none: every caller may call everything. */
  security?: Security;
  /** Applies a worker plugin (SetupPlugin); none: the RPC is unimplemented. */
  setupPlugin?(spec: PluginSpec): Promise<PluginResult>;
  /** Tears a plugin down (TeardownPlugin). */
  teardownPlugin?(name: string): Promise<PluginResult>;
}

/**
 * Who may call what: peers (workers) and clients fetch data; only a client runs code (Run) or
 * reads stories; any member of the cluster may ask the status.
 */
export const WORKER_ROLES: RoleTable<WorkerServiceServer> = {
  getData: ['worker', 'client'],
  run: ['client'],
  getStatus: ANY_ROLE,
  getStory: ['client'],
  getVersions: ANY_ROLE,
  // The scheduler hands its plugin registry to the worker (client.registerPlugin).
  setupPlugin: ['scheduler'],
  teardownPlugin: ['scheduler'],
};

/** A value on disk: its encoding, size and a reader of its bytes. */
export interface SpilledSource {
  encoding: number;
  totalSize: number;
  chunks(chunkBytes: number): AsyncIterable<Buffer>;
}

const NO_KEY = Buffer.alloc(0);

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
    const spilled = v ? undefined : backend.getSpilled?.(key);
    if (spilled) {
      await streamSpilled(call, key, spilled, chunk);
      continue;
    }
    if (!v) {
      await writeAsync(call, { key, encoding: 0, totalSize: 0, data: Buffer.alloc(0), missing: true, bulkPort: 0, bulkToken: '', bulkKey: NO_KEY });
      continue;
    }
    const total = v.data.byteLength;
    if (call.request.acceptBulk && backend.bulk && total >= BULK_MIN_BYTES) {
      const ticket = backend.bulk.offer(v.data);
      await writeAsync(call, {
        key,
        encoding: v.encoding,
        totalSize: total,
        data: Buffer.alloc(0),
        missing: false,
        bulkPort: backend.bulk.port,
        bulkToken: ticket.token,
        bulkKey: ticket.key,
      });
      continue;
    }
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
        bulkPort: 0,
        bulkToken: '',
        bulkKey: NO_KEY,
      });
      offset = end;
    } while (offset < total && !call.cancelled);
  }
  call.end();
}

async function streamSpilled(call: ServerWritableStream<GetDataRequest, GetDataResponse>, key: string, s: SpilledSource, chunk: number): Promise<void> {
  let sent = 0;
  if (s.totalSize === 0) {
    await writeAsync(call, { key, encoding: s.encoding, totalSize: 0, data: Buffer.alloc(0), missing: false, bulkPort: 0, bulkToken: '', bulkKey: NO_KEY });
    return;
  }
  for await (const data of s.chunks(chunk)) {
    if (call.cancelled) return;
    const first = sent === 0;
    sent += data.byteLength;
    if (sent > s.totalSize) break;
    await writeAsync(call, { key, encoding: first ? s.encoding : 0, totalSize: first ? s.totalSize : 0, data, missing: false, bulkPort: 0, bulkToken: '', bulkKey: NO_KEY });
  }
  if (sent !== s.totalSize) {
    throw new SkeinError('internal', `The spilled copy of ${key} on disk has ${sent} bytes, expected ${s.totalSize}; the worker's local directory was changed.`);
  }
}

export function createWorkerService(backend: WorkerServiceBackend): WorkerServiceServer {
  const impl: WorkerServiceServer = {
    getData(call) {
      streamData(call, backend).catch((err: unknown) => call.destroy(Object.assign(new Error(String(err)), toGrpcStatus(err))));
    },
    run(call, callback) {
      backend.runner.run(call.request.function, call.request.args, call.request.resultEncoding).then(
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
    getVersions(call, callback) {
      try {
        if (!backend.versions) throw new SkeinError('unimplemented', 'This worker does not report its versions.');
        const packages = checkPackageNames(call.request.packages, 'WorkerServiceGetVersionsRequest.packages');
        callback(null, { versions: toVersionsMessage(backend.versions(packages)) });
      } catch (err) {
        callback(toGrpcStatus(err));
      }
    },
    getStory(call, callback) {
      try {
        if (!backend.story) throw new SkeinError('unimplemented', 'This worker keeps no transition log.');
        callback(null, backend.story(call.request.keys));
      } catch (err) {
        callback(toGrpcStatus(err));
      }
    },
    setupPlugin(call, callback) {
      const spec = call.request.plugin;
      if (!backend.setupPlugin) return callback(toGrpcStatus(new SkeinError('unimplemented', 'This worker takes no plugins.')));
      if (!spec) return callback(toGrpcStatus(new SkeinError('invalid_argument', 'SetupPluginRequest.plugin is missing.')));
      backend.setupPlugin(spec).then(
        (result) => callback(null, { result }),
        (err: unknown) => callback(toGrpcStatus(err)),
      );
    },
    teardownPlugin(call, callback) {
      if (!backend.teardownPlugin) return callback(toGrpcStatus(new SkeinError('unimplemented', 'This worker takes no plugins.')));
      backend.teardownPlugin(call.request.name).then(
        (result) => callback(null, { result }),
        (err: unknown) => callback(toGrpcStatus(err)),
      );
    },
  };
  return backend.security ? authorizeService('WorkerService', impl, backend.security, WORKER_ROLES) : impl;
}

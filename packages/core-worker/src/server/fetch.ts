/**
 * Fetching values from peers' WorkerService.GetData: one cached channel per peer, chunks
 * reassembled into one preallocated Buffer per key.
 */
import type { ServiceError } from '@grpc/grpc-js';
import { WorkerServiceClient, type GetDataResponse, type Value } from '@skein/protocol';
import { CommClosedError, Security, parseAddress, toSkeinError } from '@skein/common';
import { fetchBulk } from './bulk.js';

export interface FetchResult {
  data: Map<string, Value>;
  missing: string[];
}

/** One gRPC client per peer address, reused for every transfer. */
export class PeerClients {
  private readonly clients = new Map<string, WorkerServiceClient>();

  constructor(readonly security: Security = Security.insecure()) {}

  get(address: string): WorkerServiceClient {
    let c = this.clients.get(address);
    if (!c) {
      const dial = this.security.dial(address, 'worker', 'worker');
      c = new WorkerServiceClient(dial.target, dial.credentials, dial.options);
      this.clients.set(address, c);
    }
    return c;
  }

  /** Drops the client of a peer that failed (a new channel is made next time). */
  forget(address: string): void {
    this.clients.get(address)?.close();
    this.clients.delete(address);
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

/**
 * Streams `keys` from a peer. Each key's chunks land in one Buffer of its total size (a value
 * that arrives in one chunk is used as is). Rejects with CommClosedError when the peer fails.
 */
export function fetchData(
  client: WorkerServiceClient,
  address: string,
  keys: readonly string[],
  requester: string,
  timeoutMs = 0,
  signal?: AbortSignal,
  acceptBulk = true,
): Promise<FetchResult> {
  return new Promise((resolveFetch, rejectFetch) => {
    // The abort listener goes when the fetch settles: the signal lives as long as the worker, and
    // a listener left on it would keep this closure, and every value fetched here, alive.
    const onAbort = () => fail('cancelled: the worker is closing');
    const settled = () => signal?.removeEventListener('abort', onAbort);
    const resolve = (r: FetchResult) => {
      settled();
      resolveFetch(r);
    };
    const reject = (e: Error) => {
      settled();
      rejectFetch(e);
    };
    const data = new Map<string, Value>();
    const missing: string[] = [];
    let current: { key: string; buf: Buffer; offset: number; encoding: number } | undefined;
    const finishCurrent = (): string | undefined => {
      if (!current) return undefined;
      const c = current;
      current = undefined;
      if (c.offset !== c.buf.byteLength) return `value of ${c.key} was cut short (${c.offset} of ${c.buf.byteLength} bytes)`;
      data.set(c.key, { encoding: c.encoding, data: c.buf });
      return undefined;
    };
    const call = client.getData({ keys: [...keys], requester, acceptBulk }, timeoutMs > 0 ? { deadline: Date.now() + timeoutMs } : {});
    const bulk: Promise<void>[] = [];
    let failed = false;
    signal?.addEventListener('abort', onAbort, { once: true });
    const fail = (msg: string, cause?: unknown) => {
      if (failed) return;
      failed = true;
      call.cancel();
      reject(new CommClosedError(address, `Fetching ${keys.length} key(s) from ${address} failed: ${msg}`, { cause }));
    };
    call.on('data', (chunk: GetDataResponse) => {
      if (chunk.missing) {
        const err = finishCurrent();
        if (err) return fail(err);
        missing.push(chunk.key);
        return;
      }
      if (chunk.bulkPort > 0) {
        const err = finishCurrent();
        if (err) return fail(err);
        const key = chunk.key;
        const encoding = chunk.encoding;
        bulk.push(
          fetchBulk(parseAddress(address).host, chunk.bulkPort, chunk.bulkToken, Number(chunk.totalSize), address, chunk.bulkKey).then(
            (buf) => void data.set(key, { encoding, data: buf }),
            (e: unknown) => fail((e as Error).message, e),
          ),
        );
        return;
      }
      if (!current || current.key !== chunk.key) {
        const err = finishCurrent();
        if (err) return fail(err);
        const total = Number(chunk.totalSize);
        if (chunk.data.byteLength === total) {
          data.set(chunk.key, { encoding: chunk.encoding, data: chunk.data });
          return;
        }
        current = { key: chunk.key, buf: Buffer.allocUnsafe(total), offset: 0, encoding: chunk.encoding };
      }
      if (current.offset + chunk.data.byteLength > current.buf.byteLength) return fail(`value of ${chunk.key} is larger than announced`);
      chunk.data.copy(current.buf, current.offset);
      current.offset += chunk.data.byteLength;
    });
    call.on('error', (err: ServiceError) => fail(toSkeinError(err).message, err));
    call.on('end', () => {
      if (failed) return;
      const err = finishCurrent();
      if (err) return fail(err);
      void Promise.all(bulk).then(() => {
        if (failed) return;
        for (const k of keys) if (!data.has(k) && !missing.includes(k)) missing.push(k);
        resolve({ data, missing });
      });
    });
  });
}

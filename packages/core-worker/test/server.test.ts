import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { getEventListeners } from 'node:events';
import { status as GrpcStatus, type Server } from '@grpc/grpc-js';
import { Encoding, WorkerServiceClient, WorkerServiceService, type GetDataResponse, type Value } from '@skein/protocol';
import { CHANNEL_OPTIONS, bindServer, decodeValue, encodeValue, inlineFunction, insecureChannel, newServer, shutdownServer } from '@skein/common';
import { createWorkerService } from '../src/server/service.js';
import { MainThreadRunner } from '../src/server/run.js';
import { PeerClients, fetchData } from '../src/server/fetch.js';

const CHUNK = 1024 * 1024;

describe('WorkerService', () => {
  let server: Server;
  let address: string;
  const store = new Map<string, Value>();
  const peers = new PeerClients();
  const big = Buffer.alloc(5 * 1024 * 1024 + 123);
  for (let i = 0; i < big.length; i++) big[i] = i % 251;

  beforeAll(async () => {
    store.set('big', { encoding: Encoding.ENCODING_RAW, data: big });
    store.set('small', encodeValue({ a: 1 }, 'json'));
    store.set('empty', { encoding: Encoding.ENCODING_RAW, data: Buffer.alloc(0) });
    server = newServer();
    server.addService(
      WorkerServiceService,
      createWorkerService({
        getValue: (k) => store.get(k),
        status: () => ({ address, name: 'w', status: 'running', nthreads: 1, executing: 0, ready: 0, keys: [...store.keys()], managedBytes: 0, bulkFetched: 0, bulkFetchedEncrypted: 0 }),
        runner: new MainThreadRunner(),
        chunkBytes: CHUNK,
      }),
    );
    const port = await bindServer(server, '127.0.0.1', 0, 'worker');
    address = `tcp://127.0.0.1:${port}`;
  });
  afterAll(async () => {
    peers.close();
    await shutdownServer(server);
  });

  it('streams a value larger than 4 MB in chunks; the first carries encoding and size', async () => {
    const client = peers.get(address);
    const chunks: GetDataResponse[] = [];
    await new Promise<void>((resolve, reject) => {
      const call = client.getData({ keys: ['big', 'nope', 'small'], requester: 'test', acceptBulk: false });
      call.on('data', (c: GetDataResponse) => chunks.push(c));
      call.on('error', reject);
      call.on('end', resolve);
    });
    const bigChunks = chunks.filter((c) => c.key === 'big');
    expect(bigChunks).toHaveLength(6);
    expect(bigChunks[0]).toMatchObject({ encoding: Encoding.ENCODING_RAW, totalSize: big.length });
    expect(bigChunks[1]).toMatchObject({ totalSize: 0 });
    expect(bigChunks.every((c, i) => c.data.length === (i < 5 ? CHUNK : 123))).toBe(true);
    expect(chunks.find((c) => c.key === 'nope')).toMatchObject({ missing: true });
    expect(chunks.find((c) => c.key === 'small')).toMatchObject({ encoding: Encoding.ENCODING_JSON, totalSize: 7 });
  });

  it('fetchData reassembles chunks into one buffer and lists missing keys', async () => {
    const r = await fetchData(peers.get(address), address, ['small', 'big', 'nope', 'empty'], 'test');
    expect(r.missing).toEqual(['nope']);
    expect(decodeValue(r.data.get('small'))).toEqual({ a: 1 });
    const got = r.data.get('big')!;
    expect(got.encoding).toBe(Encoding.ENCODING_RAW);
    expect(got.data.length).toBe(big.length);
    expect(got.data.equals(big)).toBe(true);
    expect(r.data.get('empty')!.data.length).toBe(0);
  });

  it('fetchData rejects with a clear error when the peer is unreachable', async () => {
    const dead = 'tcp://127.0.0.1:1';
    const c = new WorkerServiceClient('127.0.0.1:1', insecureChannel(), CHANNEL_OPTIONS);
    await expect(fetchData(c, dead, ['x'], 'test')).rejects.toThrow(/Fetching 1 key\(s\) from tcp:\/\/127.0.0.1:1 failed/);
    c.close();
  });

  it('Run calls an inline function with its arguments; errors come back as RemoteError', async () => {
    const client = peers.get(address);
    const call = (fn: Function, args: unknown[]) =>
      new Promise<unknown>((resolve, reject) =>
        client.run({ function: inlineFunction(fn), args: encodeValue(args, 'json'), resultEncoding: 0 }, (err, res) => (err ? reject(err) : resolve(res))),
      );
    const r1 = (await call((a: number, b: number) => a * b, [6, 7])) as { outcome: { $case: string; value: Value } };
    expect(r1.outcome.$case).toBe('result');
    expect(decodeValue(r1.outcome.value)).toBe(42);
    const r2 = (await call(async function () {
      return process.pid;
    }, [])) as { outcome: { value: Value } };
    expect(decodeValue(r2.outcome.value)).toBe(process.pid);
    const r3 = (await call(() => {
      throw new RangeError('bad');
    }, [])) as { outcome: { $case: string; value: { type: string; message: string } } };
    expect(r3.outcome).toMatchObject({ $case: 'error', value: { type: 'RangeError', message: 'bad' } });
  });

  it('GetStatus', async () => {
    const res = await new Promise((resolve, reject) => peers.get(address).getStatus({}, (e, r) => (e ? reject(e) : resolve(r))));
    expect(res).toMatchObject({ name: 'w', status: 'running', keys: ['big', 'small', 'empty'] });
  });
});

describe('WorkerService with the bulk path', () => {
  it('offers large values over raw TCP to requesters that accept it, and chunks to the others', async () => {
    const { BulkServer } = await import('../src/server/bulk.js');
    const bulk = await BulkServer.start('127.0.0.1');
    const big = Buffer.alloc(3 * 1024 * 1024 + 5, 9);
    const store = new Map<string, Value>([
      ['big', { encoding: Encoding.ENCODING_RAW, data: big }],
      ['small', encodeValue([1, 2], 'json')],
    ]);
    const server = newServer();
    server.addService(
      WorkerServiceService,
      createWorkerService({
        getValue: (k) => store.get(k),
        status: () => ({ address: '', name: 'w', status: 'running', nthreads: 1, executing: 0, ready: 0, keys: [], managedBytes: 0, bulkFetched: 0, bulkFetchedEncrypted: 0 }),
        runner: new MainThreadRunner(),
        chunkBytes: CHUNK,
        bulk,
      }),
    );
    const port = await bindServer(server, '127.0.0.1', 0, 'worker');
    const address = `tcp://127.0.0.1:${port}`;
    const peers = new PeerClients();
    try {
      const offers: GetDataResponse[] = [];
      await new Promise<void>((resolve, reject) => {
        const call = peers.get(address).getData({ keys: ['big', 'small'], requester: 'test', acceptBulk: true });
        call.on('data', (c: GetDataResponse) => offers.push(c));
        call.on('error', reject);
        call.on('end', resolve);
      });
      expect(offers.find((c) => c.key === 'big')).toMatchObject({ bulkPort: bulk.port, totalSize: big.length, data: Buffer.alloc(0) });
      expect(offers.find((c) => c.key === 'small')).toMatchObject({ bulkPort: 0 });

      const viaBulk = await fetchData(peers.get(address), address, ['big', 'small'], 'test');
      const got = viaBulk.data.get('big')!.data;
      expect(got.buffer).toBeInstanceOf(SharedArrayBuffer);
      expect(Buffer.compare(got, big)).toBe(0);
      expect(decodeValue(viaBulk.data.get('small'))).toEqual([1, 2]);

      // The worker's abort signal outlives every fetch: a listener left on it kept each fetched
      // value alive until the worker closed (a 500 MB input per run grew the worker by 500 MB).
      const abort = new AbortController();
      await fetchData(peers.get(address), address, ['big', 'small'], 'test', 0, abort.signal);
      await fetchData(peers.get(address), address, ['big'], 'test', 0, abort.signal, false);
      await expect(fetchData(peers.get(address), address, ['big'], 'test', 1e-3, abort.signal)).rejects.toThrow(/failed/);
      expect(getEventListeners(abort.signal, 'abort')).toHaveLength(0);

      const viaChunks = await fetchData(peers.get(address), address, ['big'], 'test', 0, undefined, false);
      expect(viaChunks.data.get('big')!.data.buffer).not.toBeInstanceOf(SharedArrayBuffer);
      expect(Buffer.compare(viaChunks.data.get('big')!.data, big)).toBe(0);
    } finally {
      peers.close();
      await shutdownServer(server);
      await bulk.close();
    }
  });
});

describe('WorkerService.GetStory', () => {
  it("answers with the backend's transitions, and UNIMPLEMENTED for a backend without a transition log", async () => {
    const transition = { key: 'x', start: 'executing', finish: 'memory', stimulusId: 'task-finished-ab12cd-1', timeMs: 1 };
    const start = async (withStory: boolean) => {
      const server = newServer();
      server.addService(
        WorkerServiceService,
        createWorkerService({
          getValue: () => undefined,
          status: () => ({ address: '', name: 'w', status: 'running', nthreads: 1, executing: 0, ready: 0, keys: [], managedBytes: 0, bulkFetched: 0, bulkFetchedEncrypted: 0 }),
          ...(withStory ? { story: (keys: string[]) => ({ address: 'tcp://w:1', transitions: keys.includes('x') ? [transition] : [] }) } : {}),
          runner: new MainThreadRunner(),
          chunkBytes: CHUNK,
        }),
      );
      const port = await bindServer(server, '127.0.0.1', 0, 'worker');
      return { server, client: new WorkerServiceClient(`127.0.0.1:${port}`, insecureChannel(), CHANNEL_OPTIONS) };
    };
    const ask = (client: WorkerServiceClient, keys: string[]) =>
      new Promise<unknown>((resolve, reject) => client.getStory({ keys }, (err, res) => (err ? reject(err) : resolve(res))));
    const withLog = await start(true);
    const without = await start(false);
    try {
      expect(await ask(withLog.client, ['x', 'y'])).toEqual({ address: 'tcp://w:1', transitions: [transition] });
      expect(await ask(withLog.client, ['y'])).toEqual({ address: 'tcp://w:1', transitions: [] });
      await expect(ask(without.client, ['x'])).rejects.toMatchObject({ code: GrpcStatus.UNIMPLEMENTED, details: expect.stringContaining('no transition log') });
    } finally {
      withLog.client.close();
      without.client.close();
      await shutdownServer(withLog.server);
      await shutdownServer(without.server);
    }
  });
});

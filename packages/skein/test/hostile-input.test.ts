/**
 * Level 2/3 (issue 14, hostile input): a real LocalCluster, a legitimate Client, and an attacker
 * speaking gRPC from a raw stub. Each malformed input is refused with a clear error to its sender,
 * and the legitimate client is not affected.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type Socket } from 'node:net';
import { Client as GrpcClient, Metadata, status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';
import { Client, delayed, type Future } from '@skein/client';
import {
  NannyServiceClient,
  SchedulerServiceClient,
  TaskSpec,
  WorkerServiceClient,
  type ClientSessionResponse,
  type ClientUpdate,
  type UpdateGraph,
  type WorkerSessionResponse,
} from '@skein/protocol';
import { CHANNEL_OPTIONS, PROTOCOL_VERSION, encodeValue, grpcTarget, inlineFunction, insecureChannel } from '@skein/common';
import { LocalCluster } from '../src/index.js';
import { SKEIN_BIN, readyOf, startProcess } from './helpers.js';

const MAX_KEY_LENGTH = 100;
const MAX_KEYS_PER_UPDATE = 500;
const MAX_MESSAGE_BYTES = 2 * 1024 * 1024;

let cluster: LocalCluster;
let client: Client;
let stub: SchedulerServiceClient;

beforeAll(async () => {
  cluster = await LocalCluster.start({
    nWorkers: 2,
    threadsPerWorker: 1,
    memoryLimit: '1GB',
    limits: { maxKeyLength: MAX_KEY_LENGTH, maxKeysPerUpdate: MAX_KEYS_PER_UPDATE, maxMessageBytes: MAX_MESSAGE_BYTES },
  });
  client = await Client.connect(cluster);
  stub = new SchedulerServiceClient(grpcTarget(cluster.schedulerAddress), insecureChannel(), CHANNEL_OPTIONS);
});
afterAll(async () => {
  stub?.close();
  await client?.close();
  await cluster?.close();
});

/** The legitimate client still gets correct results. */
async function legitimateClientWorks(): Promise<void> {
  const xs = [1, 2, 3, 4, 5, 6, 7, 8];
  expect(await client.gather(client.map((x: number) => x + 100, xs))).toEqual(xs.map((x) => x + 100));
}

async function until<T>(what: string, probe: () => T | undefined, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** An attacker's raw client session (ClientHello sent, Welcome awaited). */
async function rawSession(id: string) {
  const call = stub.clientSession();
  const updates: ClientUpdate[] = [];
  const errors: ServiceError[] = [];
  call.on('data', (r: ClientSessionResponse) => updates.push(...r.updates));
  call.on('error', (e: ServiceError) => errors.push(e));
  call.write({ messages: [{ kind: { $case: 'hello', value: { protocolVersion: PROTOCOL_VERSION, clientId: id, batches: false } } }] });
  await until('the welcome', () => updates.find((u) => u.kind?.$case === 'welcome'));
  const send = (u: Partial<UpdateGraph>) =>
    call.write({
      messages: [{ kind: { $case: 'updateGraph', value: { tasks: [], wantedKeys: [], functions: [], broadcastKeys: [], stimulusId: '', batches: [], ...u } } }],
    });
  const erred = (key: string) =>
    until(`an erred report for ${key}`, () => {
      for (const u of updates) if (u.kind?.$case === 'erred' && u.kind.value.key === key) return u.kind.value.error!;
      return undefined;
    });
  return { call, updates, errors, send, erred, close: () => call.end() };
}

const inc = inlineFunction((x: number) => x + 1);
const task = (key: string, over: Partial<TaskSpec> = {}) =>
  TaskSpec.create({ key, function: { kind: { $case: 'inlineHash', value: inc.hash } }, args: encodeValue([1], 'json'), ...over });

function unary<Req, Res>(fn: (req: Req, md: Metadata, opts: { deadline: number }, cb: (err: ServiceError | null, res?: Res) => void) => unknown, req: Req) {
  return new Promise<{ err: ServiceError | null; res?: Res }>((resolve) => fn(req, new Metadata(), { deadline: Date.now() + 10_000 }, (err, res) => resolve({ err, res })));
}

async function whoHas(key: string): Promise<{ workers: string[]; nbytes: number }> {
  const { err, res } = await unary(stub.getWhoHas.bind(stub), { keys: [key] });
  if (err) throw err;
  const w = res!.whoHas[0]!;
  return { workers: w.workers, nbytes: w.nbytes };
}

describe('graph updates are validated before anything changes', () => {
  it('a key defined twice in one update is refused whole (the first used to win silently)', async () => {
    const s = await rawSession('attacker-dup');
    s.send({ tasks: [task('dup-1'), task('dup-1', { args: encodeValue([99], 'json') }), task('dup-2')], functions: [inc], wantedKeys: ['dup-1', 'dup-2'] });
    for (const key of ['dup-1', 'dup-2']) {
      const e = await s.erred(key);
      expect(e.code).toBe('invalid_argument');
      expect(e.message).toContain('key "dup-1" is defined twice in one update');
    }
    expect(await whoHas('dup-1')).toEqual({ workers: [], nbytes: -1 });
    s.close();
    await legitimateClientWorks();
  });

  it('a task without a function is refused at submit, not on a worker', async () => {
    const s = await rawSession('attacker-nofn');
    s.send({ tasks: [TaskSpec.create({ key: 'nofn-1', args: encodeValue([1], 'json') })], wantedKeys: ['nofn-1'] });
    const e = await s.erred('nofn-1');
    expect(e.code).toBe('invalid_argument');
    expect(e.message).toContain('task "nofn-1" has no function');
    s.close();
    await legitimateClientWorks();
  });

  it('a dependency on a key that does not exist fails that task with a clear error (Dask cancels it), the rest runs', async () => {
    const s = await rawSession('attacker-dep');
    s.send({ tasks: [task('dep-ok'), task('dep-lost', { dependencies: ['nowhere-1'] })], functions: [inc], wantedKeys: ['dep-ok', 'dep-lost'] });
    const e = await s.erred('dep-lost');
    expect(e.code).toBe('invalid_argument');
    expect(e.message).toContain('depends on "nowhere-1", which the scheduler does not know');
    await until('dep-ok in memory', () => s.updates.find((u) => u.kind?.$case === 'inMemory' && u.kind.value.key === 'dep-ok'));
    s.close();
  });

  it("a key over maxKeyLength is refused; the submit's future fails with the scheduler's InvalidArgumentError", async () => {
    const long = 'k'.repeat(MAX_KEY_LENGTH + 1);
    const f = client.submitWith({ key: long }, (x: number) => x, 1);
    await expect(f.result()).rejects.toMatchObject({
      remoteType: 'InvalidArgumentError',
      message: expect.stringContaining(`is ${MAX_KEY_LENGTH + 1} characters long, over the scheduler's limit of ${MAX_KEY_LENGTH}`),
    });
    await legitimateClientWorks();
  });

  it('an update with more tasks than maxKeysPerUpdate is refused whole', async () => {
    const s = await rawSession('attacker-many');
    const keys = Array.from({ length: MAX_KEYS_PER_UPDATE + 1 }, (_, i) => `many-${i}`);
    s.send({ tasks: keys.map((k) => task(k)), functions: [inc], wantedKeys: ['many-0'] });
    const e = await s.erred('many-0');
    expect(e.code).toBe('invalid_argument');
    expect(e.message).toContain(`has ${MAX_KEYS_PER_UPDATE + 1} tasks and 1 wanted keys, more than the scheduler's limit of ${MAX_KEYS_PER_UPDATE} keys per update`);
    expect(await whoHas('many-1')).toEqual({ workers: [], nbytes: -1 });
    s.close();
    await legitimateClientWorks();
  });
});

describe('function sources', () => {
  const square = (x: number) => x * x;

  it("a source registered under another function's hash does not change what another client runs", async () => {
    const attacker = await rawSession('attacker-fn');
    const hash = inlineFunction(square).hash;
    // The attacker's own code under the hash of the function the victim will send (no task: the
    // update only registers it). The scheduler used to keep the first source sent for a hash.
    attacker.send({ functions: [{ hash, source: '() => -1', name: 'square' }] });
    await legitimateClientWorks(); // the attacker's update has been handled by now
    const victim = await Client.connect(cluster);
    try {
      expect(await victim.gather(victim.map(square, [1, 2, 3, 4, 5]))).toEqual([1, 4, 9, 16, 25]);
    } finally {
      await victim.close();
    }
    // With a task, the attacker hears why.
    attacker.send({ functions: [{ hash, source: '() => -1', name: 'square' }], tasks: [task('fn-1', { function: { kind: { $case: 'inlineHash', value: hash } } })], wantedKeys: ['fn-1'] });
    const e = await attacker.erred('fn-1');
    expect(e.code).toBe('invalid_argument');
    expect(e.message).toContain('the source sent for function square does not match its hash');
    attacker.close();
  });

  it("a task may only use inline functions its own client sent", async () => {
    const cube = (x: number) => x * x * x;
    expect(await client.submit(cube, 2).result()).toBe(8);
    const s = await rawSession('attacker-borrow');
    s.send({ tasks: [task('borrow-1', { function: { kind: { $case: 'inlineHash', value: inlineFunction(cube).hash } } })], wantedKeys: ['borrow-1'] });
    const e = await s.erred('borrow-1');
    expect(e.message).toContain('whose source this client has not sent');
    s.close();
  });
});

describe('numbers out of range are refused before any action', () => {
  it('RestartWorkers(timeout_ms=-1) is refused and cancels no futures', async () => {
    const held = client.submit((x: number) => x * 10, 7);
    expect(await held.result()).toBe(70);
    const { err } = await unary(stub.restartWorkers.bind(stub), { timeoutMs: -1 });
    expect(err?.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(err?.details).toContain('RestartWorkersRequest.timeout_ms is -1: it must be from 0 to');
    expect(held.status).toBe('finished');
    expect(await held.result()).toBe(70);
    expect((await client.schedulerInfo()).workers).toHaveLength(2);
  });

  it('RetireWorkers with a huge n is refused and retires nobody', async () => {
    const { err } = await unary(stub.retireWorkers.bind(stub), { workers: [], n: 1_000_000 });
    expect(err?.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(err?.details).toContain('RetireWorkersRequest.n is 1000000: it must be from 0 to 2');
    const negative = await unary(stub.retireWorkers.bind(stub), { workers: [], n: -1 });
    expect(negative.err?.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect((await client.schedulerInfo()).workers).toHaveLength(2);
    await legitimateClientWorks();
  });

  it('GetAdaptiveTarget and a nanny Restart with a negative duration are refused', async () => {
    const a = await unary(stub.getAdaptiveTarget.bind(stub), { targetDurationMs: -5 });
    expect(a.err?.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(a.err?.details).toContain('GetAdaptiveTargetRequest.target_duration_ms is -5');
    const info = await client.schedulerInfo();
    const nannyAddress = info.workers[0]!.nannyAddress;
    expect(nannyAddress).not.toBe('');
    const nanny = new NannyServiceClient(grpcTarget(nannyAddress), insecureChannel(), CHANNEL_OPTIONS);
    try {
      const r = await unary(nanny.restart.bind(nanny), { reason: 'attack', timeoutMs: -1 });
      expect(r.err?.code).toBe(GrpcStatus.INVALID_ARGUMENT);
      expect(r.err?.details).toContain('RestartRequest.timeout_ms is -1');
    } finally {
      nanny.close();
    }
    expect((await client.schedulerInfo()).workers.map((w) => w.address).sort()).toEqual(info.workers.map((w) => w.address).sort());
  });

  it('a WorkerHello with negative threads is refused', async () => {
    const call = stub.workerSession();
    const done = new Promise<ServiceError>((resolve) => call.on('error', resolve));
    call.on('data', (_r: WorkerSessionResponse) => undefined);
    call.write({
      messages: [
        { kind: { $case: 'hello', value: { protocolVersion: PROTOCOL_VERSION, address: 'tcp://127.0.0.1:9', name: 'bad', nthreads: -3, memoryLimit: 0, resources: new Map(), held: [], registeredFunctions: [], pid: 1, nannyAddress: '', batches: true, versions: undefined } } },
      ],
    });
    const err = await done;
    expect(err.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(err.details).toContain('WorkerHello.nthreads is -3: it must be from 1 to');
    expect((await client.schedulerInfo()).workers).toHaveLength(2);
  });
});

describe('message size limits', () => {
  it('a worker registration over the limit is refused with RESOURCE_EXHAUSTED; the scheduler keeps serving', async () => {
    const call = stub.workerSession();
    const done = new Promise<ServiceError>((resolve) => call.on('error', resolve));
    call.on('data', (_r: WorkerSessionResponse) => undefined);
    const held = Array.from({ length: 3000 }, (_, i) => ({ key: `${'x'.repeat(1000)}-${i}`, workers: [], nbytes: 1 }));
    call.write({
      messages: [
        { kind: { $case: 'hello', value: { protocolVersion: PROTOCOL_VERSION, address: 'tcp://127.0.0.1:9', name: 'big', nthreads: 1, memoryLimit: 0, resources: new Map(), held, registeredFunctions: [], pid: 1, nannyAddress: '', batches: true, versions: undefined } } },
      ],
    });
    const err = await done;
    expect(err.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(err.details).toMatch(/larger than max \(\d+ vs\.? 2097152\)/);
    expect((await client.schedulerInfo()).workers).toHaveLength(2);
    await legitimateClientWorks();
  });

  it("the client's own batching keeps a big map under the limit", async () => {
    // 400 tasks of 20 kB of arguments each: 8 MB, four times the scheduler's limit in all.
    const xs = Array.from({ length: 400 }, (_, i) => 'y'.repeat(20_000) + i);
    const out = await client.gather(client.map((s: string) => s.length, xs));
    expect(out).toEqual(xs.map((s) => s.length));
  });
});

describe("message size limits, from a worker's side", () => {
  it("a worker's batched results stay under the limit, however many finish at once", async () => {
    // 600 results of 60 kB each travel inline (under 64 KiB): 36 MB in all, 18 times the limit.
    const n = 600;
    const lengths = await client.gather(client.map((i: number) => 'r'.repeat(60_000 - String(i).length) + i, Array.from({ length: n }, (_, i) => i)));
    expect(lengths.map((s) => s.length)).toEqual(Array.from({ length: n }, () => 60_000));
    expect((await client.schedulerInfo()).workers).toHaveLength(2);
  });
});

describe('message size limits, from the client side', () => {
  it("a single task over the scheduler's limit fails at the client; its session keeps working", async () => {
    const f = client.submit((s: string) => s.length, 'z'.repeat(3 * 1024 * 1024));
    await expect(f.result()).rejects.toMatchObject({
      remoteType: 'InvalidArgumentError',
      message: expect.stringContaining(`more than the scheduler at ${cluster.schedulerAddress} accepts in one message (${MAX_MESSAGE_BYTES} bytes), so it was not sent`),
    });
    await legitimateClientWorks();
  });
});

describe("a worker's bulk-transfer port", () => {
  it('closes connections that send no token', async () => {
    // A value large enough for the bulk path, and a GetData that offers it: the reply names the port.
    const big = client.submitWith({ key: 'bulk-value' }, (n: number) => new Uint8Array(n).fill(7), 2 * 1024 * 1024);
    await big.result();
    const [holder] = (await whoHas('bulk-value')).workers;
    const w = new WorkerServiceClient(grpcTarget(holder!), insecureChannel(), CHANNEL_OPTIONS);
    const port = await new Promise<number>((resolve, reject) => {
      const stream = w.getData({ keys: ['bulk-value'], requester: 'test', acceptBulk: true });
      stream.on('data', (r: { bulkPort: number }) => {
        if (r.bulkPort) resolve(r.bulkPort);
      });
      stream.on('error', reject);
      stream.on('end', () => reject(new Error('no bulk port offered')));
    });
    w.close();
    const sockets: Socket[] = [];
    const closed = Array.from({ length: 200 }, () => {
      const s = connect({ host: '127.0.0.1', port });
      sockets.push(s);
      return new Promise<void>((resolve) => {
        s.on('error', () => undefined);
        s.on('close', () => resolve());
      });
    });
    const start = Date.now();
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([Promise.all(closed), new Promise((_, reject) => (timer = setTimeout(() => reject(new Error('idle bulk connections stayed open')), 15_000)))]);
    } finally {
      clearTimeout(timer);
      for (const s of sockets) s.destroy();
    }
    expect(Date.now() - start).toBeGreaterThanOrEqual(4_000);
  });
});

describe('wrong wire types are refused by every service (INVALID_ARGUMENT naming the message type and field)', () => {
  it('the scheduler: a unary request and a session message', async () => {
    // GetStoryRequest.keys (field 1, a string) as a varint: decoded, it would be a request for no keys.
    const err = await rawUnary(cluster.schedulerAddress, '/skein.v1.SchedulerService/GetStory', Buffer.from([0x08, 0x01]));
    expect(err?.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(err?.details).toContain('skein.v1.GetStoryRequest field 1: wire type 0 (varint), the schema says 2 (length-delimited)');
    // A ClientHello whose protocol_version (1) is a varint, inside a session request.
    const hello = [0x08, 0x01];
    const message = [0x0a, hello.length, ...hello];
    const c = new GrpcClient(grpcTarget(cluster.schedulerAddress), insecureChannel());
    const call = c.makeBidiStreamRequest('/skein.v1.SchedulerService/ClientSession', (b: Buffer) => b, (b: Buffer) => b, new Metadata());
    const failed = new Promise<ServiceError>((resolve) => call.on('error', resolve));
    call.on('data', () => undefined);
    call.write(Buffer.from([0x0a, message.length, ...message]));
    const e = await failed;
    c.close();
    expect(e.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(e.details).toContain('skein.v1.ClientHello field 1: wire type 0');
    await legitimateClientWorks();
  });

  it("a worker's WorkerService and a nanny's NannyService", async () => {
    const info = await client.schedulerInfo();
    const worker = info.workers[0]!;
    const c = new GrpcClient(grpcTarget(worker.address), insecureChannel());
    const stream = c.makeServerStreamRequest('/skein.v1.WorkerService/GetData', (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0x08, 0x01]), new Metadata());
    const e = await new Promise<ServiceError>((resolve) => {
      stream.on('error', resolve);
      stream.on('data', () => undefined);
    });
    c.close();
    expect(e.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(e.details).toContain('skein.v1.GetDataRequest field 1: wire type 0');
    // RestartRequest.timeout_ms (2, a double) as a varint.
    const n = await rawUnary(worker.nannyAddress, '/skein.v1.NannyService/Restart', Buffer.from([0x10, 0x01]));
    expect(n?.code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(n?.details).toContain('skein.v1.RestartRequest field 2: wire type 0 (varint), the schema says 1 (64-bit)');
    expect((await client.schedulerInfo()).workers.map((w) => w.address)).toContain(worker.address);
  });
});

describe('skein scheduler flags', () => {
  const cleanupProcs: Array<ReturnType<typeof startProcess>> = [];
  it('--max-message-size, --max-key-length and --max-keys-per-update set the limits; the Welcome tells clients the limits', async () => {
    const p = startProcess([SKEIN_BIN, 'scheduler', '--host', '127.0.0.1', '--port', '0', '--no-dashboard', '--ready-json', '--max-message-size', '1MiB', '--max-key-length', '60', '--max-keys-per-update', '5']);
    try {
      const ready = await readyOf(p);
      const worker = startProcess([SKEIN_BIN, 'worker', ready.address, '--host', '127.0.0.1', '--no-nanny', '--ready-json']);
      cleanupProcs.push(worker);
      await readyOf(worker);
      const c = await Client.connect(ready.address);
      try {
        // A map is split to stay within the limit (the Welcome says it); a delayed graph cannot be.
        expect(await c.gather(c.map((x: number) => x * 2, [1, 2, 3, 4, 5, 6, 7]))).toEqual([2, 4, 6, 8, 10, 12, 14]);
        const inc = delayed((x: number) => x + 1);
        let d = inc(0);
        for (let i = 0; i < 6; i++) d = inc(d);
        await expect((c.compute(d) as Future<unknown>).result()).rejects.toThrow(/has 7 tasks and 1 wanted keys, more than the scheduler's limit of 5 keys per update/);
        await expect(c.submitWith({ key: 'k'.repeat(61) }, (x: number) => x, 1).result()).rejects.toThrow(/over the scheduler's limit of 60/);
        await expect(c.submit((s: string) => s.length, 'z'.repeat(1_100_000)).result()).rejects.toThrow(/accepts in one message \(1048576 bytes\)/);
      } finally {
        await c.close();
      }
    } finally {
      for (const q of [...cleanupProcs.splice(0), p]) {
        q.kill('SIGTERM');
        await q.exited;
      }
    }
    const bad = startProcess([SKEIN_BIN, 'scheduler', '--port', '0', '--no-dashboard', '--max-message-size', 'lots']);
    expect(await bad.exited).toBe(1);
    expect(bad.stderr.join('\n')).toContain('Bad scheduler maxMessageBytes "lots"');
  });
});

/** Raw bytes to a method, for messages no typed stub would write. */
function rawUnary(address: string, path: string, bytes: Buffer): Promise<ServiceError | null> {
  const c = new GrpcClient(grpcTarget(address), insecureChannel());
  return new Promise((resolve) => {
    c.makeUnaryRequest(path, (b: Buffer) => b, (b: Buffer) => b, bytes, new Metadata(), { deadline: Date.now() + 10_000 }, (err) => {
      c.close();
      resolve(err);
    });
  });
}

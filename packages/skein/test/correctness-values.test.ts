/**
 * Issue 11, items 8-12 and 17: how values, arguments, errors and addresses cross the wire, on a
 * real LocalCluster (worker processes), through the TypeScript client and through a raw gRPC
 * session as a client in another language speaks it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, TaskError } from '@skein/client';
import { Encoding, SchedulerServiceClient, TaskSpec, type ClientSessionResponse, type ClientUpdate } from '@skein/protocol';
import { CHANNEL_OPTIONS, InvalidArgumentError, PROTOCOL_VERSION, decodeValue, encodeValue, grpcTarget, inlineFunction, insecureChannel } from '@skein/common';
import { LocalCluster } from '../src/index.js';

type Cyclic = { n: number; self?: Cyclic; f?: unknown; list?: unknown[] };

describe('values, arguments, errors and addresses on a LocalCluster', () => {
  let cluster: LocalCluster;
  let client: Client;
  let workers: string[];

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 1, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
    workers = (await client.schedulerInfo()).workers.map((w) => w.address).sort();
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  // ------------------------------------------------------------------ 8. cyclic arguments

  it('8: submits and scatters cyclic arguments; the task sees the cycle and returns it', async () => {
    const a: Cyclic = { n: 1 };
    a.self = a;
    const sees = await client.submit((x: Cyclic) => x.self === x && x.n, a).result();
    expect(sees).toBe(1);
    const back = (await client.submit((x: Cyclic) => x, a).result()) as Cyclic;
    expect(back.self).toBe(back);
    const scattered = client.scatter(a);
    const s = (await scattered.result()) as Cyclic;
    expect(s.n).toBe(1);
    expect(s.self).toBe(s);
  });

  it('8: futures inside a cyclic structure resolve, and gather keeps the cycle', async () => {
    const f = client.submit(() => 41);
    const s: Cyclic = { n: 0, f, list: [] };
    s.self = s;
    s.list!.push(s, f);
    const out = await client
      .submit((o: Cyclic) => [o.f, o.self === o, o.list![0] === o, o.list![1]], s)
      .result();
    expect(out).toEqual([41, true, true, 41]);
    const g = (await client.gather(s)) as Cyclic;
    expect(g.f).toBe(41);
    expect(g.self).toBe(g);
    expect(g.list![0]).toBe(g);
  });

  // ------------------------------------------------------------------ 9. data shaped like markers

  it('9: data shaped like a reference or a quote is passed as data, and a future inside still resolves', async () => {
    const ref = { __skein_ref__: 'abc' };
    expect(await client.submit((x: unknown) => x, ref).result()).toEqual(ref);
    expect(await client.submitWith({ encoding: 'json' }, (x: unknown) => x, [ref]).result()).toEqual([ref]);
    expect(await client.scatter(ref).result()).toEqual(ref);
    const quote = { __skein_quote__: { __skein_ref__: 'abc' } };
    expect(await client.submit((x: unknown) => x, quote).result()).toEqual(quote);
    const f = client.submit(() => 41);
    const withFuture = { __skein_quote__: { x: f } };
    expect(await client.submit((x: unknown) => x, withFuture).result()).toEqual({ __skein_quote__: { x: 41 } });
    expect(await client.submit((x: unknown) => x, { __skein_ref__: f }).result()).toEqual({ __skein_ref__: 41 });
    // client.run's arguments are data too.
    expect(Object.values(await client.run((x: unknown) => x, ref))).toEqual([ref, ref]);
  });

  // ------------------------------------------------------------------ 10. bytes keep their type

  it('10: a Uint8Array stays a Uint8Array and a Buffer a Buffer: arguments, results, nested', async () => {
    const kind = (v: unknown) => [Object.getPrototypeOf(v)?.constructor?.name, Buffer.isBuffer(v)];
    expect(await client.submit(kind, new Uint8Array([1, 2, 3])).result()).toEqual(['Uint8Array', false]);
    expect(await client.submit(kind, Buffer.from('hi')).result()).toEqual(['Buffer', true]);
    const u = await client.submit(() => new Uint8Array([1, 2])).result();
    expect(Buffer.isBuffer(u)).toBe(false);
    expect(u).toBeInstanceOf(Uint8Array);
    expect([u.byteOffset, u.buffer.byteLength, ...u.slice()]).toEqual([0, 2, 1, 2]);
    const b = await client.submit(() => Buffer.from([3])).result();
    expect(Buffer.isBuffer(b)).toBe(true);
    const nested = await client.submit(() => ({ u: new Uint8Array(1), b: Buffer.alloc(1) })).result();
    expect(Buffer.isBuffer(nested.u)).toBe(false);
    expect(Buffer.isBuffer(nested.b)).toBe(true);
  });

  it('10: a large Uint8Array moved worker to worker (bulk path) and to the client is a Uint8Array whose slice copies', async () => {
    const big = client.submitWith({ workers: [workers[0]!], pure: false }, () => new Uint8Array(4 << 20).fill(1));
    const seen = client.submitWith(
      { workers: [workers[1]!] },
      (x: Uint8Array) => {
        const s = x.slice(0, 1);
        s[0] = 9;
        return [Object.getPrototypeOf(x).constructor.name, Buffer.isBuffer(x), x[0], x.byteLength];
      },
      big,
    );
    expect(await seen.result()).toEqual(['Uint8Array', false, 1, 4 << 20]);
    const v = await big.result();
    expect(Buffer.isBuffer(v)).toBe(false);
    expect(v).toBeInstanceOf(Uint8Array);
    expect(v.byteLength).toBe(4 << 20);
    const bigBuffer = client.submitWith({ workers: [workers[0]!], pure: false }, () => Buffer.alloc(2 << 20, 2));
    const onOther = client.submitWith({ workers: [workers[1]!] }, (x: Buffer) => [Buffer.isBuffer(x), x[0]], bigBuffer);
    expect(await onOther.result()).toEqual([true, 2]);
  });

  // ------------------------------------------------------------------ 11. error class names

  it('11: an Error subclass without its own name is reported by its class name', async () => {
    const f = client.submit(() => {
      class ParseFailure extends Error {}
      throw new ParseFailure('line 3: unexpected token');
    });
    const err = await f.result().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskError);
    expect((err as TaskError).remoteType).toBe('ParseFailure');
    expect((err as TaskError).message).toContain('line 3: unexpected token');
    const g = client.submit(() => {
      class Named extends Error {
        override name = 'Custom';
      }
      throw new Named('x');
    });
    expect(((await g.result().catch((e: unknown) => e)) as TaskError).remoteType).toBe('Custom');
  });

  // ------------------------------------------------------------------ 12. malformed addresses

  it('12: a malformed address is refused at once with the reason, not after the connect timeout', async () => {
    const hostPort = cluster.schedulerAddress.replace('tcp://', '');
    const t0 = Date.now();
    const err = await Client.connect(`${hostPort}:`, { connectTimeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(Date.now() - t0).toBeLessThan(1_000);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(/more than one ":"/);
    // The well-formed address still connects.
    const ok = await Client.connect(hostPort);
    await ok.close();
  });

  // ------------------------------------------------------------------ 17. JSON results

  it('17: a client asking for JSON gets JSON or an error naming the value, never V8', async () => {
    const nan = await client
      .submitWith({ encoding: 'json' }, () => [{ x: 1, y: NaN }])
      .result()
      .catch((e: unknown) => e);
    expect(nan).toBeInstanceOf(TaskError);
    expect((nan as Error).message).toMatch(/is not JSON-representable: NaN at \[0\]\.y\. .*ask for ENCODING_V8/);
    const undef = await client
      .submitWith({ encoding: 'json' }, () => ({ a: undefined }))
      .result()
      .catch((e: unknown) => e);
    expect((undef as Error).message).toContain('undefined at a');
    const bytes = await client
      .submitWith({ encoding: 'json' }, () => Buffer.from('x'))
      .result()
      .catch((e: unknown) => e);
    expect((bytes as Error).message).toContain('a Buffer at the top level');
    expect(await client.submitWith({ encoding: 'json' }, () => ({ a: [1, 'x', null] })).result()).toEqual({ a: [1, 'x', null] });
    // V8, the default, carries them.
    expect(await client.submit(() => [{ y: NaN }]).result()).toEqual([{ y: NaN }]);
    // client.run asks for its encoding too.
    const run = await client.runWith({ encoding: 'json' }, () => NaN).catch((e: unknown) => e);
    expect((run as Error).message).toContain('NaN at the top level');
    const runV8 = await client.run(() => NaN);
    expect(Object.values(runV8)).toEqual([NaN, NaN]);
  });

  it('17: over the raw protocol, JSON asked for (or unspecified with JSON arguments) gets JSON or an erred key, RAW gets bytes', async () => {
    const grpc = new SchedulerServiceClient(grpcTarget(cluster.schedulerAddress), insecureChannel(), CHANNEL_OPTIONS);
    const call = grpc.clientSession();
    const updates: ClientUpdate[] = [];
    call.on('data', (r: ClientSessionResponse) => updates.push(...r.updates));
    call.on('error', () => undefined);
    try {
      call.write({ messages: [{ kind: { $case: 'hello', value: { protocolVersion: PROTOCOL_VERSION, clientId: 'raw-json-client', batches: false } } }] });
      const nanFn = inlineFunction(() => ({ y: NaN }));
      const plainFn = inlineFunction((x: number) => ({ a: x }));
      const bytesFn = inlineFunction(() => Buffer.from('ab'));
      const spec = (key: string, fn: { hash: string }, args: unknown[], resultEncoding: number) =>
        TaskSpec.create({ key, function: { kind: { $case: 'inlineHash', value: fn.hash } }, args: encodeValue(args, 'json'), resultEncoding });
      const tasks = [
        spec('nan-unspecified', nanFn, [], Encoding.ENCODING_UNSPECIFIED),
        spec('nan-json', nanFn, [], Encoding.ENCODING_JSON),
        spec('plain-unspecified', plainFn, [5], Encoding.ENCODING_UNSPECIFIED),
        spec('bytes-raw', bytesFn, [], Encoding.ENCODING_RAW),
        spec('bytes-unspecified', bytesFn, [], Encoding.ENCODING_UNSPECIFIED),
        spec('bytes-json', bytesFn, [], Encoding.ENCODING_JSON),
        spec('plain-raw', plainFn, [1], Encoding.ENCODING_RAW),
      ];
      call.write({
        messages: [
          {
            kind: {
              $case: 'updateGraph',
              value: { tasks, wantedKeys: tasks.map((t) => t.key), functions: [nanFn, plainFn, bytesFn], broadcastKeys: [], stimulusId: 'raw-1', batches: [] },
            },
          },
        ],
      });
      const outcome = (key: string) => {
        for (const u of updates) {
          if (u.kind?.$case === 'inMemory' && u.kind.value.key === key) return { value: u.kind.value.value };
          if (u.kind?.$case === 'erred' && u.kind.value.key === key) return { error: u.kind.value.error?.message ?? '' };
        }
        return undefined;
      };
      const deadline = Date.now() + 20_000;
      while (!tasks.every((t) => outcome(t.key)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(outcome('nan-unspecified')?.error).toMatch(/result of task nan-unspecified is not JSON-representable: NaN at y/);
      expect(outcome('nan-json')?.error).toMatch(/result of task nan-json is not JSON-representable: NaN at y/);
      const plain = outcome('plain-unspecified')?.value;
      expect(plain?.encoding).toBe(Encoding.ENCODING_JSON);
      expect(JSON.parse(Buffer.from(plain!.data).toString('utf8'))).toEqual({ a: 5 });
      const raw = outcome('bytes-raw')?.value;
      expect(raw?.encoding).toBe(Encoding.ENCODING_RAW);
      expect(Buffer.from(raw!.data).toString()).toBe('ab');
      expect(outcome('plain-raw')?.error).toMatch(/result of task plain-raw is not bytes/);
      // Unspecified after JSON arguments: bytes come as RAW, which every language reads; asked JSON, they are an error.
      expect(outcome('bytes-unspecified')?.value?.encoding).toBe(Encoding.ENCODING_RAW);
      expect(outcome('bytes-json')?.error).toMatch(/not JSON-representable: a Buffer at the top level/);
      expect(decodeValue(plain)).toEqual({ a: 5 });
    } finally {
      call.end();
      grpc.close();
    }
  });
});

/**
 * Level 2: the real scheduler, two workers and a hand-written gRPC client session, speaking the
 * protocol directly as a client in another language would.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { SchedulerServiceClient, type ClientSessionResponse, type ClientUpdate, type KeysInMemory, TaskSpec, TaskBatch } from '@skein/protocol';
import { CHANNEL_OPTIONS, PROTOCOL_VERSION, buildValueColumn, decodeValue, encodeValue, grpcTarget, inlineFunction, insecureChannel, makeRef, readStringTable, readValueColumn, splitByCounts } from '@skein/common';
import { Worker, PeerClients, fetchData } from '@skein/core-worker';
import { Scheduler } from '@skein/core-scheduler';

// The worker package's test module of registered functions (add, bytes, ...), shared rather than copied.
const TASKS = fileURLToPath(new URL('../../core-worker/test/fixtures/tasks.mjs', import.meta.url));

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => undefined);
});

function spec(key: string, fn: { registered: string } | { inline: string }, args: unknown[], over: Partial<TaskSpec> = {}): TaskSpec {
  // TaskSpec.create fills every field left out with its protobuf default.
  return TaskSpec.create({
    key,
    function: { kind: 'registered' in fn ? { $case: 'registered', value: fn.registered } : { $case: 'inlineHash', value: fn.inline } },
    args: encodeValue(args, 'json'),
    ...over,
  });
}

async function cluster(validate = true, batches = false) {
  const scheduler = await Scheduler.start({ host: '127.0.0.1', port: 0, validate });
  cleanup.push(() => scheduler.close());
  const workers = await Promise.all(
    [1, 2].map((i) => Worker.start({ scheduler: scheduler.address, name: `w${i}`, modules: [TASKS], nthreads: 2, validate })),
  );
  for (const w of workers) cleanup.push(() => w.close());
  const client = new SchedulerServiceClient(grpcTarget(scheduler.address), insecureChannel(), CHANNEL_OPTIONS);
  const call = client.clientSession();
  cleanup.push(async () => {
    call.end();
    client.close();
  });
  const updates: ClientUpdate[] = [];
  let wake: () => void = () => undefined;
  call.on('data', (r: ClientSessionResponse) => {
    updates.push(...r.updates);
    wake();
  });
  const errors: Error[] = [];
  call.on('error', (e: Error) => {
    errors.push(e);
    wake();
  });
  call.write({ messages: [{ kind: { $case: 'hello', value: { protocolVersion: PROTOCOL_VERSION, clientId: 'test-client', batches } } }] });
  const waitFor = async <T>(pred: () => T | undefined, ms = 20_000): Promise<T> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = pred();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out; updates: ${JSON.stringify(updates.map((u) => u.kind?.$case))}`);
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 50);
      });
    }
  };
  await waitFor(() => updates.find((u) => u.kind?.$case === 'welcome'));
  const result = (key: string) =>
    waitFor(() => {
      for (const u of updates) {
        if (u.kind?.$case === 'inMemory' && u.kind.value.key === key) return u.kind.value;
        if (u.kind?.$case === 'erred' && u.kind.value.key === key) throw new Error(`${key} erred: ${u.kind.value.error?.message}`);
      }
      return undefined;
    });
  return { scheduler, workers, call, updates, errors, waitFor, result };
}

/** Every key of the KeysInMemory updates received so far, with its decoded value and holders. */
function batchedResults(updates: ClientUpdate[]): Map<string, { value: unknown; workers: string[]; typeName: string }> {
  const out = new Map<string, { value: unknown; workers: string[]; typeName: string }>();
  for (const u of updates) {
    if (u.kind?.$case !== 'keysInMemory') continue;
    const m: KeysInMemory = u.kind.value;
    const values = readValueColumn(m.values, m.keys.length, 'test');
    const holders = splitByCounts(m.workerCounts, m.workerIndex, m.keys.length, 'test');
    const types = readStringTable(m.typeNames, m.typeNameIndex, m.keys.length, 'test');
    m.keys.forEach((k, i) => out.set(k, { value: values[i] ? decodeValue(values[i]!) : undefined, workers: holders[i]!.map((j) => m.workers[j]!), typeName: types[i]! }));
  }
  return out;
}

describe('column batches (protocol 1.1)', () => {
  it('runs a TaskBatch, with and without dependencies, and reports the results as KeysInMemory', async () => {
    const { call, updates, waitFor, workers } = await cluster(true, true);
    const workerAddresses = workers.map((w) => w.address);
    const inc = inlineFunction((x: number) => x + 1);
    const n = 300;
    const keys = Array.from({ length: n }, (_, i) => `inc-${i}`);
    const first = TaskBatch.create({
      function: { kind: { $case: 'inlineHash', value: inc.hash } },
      keys,
      args: buildValueColumn(keys.map((_, i) => encodeValue([i], 'json'))),
    });
    // Each task of the second batch adds two results of the first (dependencies by counts).
    const sums = Array.from({ length: n / 2 }, (_, i) => `add-${i}`);
    const second = TaskBatch.create({
      function: { kind: { $case: 'registered', value: 'add' } },
      keys: sums,
      args: buildValueColumn(sums.map((_, i) => encodeValue([makeRef(keys[2 * i]!), makeRef(keys[2 * i + 1]!)], 'json'))),
      dependencyCounts: sums.map(() => 2),
      dependencies: sums.flatMap((_, i) => [keys[2 * i]!, keys[2 * i + 1]!]),
    });
    call.write({
      messages: [
        {
          kind: {
            $case: 'updateGraph',
            value: { tasks: [], batches: [second, first], wantedKeys: [...keys, ...sums], functions: [inc], broadcastKeys: [], stimulusId: 'batch-1' },
          },
        },
      ],
    });
    const got = await waitFor(() => {
      const r = batchedResults(updates);
      return r.size === n + n / 2 ? r : undefined;
    });
    for (let i = 0; i < n; i++) expect(got.get(keys[i]!)!.value).toBe(i + 1);
    for (let i = 0; i < n / 2; i++) expect(got.get(sums[i]!)!.value).toBe(2 * i + 1 + 2 * i + 2);
    expect(got.get(keys[0]!)!.workers).toHaveLength(1);
    expect(workerAddresses).toContain(got.get(keys[0]!)!.workers[0]);
    expect(got.get(keys[0]!)!.typeName).toBe('number');
    // Nothing came as a per-key KeyInMemory to this client.
    expect(updates.some((u) => u.kind?.$case === 'inMemory')).toBe(false);
  });

  it('refuses a TaskBatch whose columns disagree, naming the field', async () => {
    const { call, errors, waitFor } = await cluster(true, true);
    const bad = TaskBatch.create({
      function: { kind: { $case: 'registered', value: 'add' } },
      keys: ['a-1', 'a-2', 'a-3'],
      args: buildValueColumn([encodeValue([1, 2], 'json'), encodeValue([3, 4], 'json')]),
    });
    call.write({ messages: [{ kind: { $case: 'updateGraph', value: { tasks: [], batches: [bad], wantedKeys: ['a-1'], functions: [], broadcastKeys: [], stimulusId: 'bad' } } }] });
    const err = await waitFor(() => errors[0]);
    expect(err.message).toMatch(/INVALID_ARGUMENT|3 INVALID/);
    expect(err.message).toMatch(/TaskBatch of 3 tasks \(first key "a-1"\), args: the value column has 2 encodings and 2 lengths for 3 keys/);
  });
});

describe('scheduler + 2 workers + client session', () => {
  it('computes a graph across workers, with inline and registered functions and a large value', async () => {
    const { workers, call, result } = await cluster();
    await new Promise((r) => setTimeout(r, 100));
    const [w1, w2] = workers as [Worker, Worker];
    const double = inlineFunction((x: number) => x * 2);
    const length = inlineFunction((b: Uint8Array, n: number) => b.length + n);
    call.write({
      messages: [
        {
          kind: {
            $case: 'updateGraph',
            value: {
              batches: [],
              tasks: [
                spec('add-1', { registered: 'add' }, [1, 2], { workers: [w1.address] }),
                spec('double-1', { inline: double.hash }, [makeRef('add-1')], { dependencies: ['add-1'], workers: [w2.address] }),
                spec('bytes-1', { registered: 'bytes' }, [6 * 1024 * 1024], { workers: [w1.address] }),
                spec('length-1', { inline: length.hash }, [makeRef('bytes-1'), makeRef('double-1')], {
                  dependencies: ['bytes-1', 'double-1'],
                  workers: [w2.address],
                }),
              ],
              wantedKeys: ['double-1', 'length-1', 'bytes-1'],
              functions: [double, length],
              broadcastKeys: [],
              stimulusId: 'graph-1',
            },
          },
        },
      ],
    });
    const d = await result('double-1');
    expect(decodeValue(d.value)).toBe(6);
    const l = await result('length-1');
    expect(decodeValue(l.value)).toBe(6 * 1024 * 1024 + 6);
    const b = await result('bytes-1');
    expect(b.value).toBeUndefined();
    expect(b.workers).toContain(w1.address);
    // the client streams the large value from a worker that holds it
    const peers = new PeerClients();
    const got = await fetchData(peers.get(b.workers[0]!), b.workers[0]!, ['bytes-1'], 'client');
    peers.close();
    expect(got.data.get('bytes-1')!.data.length).toBe(6 * 1024 * 1024);
    for (const w of workers) w.workerState.validateState();
  });

  it('runs many no-op tasks through the whole system', async () => {
    const { call, updates, waitFor } = await cluster(false);
    const noop = inlineFunction((x: number) => x);
    const n = 20_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i += 2_000) {
      const tasks: TaskSpec[] = [];
      for (let j = i; j < i + 2_000; j++) tasks.push(spec(`noop-${j}`, { inline: noop.hash }, [j]));
      call.write({
        messages: [
          {
            kind: {
              $case: 'updateGraph',
              value: { tasks, batches: [], wantedKeys: tasks.map((t) => t.key), functions: i === 0 ? [noop] : [], broadcastKeys: [], stimulusId: `g${i}` },
            },
          },
        ],
      });
    }
    const seen = new Set<string>();
    let idx = 0;
    await waitFor(() => {
      for (; idx < updates.length; idx++) {
        const u = updates[idx]!.kind;
        if (u?.$case === 'inMemory') {
          expect(decodeValue(u.value.value)).toBe(Number(u.value.key.slice('noop-'.length)));
          seen.add(u.value.key);
        }
      }
      return seen.size >= n ? true : undefined;
    }, 120_000);
    const rate = n / ((performance.now() - t0) / 1000);
    console.log(`whole system (scheduler, 2 workers x 2 threads, client in one process): ${Math.round(rate)} tasks/s`);
    expect(seen.size).toBe(n);
  });

  it('retires a worker gracefully', async () => {
    const { workers, scheduler } = await cluster();
    const [w1] = workers as [Worker, Worker];
    await w1.retire(10_000);
    expect(w1.status).toBe('closed');
    expect((await w1.closed).error).toBeUndefined();
    void scheduler;
  });
});

// End-to-end regressions for what the state machine simulation (simulation.test.ts) found, on a
// real LocalCluster. A worker session opened by hand stands in for a worker that is slow or gone
// at the right moment (it registers, then does nothing it is asked), so each race is exact.
import { afterEach, describe, expect, it } from 'vitest';
import { Metadata, type ClientDuplexStream } from '@grpc/grpc-js';
import { Client } from '@skein/client';
import { CHANNEL_OPTIONS, PROTOCOL_VERSION, grpcTarget, insecureChannel } from '@skein/common';
import { SchedulerServiceClient, WorkerServiceClient, type WorkerSessionRequest, type WorkerSessionResponse } from '@skein/protocol';
import { LocalCluster } from '../src/index.js';
import { until, within } from './helpers.js';

const open: Array<{ close(): Promise<void> | void }> = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

async function start(nWorkers: number): Promise<{ cluster: LocalCluster; client: Client }> {
  const cluster = await LocalCluster.start({ nWorkers, processes: false });
  open.push(cluster);
  const client = await Client.connect(cluster);
  open.push(client);
  return { cluster, client };
}

/** A worker registered by hand that answers nothing it is asked; `leave()` ends its session. */
async function idleWorker(schedulerAddress: string, address: string) {
  const rpc = new SchedulerServiceClient(grpcTarget(schedulerAddress), insecureChannel(), CHANNEL_OPTIONS);
  const session: ClientDuplexStream<WorkerSessionRequest, WorkerSessionResponse> = rpc.workerSession();
  session.on('error', () => undefined);
  const welcomed = new Promise<void>((resolve) => session.once('data', () => resolve()));
  session.write({
    messages: [
      {
        kind: {
          $case: 'hello',
          value: { protocolVersion: PROTOCOL_VERSION, address, name: 'idle', nthreads: 1, memoryLimit: 0, resources: new Map(), held: [], registeredFunctions: [], pid: process.pid, nannyAddress: '', batches: true, versions: undefined },
        },
      },
    ],
  });
  await welcomed;
  const handle = {
    send: (messages: WorkerSessionRequest['messages']) => session.write({ messages }),
    /** Ends the session after what was sent (the scheduler reads it all first). */
    end: () => session.end(),
    leave: () => {
      session.cancel();
      rpc.close();
    },
    close: () => handle.leave(),
  };
  open.push(handle);
  return handle;
}

function keysOn(worker: string): Promise<string[]> {
  const c = new WorkerServiceClient(grpcTarget(worker), insecureChannel(), CHANNEL_OPTIONS);
  return new Promise((resolve, reject) =>
    c.getStatus({}, new Metadata(), { deadline: Date.now() + 5_000 }, (err, res) => {
      c.close();
      if (err) reject(err);
      else resolve(res!.keys);
    }),
  );
}

const big = (n: number) => 'x'.repeat(n); // past the inline threshold: the result stays on its worker

describe('retiring a worker whose results must move first', () => {
  it('asks another worker for the copies when the worker asked first leaves before it fetched them', async () => {
    const { cluster, client } = await start(1);
    const [a] = (await client.schedulerInfo()).workers.map((w) => w.address);
    const x = client.submitWith({ pure: false }, big, 200_000);
    await x.result();
    // The only other worker, so the one the copy of x is asked of: it never fetches it.
    const idle = await idleWorker(cluster.schedulerAddress, 'tcp://127.0.0.1:9');
    const retired = client.retireWorkers({ workers: [a!] });
    await until(() => cluster.scheduler.state.workers.get(a!)?.pendingReplicas?.size === 1, 10_000, 'the retirement to wait for the copy of x');
    // A real worker joins, then the idle one leaves: the copy must be asked of the real one.
    await cluster.scale(2);
    await until(async () => (await client.schedulerInfo()).workers.length === 3, 20_000, 'a second real worker');
    idle.leave();
    expect(await within(retired, 10_000, 'still retiring' as const)).toEqual([a]);
    const len = client.submit((s: string) => s.length, x);
    expect(await len.result()).toBe(200_000);
  });

  it('ends the retirement when the result it waits to copy is released meanwhile', async () => {
    const { cluster, client } = await start(1);
    const [a] = (await client.schedulerInfo()).workers.map((w) => w.address);
    const x = client.submitWith({ pure: false }, big, 200_000);
    await x.result();
    await idleWorker(cluster.schedulerAddress, 'tcp://127.0.0.1:9');
    const retired = client.retireWorkers({ workers: [a!] });
    await until(() => cluster.scheduler.state.workers.get(a!)?.pendingReplicas?.size === 1, 10_000, 'the retirement to wait for the copy of x');
    x.release(); // nobody needs x now: nothing is left to copy
    expect(await within(retired, 10_000, 'still retiring' as const)).toEqual([a]);
    await until(async () => !(await client.schedulerInfo()).workers.some((w) => w.address === a), 10_000, `${a} to leave`);
  });
});

describe('a copy reported missing by a worker that could not fetch it', () => {
  it('is dropped by its holder too, so no worker keeps a copy the scheduler does not count', async () => {
    const { cluster, client } = await start(2);
    const [a] = (await client.schedulerInfo()).workers.map((w) => w.address);
    const x = client.scatter(big(200_000), { broadcast: true, hash: false }); // a copy on each worker
    expect((await x.result()).length).toBe(200_000);
    await until(() => cluster.scheduler.state.tasks.get(x.key)?.whoHas.length === 2, 10_000, 'x on both workers');
    const fake = 'tcp://127.0.0.1:9';
    const reporter = await idleWorker(cluster.schedulerAddress, fake);
    reporter.send([{ kind: { $case: 'missingData', value: { key: x.key, worker: a!, stimulusId: 'fetch-broke' } } }]);
    reporter.end(); // once the scheduler has removed the reporter, it has read the report
    await until(() => !cluster.scheduler.state.workers.has(fake), 5_000, 'the reporter to be removed');
    // Either the scheduler still counts a's copy, or a has none: never a copy nobody would free.
    await until(
      async () => (cluster.scheduler.state.tasks.get(x.key)?.whoHas.some((w) => w.address === a) ?? false) || !(await keysOn(a!)).includes(x.key),
      5_000,
      `${a} to drop the copy of ${x.key} the scheduler no longer counts`,
    );
    expect(await client.submit((s: string) => s.length, x).result()).toBe(200_000);
  });
});

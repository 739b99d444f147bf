import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, CommClosedError, TaskError } from '@skein/client';
import { LocalCluster } from '../src/index.js';

/** Polls `check` until it holds, failing after `ms`. */
async function until(check: () => boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

// issue 18 (latency): a LocalCluster's scheduler runs in the client's process, so
// Client.connect(cluster) holds its session in-process (no socket, no encoding), as Dask's
// inproc:// comm does for processes=False. Everything else behaves as over gRPC.
describe('in-process client session of a LocalCluster', () => {
  let cluster: LocalCluster;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 1, threadsPerWorker: 1 });
  });
  afterAll(async () => {
    await cluster?.close();
  });

  it('is what Client.connect(cluster) uses; inProcess: false and an address use gRPC; all see the same tasks', async () => {
    const local = await Client.connect(cluster);
    const remote = await Client.connect(cluster, { inProcess: false });
    const byAddress = await Client.connect(cluster.schedulerAddress);
    try {
      expect(local.inProcess).toBe(true);
      expect(remote.inProcess).toBe(false);
      expect(byAddress.inProcess).toBe(false);
      const xs = Array.from({ length: 500 }, (_, i) => i);
      const double = (x: number) => x * 2;
      expect(await local.gather(local.map(double, xs))).toEqual(xs.map((x) => x * 2));
      // The same pure key from a gRPC client: one task, its value as the in-process client saw it.
      const a = local.submit((x: number) => ({ x, pid: process.pid }), 7);
      const b = remote.submit((x: number) => ({ x, pid: process.pid }), 7);
      expect(b.key).toBe(a.key);
      expect(await b.result()).toEqual(await a.result());
      const err = local.submit(() => {
        throw new RangeError('boom');
      });
      await expect(err.result()).rejects.toBeInstanceOf(TaskError);
      expect(cluster.scheduler.clientCount).toBe(3);
    } finally {
      await Promise.all([local.close(), remote.close(), byAddress.close()]);
    }
    // Closing ends the in-process session as it ends a gRPC one: the scheduler forgets the clients.
    await until(() => cluster.scheduler.clientCount === 0);
  });

  it('is refused as over gRPC: a second client with the same id', async () => {
    const first = await Client.connect(cluster, { clientId: 'same-id' });
    try {
      const over = await Client.connect(cluster, { clientId: 'same-id', inProcess: false }).then(
        () => 'connected',
        (e: Error) => e.message,
      );
      const local = await Client.connect(cluster, { clientId: 'same-id' }).then(
        () => 'connected',
        (e: Error) => e.message,
      );
      expect(over).toMatch(/already connected/);
      expect(local).toMatch(/already connected/);
    } finally {
      await first.close();
    }
  });

  it('fails pending futures with CommClosedError when the scheduler closes', async () => {
    const own = await LocalCluster.start({ nWorkers: 1, threadsPerWorker: 1 });
    const client = await Client.connect(own);
    try {
      expect(client.inProcess).toBe(true);
      const slow = client.submit(() => new Promise((r) => setTimeout(r, 30_000)));
      await until(() => own.scheduler.info().tasksByState.get('processing') === 1);
      await own.scheduler.close();
      await expect(slow.result()).rejects.toBeInstanceOf(CommClosedError);
    } finally {
      await client.close();
      await own.close();
    }
  });
});

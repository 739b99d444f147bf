import { afterEach, describe, expect, it } from 'vitest';
import { Client } from '@skein/client';
import { Scheduler } from '@skein/core-scheduler';
import { Worker } from '@skein/core-worker';
import { CommClosedError, InvalidArgumentError, Security } from '@skein/common';

// The security foundation end to end in one process: a scheduler, a worker and a client over
// mutual TLS (Security.temporary()), and what happens without the cluster's credentials.
describe('TLS on the scheduler, worker and client links', () => {
  const closers: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    closers.length = 0;
  });

  async function tlsCluster(security: Security) {
    const scheduler = await Scheduler.start({ host: '127.0.0.1', port: 0, dashboardAddress: null, security });
    closers.push(() => scheduler.close());
    const workers = await Promise.all([1, 2].map((i) => Worker.start({ scheduler: scheduler.address, name: `w${i}`, nthreads: 1, security })));
    for (const w of workers) closers.push(() => w.close());
    return { scheduler, workers };
  }

  it('computes a map and moves data between workers over TLS; addresses are tls://', async () => {
    const security = Security.temporary();
    const { scheduler, workers } = await tlsCluster(security);
    expect(scheduler.address).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    const client = await Client.connect(scheduler.address, { security });
    closers.push(() => client.close());
    const xs = Array.from({ length: 200 }, (_, i) => i);
    expect(await client.gather(client.map((x: number) => x * x, xs))).toEqual(xs.map((x) => x * x));
    // a dependency computed on one worker and used on the other, too big (> 64 KiB) to travel
    // inline with the scheduler's messages: a worker-to-worker fetch over TLS
    const a = client.submitWith({ workers: [workers[0]!.address] }, (n: number) => Array.from({ length: n }, (_, i) => i), 100_000);
    const total = client.submitWith({ workers: [workers[1]!.address] }, (v: number[]) => v.reduce((s, x) => s + x, 0), a);
    expect(await total.result()).toBe(4_999_950_000);
    // the second worker fetched it from the first (its own state machine went flight -> memory)
    const story = await client.story(a);
    expect(story.some((t) => t.where === workers[1]!.address && t.start === 'flight' && t.finish === 'memory')).toBe(true);
    const info = await client.schedulerInfo();
    expect(info.workers.map((w) => w.address).every((a) => a.startsWith('tls://'))).toBe(true);
  });

  it('a client without certificates cannot talk to a TLS scheduler', async () => {
    const { scheduler } = await tlsCluster(Security.temporary());
    const plain = scheduler.address.replace('tls://', 'tcp://');
    await expect(Client.connect(plain, { security: Security.insecure(), connectTimeoutMs: 2000 })).rejects.toBeInstanceOf(CommClosedError);
  });

  it('a client whose certificates come from another CA cannot talk to it either', async () => {
    const { scheduler } = await tlsCluster(Security.temporary());
    await expect(Client.connect(scheduler.address, { security: Security.temporary(), connectTimeoutMs: 2000 })).rejects.toBeInstanceOf(CommClosedError);
  });

  it('a tls:// address without TLS credentials is refused before dialing, saying what to pass', async () => {
    await expect(Client.connect('tls://127.0.0.1:1', { security: Security.insecure() })).rejects.toThrow(InvalidArgumentError);
    await expect(Client.connect('tls://127.0.0.1:1', { security: Security.insecure() })).rejects.toThrow(/--tls-ca-file/);
  });
});

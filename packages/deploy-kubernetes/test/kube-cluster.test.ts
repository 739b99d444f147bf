import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@skein/client';
import { deployerConformance, type DeployerUnderTest } from '@skein/cluster/testing';
import type { KubeEmulator } from '@skein/kube-emulator';
import { KubeCluster } from '../src/index.js';
import { burst, leftovers, options, startEmulator, until } from './helpers.js';

// Level 3 on the emulator: real scheduler and worker processes, one per pod, each on its own
// loopback IP; the real client-node talks to the emulated API server.
let emu: KubeEmulator;

beforeAll(async () => {
  emu = await startEmulator();
});

afterAll(async () => {
  await emu?.close();
});

describe('KubeCluster on the emulator', () => {
  it('starts a scheduler pod, a service and one pod per worker, runs a map, scales to 3, and close() leaves nothing', async () => {
    const cluster = await KubeCluster.start(options(emu, { nWorkers: 1 }));
    try {
      expect(cluster.connection).toBe('direct');
      expect(cluster.schedulerAddress).toMatch(/^tcp:\/\/127\.43\.\d+\.\d+:8786$/);
      await using client = await Client.connect(cluster);
      const xs = Array.from({ length: 30 }, (_, i) => i);
      expect(await client.gather(client.map((x: number) => x * 2, xs))).toEqual(xs.map((x) => x * 2));
      await cluster.scale(3);
      await cluster.waitForWorkers(3, { timeoutMs: 30_000 });
      const pods = emu.list('pods', 'default', `skein.dev/cluster=${cluster.name}`);
      const scheduler = pods.find((p) => p['metadata']['name'] === `${cluster.name}-scheduler`)!;
      const workers = pods.filter((p) => p['metadata']['labels']['skein.dev/component'] === 'worker');
      expect(workers.map((p) => p['metadata']['name']).sort()).toEqual([0, 1, 2].map((i) => `${cluster.name}-worker-${i}`));
      for (const w of workers) expect(w['metadata']['ownerReferences'][0]).toMatchObject({ kind: 'Pod', uid: scheduler['metadata']['uid'] });
      const info = await client.schedulerInfo();
      // Every worker advertises its own pod IP.
      expect(new Set(info.workers.map((w) => new URL(w.address.replace('tcp:', 'http:')).hostname)).size).toBe(3);
      expect(await client.gather(client.map((x: number) => x + 1, xs))).toEqual(xs.map((x) => x + 1));
      const logs = await cluster.getLogs();
      expect(Object.keys(logs).sort()).toEqual(['scheduler', ...workers.map((p) => p['metadata']['name'])].sort());
    } finally {
      await cluster.close();
    }
    expect(leftovers(emu, cluster)).toEqual([]);
  });
});

describe('KubeCluster: adapt', () => {
  it('grows under a burst and shrinks back, deleting exactly the pods of the workers the scheduler retired', async () => {
    const cluster = await KubeCluster.start(options(emu, { nWorkers: 1 }));
    try {
      await using client = await Client.connect(cluster);
      const adaptive = cluster.adapt({ minimum: 1, maximum: 3, intervalMs: 200, waitCount: 2, targetDurationMs: 300 });
      try {
        const fs = client.map(
          async (x: number) => {
            await new Promise((r) => setTimeout(r, 300));
            return x;
          },
          Array.from({ length: 40 }, (_, i) => i),
        );
        await until(async () => (await client.schedulerInfo()).workers.length === 3, 30_000, 'adapt to grow to 3');
        expect(await client.gather(fs)).toHaveLength(40);
        await until(() => cluster.workers.size === 1, 30_000, 'adapt to shrink to 1');
      } finally {
        await adaptive.stop();
      }
      const registered = (await client.schedulerInfo()).workers.map((w) => w.name).sort();
      const pods = emu.list('pods', 'default', `skein.dev/cluster=${cluster.name},skein.dev/component=worker`).filter((p) => !p['metadata']['deletionTimestamp']);
      expect(pods.map((p) => p['metadata']['name']).sort()).toEqual(registered);
      expect(registered).toEqual([...cluster.workers.keys()].sort());
    } finally {
      await cluster.close();
    }
    expect(leftovers(emu, cluster)).toEqual([]);
  });
});

const kube: DeployerUnderTest<KubeCluster> = {
  start: (nWorkers) => KubeCluster.start(options(emu, { nWorkers })),
  kill: (cluster, name) => {
    if (!emu.kubelet.kill(cluster.namespace, name)) throw new Error(`no process for pod ${name}`);
  },
  leftovers: (cluster) => leftovers(emu, cluster),
  burst,
  startBroken: () => KubeCluster.start(options(emu, { nWorkers: 0, workerOptions: { modules: ['/nonexistent/tasks.mjs'], nanny: false }, resourceTimeoutMs: 20_000 })),
  startNeverReady: (timeoutMs) => {
    const o = options(emu, { nWorkers: 0, workerStartTimeoutMs: timeoutMs });
    emu.unschedulable((pod) => (pod['metadata']['labels']?.['skein.dev/cluster'] === o.name && pod['metadata']['labels']?.['skein.dev/component'] === 'worker' ? '0/1 nodes are available: 1 Insufficient memory.' : undefined));
    return KubeCluster.start(o);
  },
  startTimeoutMs: 30_000,
};

describe('KubeCluster: deployer conformance', () => {
  for (const c of deployerConformance(kube)) it(c.name, c.run, c.timeoutMs);
});

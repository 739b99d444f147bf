// Against a real Kubernetes cluster: KUBECONFIG (or ~/.kube/config) must point at it and
// SKEIN_K8S_IMAGE name an image built from image/Dockerfile at this version that its nodes can
// pull. Optional: SKEIN_K8S_NAMESPACE (default: the context's). Opt-in only (see real/vitest.config.mts).
import { describe, expect, it } from 'vitest';
import { Client } from '@skein/client';
import { deployerConformance, type DeployerUnderTest } from '@skein/cluster/testing';
import * as k8s from '@kubernetes/client-node';
import { KubeCluster, LABEL_CLUSTER, type KubeClusterOptions } from '../src/index.js';

const image = process.env['SKEIN_K8S_IMAGE'];
if (!image) throw new Error('Set SKEIN_K8S_IMAGE to an image built from packages/deploy-kubernetes/image/Dockerfile (and KUBECONFIG to the cluster).');
let n = 0;
const options = (o: Partial<KubeClusterOptions> = {}): KubeClusterOptions => ({
  name: `skein-real-${process.pid}-${++n}`,
  image,
  ...(process.env['SKEIN_K8S_NAMESPACE'] ? { namespace: process.env['SKEIN_K8S_NAMESPACE'] } : {}),
  resourceTimeoutMs: 180_000,
  terminationGracePeriodSeconds: 5,
  ...o,
});

async function leftovers(cluster: KubeCluster): Promise<string[]> {
  const kc = cluster.options.kc;
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const sel = `${LABEL_CLUSTER}=${cluster.name}`;
  const pods = (await core.listNamespacedPod({ namespace: cluster.namespace, labelSelector: sel })).items.map((p) => `pod/${p.metadata?.name}`);
  const svcs = (await core.listNamespacedService({ namespace: cluster.namespace, labelSelector: sel })).items.map((s) => `service/${s.metadata?.name}`);
  return [...pods, ...svcs];
}

const real: DeployerUnderTest<KubeCluster> = {
  start: (nWorkers) => KubeCluster.start(options({ nWorkers })),
  kill: async (cluster, name) => {
    await cluster.options.kc.makeApiClient(k8s.CoreV1Api).deleteNamespacedPod({ name, namespace: cluster.namespace, gracePeriodSeconds: 0 });
  },
  leftovers,
  burst: async (cluster, tasks, taskMs) => {
    await using client = await Client.connect(cluster);
    await client.gather(client.map(async (x: number, ms: number) => (await new Promise((r) => setTimeout(r, ms)), x), Array.from({ length: tasks }, (_, i) => i), Array.from({ length: tasks }, () => taskMs)));
  },
  startTimeoutMs: 180_000,
};

describe('KubeCluster on a real cluster', () => {
  it('starts, runs a map, scales to 3 and closes leaving nothing', async () => {
    const cluster = await KubeCluster.start(options({ nWorkers: 1 }));
    try {
      await using client = await Client.connect(cluster);
      expect(await client.gather(client.map((x: number) => x + 1, [1, 2, 3]))).toEqual([2, 3, 4]);
      await cluster.scale(3);
      await cluster.waitForWorkers(3, { timeoutMs: 180_000 });
    } finally {
      await cluster.close();
    }
    expect(await leftovers(cluster)).toEqual([]);
  });
  for (const c of deployerConformance(real)) it(c.name, c.run, c.timeoutMs);
});

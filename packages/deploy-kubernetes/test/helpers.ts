import { fileURLToPath } from 'node:url';
import * as k8s from '@kubernetes/client-node';
import { Client } from '@skein/client';
import { KubeEmulator, type ImageSpec, type KubeEmulatorOptions } from '@skein/kube-emulator';
import { KubeCluster, LABEL_CLUSTER, type KubeClusterOptions } from '../src/index.js';

export const SKEIN_CLI = fileURLToPath(new URL('../../skein/dist/cli.js', import.meta.url));
export const IMAGE = 'skein:test';

/** An emulator whose `skein:*` image runs this checkout's `skein` command. */
export function startEmulator(images: Record<string, ImageSpec> = {}, more: KubeEmulatorOptions = {}): Promise<KubeEmulator> {
  return KubeEmulator.start({
    ...more,
    images: { 'skein:*': { entrypoint: [process.execPath, SKEIN_CLI], commands: { skein: [process.execPath, SKEIN_CLI] } }, ...images },
    env: { SKEIN_LOG_LEVEL: 'warn' },
    bookmarkIntervalMs: 1_000,
  });
}

let n = 0;
export function clusterName(): string {
  return `k${process.pid % 10_000}-${++n}`;
}

export function kubeconfig(emu: KubeEmulator, namespace = 'default'): k8s.KubeConfig {
  const kc = new k8s.KubeConfig();
  kc.loadFromString(emu.kubeconfig(namespace));
  return kc;
}

export function options(emu: KubeEmulator, overrides: Partial<KubeClusterOptions> = {}): KubeClusterOptions {
  return {
    name: clusterName(),
    image: IMAGE,
    kubeconfig: kubeconfig(emu),
    resourceTimeoutMs: 30_000,
    terminationGracePeriodSeconds: 2,
    ...overrides,
  };
}

/** Everything of a cluster still in the emulator (objects with its label, its processes). */
export function leftovers(emu: KubeEmulator, cluster: KubeCluster): string[] {
  const left: string[] = [];
  for (const r of ['pods', 'services', 'secrets', 'deployments']) {
    for (const o of emu.list(r, cluster.namespace, `${LABEL_CLUSTER}=${cluster.name}`)) left.push(`${r}/${o['metadata']['name']}`);
  }
  for (const rt of emu.kubelet.pods.values()) if (rt.name.startsWith(cluster.name)) left.push(`process of pod ${rt.name}`);
  return left;
}

export async function burst(cluster: KubeCluster, tasks: number, taskMs: number): Promise<void> {
  await using client = await Client.connect(cluster);
  const fs = client.map(
    async (x: number, ms: number) => {
      await new Promise((r) => setTimeout(r, ms));
      return x;
    },
    Array.from({ length: tasks }, (_, i) => i),
    Array.from({ length: tasks }, () => taskMs),
  );
  await client.gather(fs);
}

export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

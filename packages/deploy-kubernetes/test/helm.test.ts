import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k8s from '@kubernetes/client-node';
import { Client } from '@skein/client';
import type { KubeEmulator } from '@skein/kube-emulator';
import { HelmCluster, helmFullname } from '../src/index.js';
import { kubeconfig, startEmulator, until } from './helpers.js';
// @ts-expect-error: a plain .mjs tool script, without types
import { helmPath } from '../../../tools/helm.mjs';

const run = promisify(execFile);
const CHART = fileURLToPath(new URL('../../../charts/skein', import.meta.url));
let helm: string;
let emu: KubeEmulator;

beforeAll(async () => {
  helm = (helmPath as () => string)();
  emu = await startEmulator();
});

afterAll(async () => {
  await emu?.close();
});

async function template(release: string, ...set: string[]): Promise<k8s.KubernetesObject[]> {
  const { stdout } = await run(helm, ['template', release, CHART, '--namespace', 'default', ...set.flatMap((s) => ['--set', s])], { timeout: 30_000 });
  return k8s.loadAllYaml(stdout).filter(Boolean) as k8s.KubernetesObject[];
}

type Dep = k8s.V1Deployment;
const args = (d: Dep) => d.spec!.template.spec!.containers[0]!.args!;

describe('charts/skein', () => {
  it('passes helm lint', async () => {
    const { stdout } = await run(helm, ['lint', CHART, '--strict'], { timeout: 30_000 });
    expect(stdout).toContain('1 chart(s) linted, 0 chart(s) failed');
  });

  it('renders a scheduler Deployment and Service, and one worker Deployment per group, with the values applied', async () => {
    const objs = await template(
      'prod',
      'image.repository=reg.example/skein',
      'image.tag=1.2.3',
      'scheduler.serviceType=LoadBalancer',
      'scheduler.extraArgs[0]=--heartbeat-ms=500',
      'scheduler.resources.limits.cpu=2',
      'worker.replicas=4',
      'worker.nthreads=2',
      'worker.memoryLimit=4GB',
      'worker.extraArgs[0]=--death-timeout=30',
      'additionalWorkerGroups[0].name=gpu',
      'additionalWorkerGroups[0].replicas=1',
      'additionalWorkerGroups[0].workerResources.GPU=1',
      'dashboard.enabled=false',
    );
    const names = objs.map((o) => `${o.kind}/${o.metadata?.name}`).sort();
    expect(names).toEqual(['Deployment/prod-skein-scheduler', 'Deployment/prod-skein-worker', 'Deployment/prod-skein-worker-gpu', 'Service/prod-skein-scheduler']);
    const byName = new Map(objs.map((o) => [o.metadata!.name!, o]));
    const sched = byName.get('prod-skein-scheduler') as Dep;
    expect(sched.spec!.template.spec!.containers[0]!.image).toBe('reg.example/skein:1.2.3');
    expect(args(sched)).toEqual(['scheduler', '--host', '0.0.0.0', '--port', '8786', '--no-dashboard', '--ready-json', '--heartbeat-ms=500']);
    expect(sched.spec!.template.spec!.containers[0]!.resources).toEqual({ limits: { cpu: 2 } });
    const svc = objs.find((o) => o.kind === 'Service') as k8s.V1Service;
    expect(svc.spec).toMatchObject({ type: 'LoadBalancer', ports: [{ name: 'tcp-comm', port: 8786, targetPort: 'tcp-comm' }] });
    const worker = byName.get('prod-skein-worker') as Dep;
    expect(worker.spec!.replicas).toBe(4);
    expect(args(worker)).toEqual(['worker', 'tcp://prod-skein-scheduler:8786', '--host', '$(SKEIN_POD_IP)', '--name', '$(SKEIN_POD_NAME)', '--nthreads', '2', '--memory-limit', '4GB', '--ready-json', '--death-timeout=30']);
    const gpu = byName.get('prod-skein-worker-gpu') as Dep;
    expect(gpu.spec!.replicas).toBe(1);
    expect(args(gpu)).toContain('GPU=1');
    expect(gpu.spec!.selector.matchLabels).toMatchObject({ 'skein.dev/worker-group': 'gpu' });
    // A release already named after skein is not named twice.
    expect((await template('skein')).map((o) => o.metadata?.name)).toContain('skein-scheduler');
    expect(helmFullname('skein')).toBe('skein');
    expect(helmFullname('prod')).toBe('prod-skein');
  });

  it('HelmCluster: the rendered chart applied to the emulator runs a map; scale(n) retires the scheduler\'s choice and deletes exactly those pods', async () => {
    const kc = kubeconfig(emu);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const apps = kc.makeApiClient(k8s.AppsV1Api);
    await core.createNamespace({ body: { metadata: { name: 'helm' } } });
    for (const o of await template('rel', 'image.repository=skein', 'image.tag=test', 'worker.replicas=2', 'worker.terminationGracePeriodSeconds=2')) {
      if (o.kind === 'Deployment') await apps.createNamespacedDeployment({ namespace: 'helm', body: o as Dep });
      else if (o.kind === 'Service') await core.createNamespacedService({ namespace: 'helm', body: o as k8s.V1Service });
      else throw new Error(`unexpected kind ${o.kind}`);
    }
    await using cluster = await HelmCluster.connect({ releaseName: 'rel', namespace: 'helm', kubeconfig: kc, resourceTimeoutMs: 30_000 });
    expect(cluster.connection).toBe('direct');
    await cluster.waitForWorkers(2);
    await using client = await Client.connect(cluster);
    const xs = Array.from({ length: 20 }, (_, i) => i);
    expect(await client.gather(client.map((x: number) => x * 10, xs))).toEqual(xs.map((x) => x * 10));
    const firstTwo = new Set(emu.list('pods', 'helm', 'app.kubernetes.io/component=worker').map((p) => p['metadata']['name'] as string));
    await cluster.scale(3);
    await cluster.waitForWorkers(3);
    expect(await cluster.replicas()).toBe(3);
    // Pin a result on the newest worker (the one the ReplicaSet itself would delete first): scaling
    // down keeps it, since the scheduler retires idle, data-free workers first.
    const info = await client.schedulerInfo();
    const holder = info.workers.find((w) => !firstTwo.has(w.name))!;
    const kept = client.submitWith({ workers: [holder.address], pure: false }, () => 'kept'.padEnd(50_000, '.'));
    await kept.result();
    await cluster.scale(1);
    await until(async () => (await client.schedulerInfo()).workers.length === 1, 20_000, 'one worker left');
    const podsLeft = emu.list('pods', 'helm', 'app.kubernetes.io/component=worker').filter((p) => !p['metadata']['deletionTimestamp']);
    expect(podsLeft.map((p) => p['metadata']['name'])).toEqual([holder.name]);
    expect((await kept.result()).slice(0, 4)).toBe('kept');
    expect(() => cluster.adapt()).toThrow(/no adapt\(\)/);
    const logs = await cluster.getLogs();
    expect(Object.keys(logs).some((k) => k.startsWith('rel-skein-scheduler-'))).toBe(true);
  });
});

import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k8s from '@kubernetes/client-node';
import { Client } from '@skein/client';
import { Security } from '@skein/common';
import type { KubeEmulator } from '@skein/kube-emulator';
import { KubeCluster } from '../src/index.js';
import { credentialsSecret, schedulerLaunchOf, schedulerPod, workerLaunchOf, workerPod, type SpecInput } from '../src/specs.js';
import { clusterName, kubeconfig, leftovers, options, startEmulator, until } from './helpers.js';

let emu: KubeEmulator;

// Prints each credential file its flags name (basename, mode, sha256), then 'done'.
const CREDCHECK = `
  const fs = require('fs'), crypto = require('crypto');
  const a = process.argv.slice(1);
  for (let i = 0; i < a.length; i++) if (/^--(tls-ca-file|tls-cert|tls-key|auth-token-file)$/.test(a[i])) {
    const p = a[i + 1];
    console.log(p.slice(p.lastIndexOf('/') + 1), (fs.statSync(p).mode & 0o777).toString(8), crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex'));
  }
  console.log('done'); setInterval(() => {}, 1000);`;

beforeAll(async () => {
  emu = await startEmulator({ 'credcheck:*': { entrypoint: [process.execPath, '-e', CREDCHECK, '--'] } });
});

afterAll(async () => {
  await emu?.close();
});

describe('KubeCluster: reaching the scheduler, security, reconnecting, losing pods', () => {
  it('port-forwards through the API server when asked (portForward: true) and runs a map over it', async () => {
    const cluster = await KubeCluster.start(options(emu, { nWorkers: 1, portForward: true }));
    try {
      expect(cluster.connection).toBe('port-forward');
      expect(cluster.schedulerAddress).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
      await using client = await Client.connect(cluster);
      expect(await client.gather(client.map((x: number) => x * 3, [1, 2, 3]))).toEqual([3, 6, 9]);
      expect(emu.api.requests.some((r) => r.includes(`/pods/${cluster.name}-scheduler/portforward?ports=8786`))).toBe(true);
    } finally {
      await cluster.close();
    }
    expect(leftovers(emu, cluster)).toEqual([]);
  });

  it('falls back to a port-forward by itself when the service address does not answer from here (portForward: auto)', async () => {
    const isolated = await startEmulator({}, { isolateServiceNetwork: true });
    try {
      const cluster = await KubeCluster.start(options(isolated, { nWorkers: 1 }));
      try {
        expect(cluster.connection).toBe('port-forward');
        await using client = await Client.connect(cluster);
        expect(await client.gather(client.map((x: number) => x - 1, [1, 2]))).toEqual([0, 1]);
        expect((await client.schedulerInfo()).workers).toHaveLength(1);
      } finally {
        await cluster.close();
      }
      await expect(KubeCluster.start(options(isolated, { portForward: false, resourceTimeoutMs: 10_000 }))).rejects.toThrow(/Cannot reach the scheduler of service .* nothing answered and portForward is false/);
    } finally {
      await isolated.close();
    }
  });

  it('delivers Security.temporary() credentials as Secrets mounted as files (0600, group-readable by the fsGroup) where the flags name them, never in the pod spec', async () => {
    // The pods KubeCluster builds, run with an image that reports the files their flags name
    // (their contents checked byte for byte); test/kube-tls.test.ts runs the real cluster on TLS.
    const security = Security.temporary({ token: 'token-0123456789abcdef' });
    const spec: SpecInput = {
      name: clusterName(), namespace: 'default', image: 'credcheck:1', imagePullPolicy: undefined, resources: undefined, env: [], security,
      serviceType: 'ClusterIP', schedulerArgs: [], dashboard: false, worker: {}, schedulerSpec: undefined, workerSpec: undefined, terminationGracePeriodSeconds: 1,
    };
    const core = kubeconfig(emu).makeApiClient(k8s.CoreV1Api);
    const labels = { 'skein.dev/cluster': spec.name };
    for (const role of ['scheduler', 'worker'] as const) {
      const files = role === 'scheduler' ? schedulerLaunchOf(spec).files : workerLaunchOf(spec, `${spec.name}-worker-0`).files;
      await core.createNamespacedSecret({ namespace: 'default', body: credentialsSecret(spec, role, files, labels) });
    }
    const pods = [schedulerPod(spec, labels), workerPod(spec, `${spec.name}-worker-0`, labels, undefined)];
    for (const pod of pods) {
      expect(JSON.stringify(pod)).not.toMatch(/PRIVATE KEY|token-0123456789abcdef/);
      await core.createNamespacedPod({ namespace: 'default', body: pod });
    }
    for (const [pod, role, stem] of [[pods[0]!, 'scheduler', 'scheduler'], [pods[1]!, 'worker', 'nanny-worker']] as const) {
      const name = pod.metadata!.name!;
      const args = pod.spec!.containers[0]!.args!;
      expect(args).toEqual(expect.arrayContaining(['--tls-ca-file', '/etc/skein/credentials/ca.pem', '--tls-cert', `/etc/skein/credentials/${stem}.pem`, '--auth-token-file', '/etc/skein/credentials/token']));
      const log = await until(async () => (await core.readNamespacedPodLog({ name, namespace: 'default' })).includes('done'), 10_000, `the report of ${name}`).then(() => core.readNamespacedPodLog({ name, namespace: 'default' }));
      const launch = role === 'scheduler' ? schedulerLaunchOf(spec) : workerLaunchOf(spec, `${spec.name}-worker-0`);
      // defaultMode 0600; the pod's fsGroup (the image's `node` group) may read them: 0640.
      const expected = launch.files.map((f) => `${f.path.slice(f.path.lastIndexOf('/') + 1)} 640 ${createHash('sha256').update(f.contents).digest('hex')}`).sort();
      expect(log.split('\n').filter((l) => l && l !== 'done').sort()).toEqual(expected);
    }
  });

  it('KubeCluster.fromName reconnects without owning: its close() leaves the cluster running', async () => {
    const cluster = await KubeCluster.start(options(emu, { nWorkers: 1 }));
    try {
      const again = await KubeCluster.fromName(cluster.name, { kubeconfig: kubeconfig(emu), resourceTimeoutMs: 30_000 });
      expect(again.schedulerAddress).toBe(cluster.schedulerAddress);
      await using client = await Client.connect(again);
      expect((await client.schedulerInfo()).workers.map((w) => w.name)).toEqual([`${cluster.name}-worker-0`]);
      await client.close();
      await again.close();
      expect(emu.list('pods', 'default', `skein.dev/cluster=${cluster.name}`)).toHaveLength(2);
    } finally {
      await cluster.close();
    }
    expect(leftovers(emu, cluster)).toEqual([]);
  });

  it('keeps following its pods when the API server drops the watch and compacts its history (re-list, no lost events)', async () => {
    const cluster = await KubeCluster.start(options(emu, { nWorkers: 1 }));
    try {
      expect(emu.api.dropWatches()).toBeGreaterThan(0);
      emu.api.compact();
      await cluster.scale(2);
      await cluster.waitForWorkers(2, { timeoutMs: 30_000 });
      expect(cluster.podNames()).toEqual([`${cluster.name}-scheduler`, `${cluster.name}-worker-0`, `${cluster.name}-worker-1`]);
      // A watch resumed after the drop: a worker that crashes now is seen and replaced.
      const reads = emu.api.requests.filter((r) => r.includes('watch=true') && r.includes(`skein.dev%2Fcluster%3D${cluster.name}`)).length;
      expect(reads).toBeGreaterThanOrEqual(2);
      const uid = () => emu.list('pods', 'default', `skein.dev/worker=${cluster.name}-worker-1`)[0]?.['metadata']['uid'] as string | undefined;
      const before = uid();
      emu.kubelet.kill('default', `${cluster.name}-worker-1`);
      await until(() => uid() !== undefined && uid() !== before, 20_000, 'the crashed worker pod to be replaced');
      await cluster.waitForWorkers(2, { timeoutMs: 30_000 });
    } finally {
      await cluster.close();
    }
    expect(leftovers(emu, cluster)).toEqual([]);
  });

  it('a worker pod deleted in the middle of a map loses nothing: the base replaces it and every result arrives', async () => {
    const cluster = await KubeCluster.start(options(emu, { nWorkers: 2 }));
    try {
      await using client = await Client.connect(cluster);
      const xs = Array.from({ length: 40 }, (_, i) => i);
      const fs = client.map(
        async (x: number) => {
          await new Promise((r) => setTimeout(r, 100));
          return x * x;
        },
        xs,
      );
      await until(async () => (await client.schedulerInfo()).workers.some((w) => w.processing > 0), 10_000, 'tasks to run');
      const kc = kubeconfig(emu);
      await kc.makeApiClient(k8s.CoreV1Api).deleteNamespacedPod({ name: `${cluster.name}-worker-0`, namespace: 'default', gracePeriodSeconds: 0 });
      expect(await client.gather(fs)).toEqual(xs.map((x) => x * x));
      await cluster.waitForWorkers(2, { timeoutMs: 30_000 });
      expect((await client.schedulerInfo()).workers.map((w) => w.name).sort()).toEqual([`${cluster.name}-worker-0`, `${cluster.name}-worker-1`]);
    } finally {
      await cluster.close();
    }
    expect(leftovers(emu, cluster)).toEqual([]);
  });

  it('idleTimeoutMs: a scheduler with no client and no task exits 0, its pod stays Succeeded (not restarted), and a client keeps it open', async () => {
    const cluster = await KubeCluster.start(options(emu, { nWorkers: 1, idleTimeoutMs: 1500 }));
    const core = kubeconfig(emu).makeApiClient(k8s.CoreV1Api);
    const phase = async () => (await core.readNamespacedPod({ name: `${cluster.name}-scheduler`, namespace: 'default' })).status?.phase;
    try {
      {
        await using client = await Client.connect(cluster);
        expect(await client.gather(client.map((x: number) => x + 1, [1, 2]))).toEqual([2, 3]);
        await new Promise((r) => setTimeout(r, 2500));
        expect(await phase()).toBe('Running');
      }
      await until(async () => (await phase()) === 'Succeeded', 20_000, 'the idle scheduler pod to succeed');
      const pod = await core.readNamespacedPod({ name: `${cluster.name}-scheduler`, namespace: 'default' });
      expect(pod.spec?.restartPolicy).toBe('OnFailure');
      expect(pod.status?.containerStatuses?.[0]?.restartCount ?? 0).toBe(0);
    } finally {
      await cluster.close();
    }
    expect(leftovers(emu, cluster)).toEqual([]);
  });
});

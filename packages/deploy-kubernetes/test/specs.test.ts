import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Security } from '@skein/common';
import { credentialsSecret, mergePodSpec, schedulerLaunchOf, schedulerPod, schedulerService, workerPod, type SpecInput } from '../src/specs.js';
import { podState } from '../src/index.js';

const spec = (o: Partial<SpecInput> = {}): SpecInput => ({
  name: 'demo', namespace: 'ns', image: 'img:1', imagePullPolicy: undefined, resources: { limits: { cpu: '1' } }, env: [{ name: 'A', value: '1' }], security: undefined,
  serviceType: 'ClusterIP', schedulerArgs: [], dashboard: true, worker: { nthreads: 2 }, schedulerSpec: undefined, workerSpec: undefined, terminationGracePeriodSeconds: 10, ...o,
});

describe('pod specs (pure)', () => {
  it('builds the scheduler pod and service, and worker pods owned by the scheduler pod, as args of the image entrypoint `skein`', () => {
    const labels = { 'skein.dev/cluster': 'demo' };
    const s = schedulerPod(spec(), labels);
    expect(s.metadata).toMatchObject({ name: 'demo-scheduler', labels: { 'skein.dev/cluster': 'demo', 'skein.dev/component': 'scheduler' } });
    const c = s.spec!.containers[0]!;
    expect(c.command).toBeUndefined();
    expect(c.args).toEqual(['scheduler', '--host', '0.0.0.0', '--port', '8786', '--dashboard-address', ':8787', '--ready-json']);
    expect(c.readinessProbe).toMatchObject({ tcpSocket: { port: 'tcp-comm' } });
    const owner = { apiVersion: 'v1', kind: 'Pod', name: 'demo-scheduler', uid: 'u-1' };
    expect(schedulerService(spec(), labels, owner).spec).toMatchObject({ type: 'ClusterIP', selector: { 'skein.dev/cluster': 'demo', 'skein.dev/component': 'scheduler' } });
    const w = workerPod(spec(), 'demo-worker-3', labels, owner);
    expect(w.metadata).toMatchObject({ name: 'demo-worker-3', ownerReferences: [owner], labels: { 'skein.dev/worker': 'demo-worker-3', 'skein.dev/component': 'worker' } });
    expect(w.spec!.restartPolicy).toBe('Never');
    expect(w.spec!.containers[0]!.args).toEqual(['worker', 'tcp://demo-scheduler.ns.svc.cluster.local:8786', '--host', '$(SKEIN_POD_IP)', '--name', 'demo-worker-3', '--nthreads', '2', '--ready-json']);
    expect(w.spec!.containers[0]!.env).toEqual([{ name: 'SKEIN_POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } }, { name: 'A', value: '1' }]);
    expect(w.spec!.containers[0]!.resources).toEqual({ limits: { cpu: '1' } });
    // The Dockerfile's entrypoint is what the args assume.
    expect(readFileSync(new URL('../image/Dockerfile', import.meta.url), 'utf8')).toMatch(/^ENTRYPOINT \["skein"\]$/m);
  });

  it('merges schedulerSpec/workerSpec into the pods (containers by name) and puts credentials in Secrets only', () => {
    const merged = mergePodSpec(workerPod(spec(), 'w', {}, undefined).spec!, {
      nodeSelector: { pool: 'big' },
      tolerations: [{ key: 'gpu', operator: 'Exists' }],
      containers: [{ name: 'worker', env: [{ name: 'B', value: '2' }] }, { name: 'sidecar', image: 'side:1' }],
    });
    expect(merged.nodeSelector).toEqual({ pool: 'big' });
    expect(merged.containers.map((c) => c.name)).toEqual(['worker', 'sidecar']);
    expect(merged.containers[0]!.image).toBe('img:1');
    expect(merged.containers[0]!.env!.map((e) => e.name)).toEqual(['SKEIN_POD_IP', 'A', 'B']);
    const security = Security.temporary();
    const s = spec({ security });
    const pod = schedulerPod(s, {});
    expect(pod.spec!.volumes).toEqual([{ name: 'skein-credentials', secret: { secretName: 'demo-scheduler-credentials', defaultMode: 0o600 } }]);
    expect(pod.spec!.containers[0]!.volumeMounts).toEqual([{ name: 'skein-credentials', mountPath: '/etc/skein/credentials', readOnly: true }]);
    // The image runs as `node` (gid 1000): the pod's fsGroup lets it read the root-owned Secret files.
    expect(readFileSync(new URL('../image/Dockerfile', import.meta.url), 'utf8')).toMatch(/^USER node$/m);
    expect(pod.spec!.securityContext).toEqual({ fsGroup: 1000 });
    expect(workerPod(s, 'w', {}, undefined).spec!.securityContext).toEqual({ fsGroup: 1000 });
    expect(workerPod(spec(), 'w', {}, undefined).spec!.securityContext).toBeUndefined();
    expect(workerPod(spec({ security, workerSpec: { securityContext: { runAsUser: 2000, fsGroup: 2000 } } }), 'w', {}, undefined).spec!.securityContext).toEqual({ runAsUser: 2000, fsGroup: 2000 });
    const secret = credentialsSecret(s, 'scheduler', schedulerLaunchOf(s).files, {});
    expect(Object.keys(secret.data!).sort()).toEqual(['ca.pem', 'scheduler-key.pem', 'scheduler.pem']);
    expect(Buffer.from(secret.data!['scheduler-key.pem']!, 'base64').toString()).toContain('PRIVATE KEY');
    expect(JSON.stringify(pod)).not.toContain('PRIVATE KEY');
  });

  it('reads pod trouble from the status: image pulls, crash loops, unschedulable, failed', () => {
    const pod = (status: object) => ({ metadata: { name: 'p', namespace: 'ns' }, status });
    expect(podState(pod({ phase: 'Pending', containerStatuses: [{ name: 'c', image: 'x:1', state: { waiting: { reason: 'ImagePullBackOff', message: 'Back-off' } } }] }) as never)).toMatchObject({ kind: 'failed', error: { reason: 'ImagePullBackOff', image: 'x:1' } });
    expect(podState(pod({ phase: 'Running', containerStatuses: [{ name: 'c', state: { waiting: { reason: 'CrashLoopBackOff' } }, lastState: { terminated: { exitCode: 3 } } }] }) as never)).toMatchObject({ kind: 'failed', error: { reason: 'CrashLoopBackOff', exitCode: 3 } });
    expect(podState(pod({ phase: 'Pending', conditions: [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/3 nodes' }] }) as never)).toEqual({ kind: 'pending', reason: 'pod p is Pending: Unschedulable: 0/3 nodes' });
    expect(podState(pod({ phase: 'Failed', containerStatuses: [{ name: 'c', state: { terminated: { exitCode: 1, reason: 'Error' } } }] }) as never)).toMatchObject({ kind: 'failed', error: { reason: 'Error', exitCode: 1 } });
    expect(podState(pod({ phase: 'Running', conditions: [{ type: 'Ready', status: 'True' }] }) as never)).toEqual({ kind: 'ready' });
    expect(podState(undefined)).toEqual({ kind: 'gone' });
  });
});

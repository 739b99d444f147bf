import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k8s from '@kubernetes/client-node';
// Not re-exported by the index; the default handler's streams open process.stdin.
import { WebSocketHandler } from '@kubernetes/client-node/dist/web-socket-handler.js';
import { KubeEmulator } from '../src/index.js';

const run = promisify(execFile);
const NODE = process.execPath;
let emu: KubeEmulator;
let core: k8s.CoreV1Api;
let apps: k8s.AppsV1Api;
let kc: k8s.KubeConfig;
let dir: string;
let ns = 0;

async function until<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, what: string, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const statusOf = (err: unknown) => {
  const e = err as { code?: number; body?: string };
  return { code: e.code, ...(JSON.parse(e.body ?? '{}') as { reason?: string; message?: string; kind?: string }) };
};

async function namespace(): Promise<string> {
  const name = `t${++ns}-${process.pid}`;
  await core.createNamespace({ body: { metadata: { name } } });
  return name;
}

const nodePod = (name: string, script: string, extra: Partial<k8s.V1Container> = {}, spec: Partial<k8s.V1PodSpec> = {}): k8s.V1Pod => ({
  metadata: { name, labels: { app: 'test' } },
  spec: { containers: [{ name: 'main', image: 'node:20', args: ['-e', script], ...extra }], terminationGracePeriodSeconds: 2, ...spec },
});

const ready = (p: k8s.V1Pod) => !!p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'kube-emulator-test-'));
  emu = await KubeEmulator.start({ images: { 'node:*': { entrypoint: [NODE] }, 'fake:*': { fake: true } }, bookmarkIntervalMs: 200 });
  kc = new k8s.KubeConfig();
  kc.loadFromString(emu.kubeconfig());
  core = kc.makeApiClient(k8s.CoreV1Api);
  apps = kc.makeApiClient(k8s.AppsV1Api);
});

afterAll(async () => {
  await emu?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('the API server, through @kubernetes/client-node', () => {
  it('creates, reads, lists with selectors, and answers Status bodies for 404, 409, 422 and 400', async () => {
    const n = await namespace();
    const made = await core.createNamespacedConfigMap({ namespace: n, body: { metadata: { generateName: 'cfg-', labels: { tier: 'a', env: 'x' } }, data: { k: 'v' } } });
    expect(made.metadata?.name).toMatch(/^cfg-[a-z0-9]{5}$/);
    expect(made.metadata?.uid).toMatch(/^[0-9a-f-]{36}$/);
    expect(made.metadata?.creationTimestamp).toBeInstanceOf(Date);
    await core.createNamespacedConfigMap({ namespace: n, body: { metadata: { name: 'b', labels: { tier: 'b' } } } });
    await core.createNamespacedConfigMap({ namespace: n, body: { metadata: { name: 'c' } } });
    const names = async (labelSelector?: string, fieldSelector?: string) =>
      (await core.listNamespacedConfigMap({ namespace: n, ...(labelSelector ? { labelSelector } : {}), ...(fieldSelector ? { fieldSelector } : {}) })).items.map((i) => i.metadata?.name?.slice(0, 3));
    expect(await names('tier in (a,b)')).toEqual(['b', 'cfg']);
    expect(await names('tier notin (a)')).toEqual(['b', 'c']);
    expect(await names('!tier')).toEqual(['c']);
    expect(await names('tier,env==x')).toEqual(['cfg']);
    expect(await names('tier!=b')).toEqual(['c', 'cfg']);
    expect(await names(undefined, 'metadata.name=b')).toEqual(['b']);

    const err404 = await core.readNamespacedConfigMap({ name: 'nope', namespace: n }).catch((e: unknown) => e);
    expect(statusOf(err404)).toMatchObject({ code: 404, kind: 'Status', reason: 'NotFound', message: 'configmaps "nope" not found' });
    const err409 = await core.createNamespacedConfigMap({ namespace: n, body: { metadata: { name: 'b' } } }).catch((e: unknown) => e);
    expect(statusOf(err409)).toMatchObject({ code: 409, reason: 'AlreadyExists' });
    const err422 = await core.createNamespacedConfigMap({ namespace: n, body: { metadata: { name: 'Bad_Name' } } }).catch((e: unknown) => e);
    expect(statusOf(err422)).toMatchObject({ code: 422, reason: 'Invalid' });
    const noContainers = await core.createNamespacedPod({ namespace: n, body: { metadata: { name: 'p' }, spec: { containers: [] } } }).catch((e: unknown) => e);
    expect(statusOf(noContainers)).toMatchObject({ code: 422, reason: 'Invalid' });
    const noNs = await core.createNamespacedConfigMap({ namespace: 'missing-ns', body: { metadata: { name: 'x' } } }).catch((e: unknown) => e);
    expect(statusOf(noNs)).toMatchObject({ code: 404, message: 'namespaces "missing-ns" not found' });
    const badSel = await core.listNamespacedConfigMap({ namespace: n, labelSelector: 'a in b' }).catch((e: unknown) => e);
    expect(statusOf(badSel)).toMatchObject({ code: 400, reason: 'BadRequest' });

    // Optimistic concurrency: a PUT with a stale resourceVersion is a 409 Conflict.
    const b = await core.readNamespacedConfigMap({ name: 'b', namespace: n });
    await core.replaceNamespacedConfigMap({ name: 'b', namespace: n, body: { ...b, data: { x: '1' } } });
    const stale = await core.replaceNamespacedConfigMap({ name: 'b', namespace: n, body: { ...b, data: { x: '2' } } }).catch((e: unknown) => e);
    expect(statusOf(stale)).toMatchObject({ code: 409, reason: 'Conflict' });
  });

  it('applies JSON patches (the default), merge patches and strategic merge patches', async () => {
    const n = await namespace();
    await core.createNamespacedConfigMap({ namespace: n, body: { metadata: { name: 'p', labels: { a: '1' } }, data: { x: '1', y: '2' } } });
    const j = await core.patchNamespacedConfigMap({ name: 'p', namespace: n, body: [{ op: 'replace', path: '/data/x', value: '10' }, { op: 'remove', path: '/data/y' }, { op: 'add', path: '/metadata/labels/b', value: '2' }] });
    expect(j.data).toEqual({ x: '10' });
    expect(j.metadata?.labels).toEqual({ a: '1', b: '2' });
    const m = await core.patchNamespacedConfigMap({ name: 'p', namespace: n, body: { data: { x: null, z: '3' } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    expect(m.data).toEqual({ z: '3' });
    const bad = await core.patchNamespacedConfigMap({ name: 'p', namespace: n, body: [{ op: 'remove', path: '/data/missing' }] }).catch((e: unknown) => e);
    expect(statusOf(bad)).toMatchObject({ code: 422 });
    await core.createNamespacedPod({ namespace: n, body: { metadata: { name: 'sp' }, spec: { containers: [{ name: 'a', image: 'none:1', env: [{ name: 'X', value: '1' }] }, { name: 'b', image: 'none:1' }] } } });
    const s = await core.patchNamespacedPod({ name: 'sp', namespace: n, body: { spec: { containers: [{ name: 'a', env: [{ name: 'Y', value: '2' }] }] } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.StrategicMergePatch));
    expect(s.spec?.containers.map((c) => c.name)).toEqual(['a', 'b']);
    expect(s.spec?.containers[0]?.env?.map((e) => e.name)).toEqual(['X', 'Y']);
  });

  it('watches from a resourceVersion, sends bookmarks, and answers 410 Expired for a compacted one', async () => {
    const n = await namespace();
    const list = await core.listNamespacedConfigMap({ namespace: n });
    const rv = list.metadata!.resourceVersion!;
    await core.createNamespacedConfigMap({ namespace: n, body: { metadata: { name: 'w1', labels: { watch: 'yes' } } } });
    await core.createNamespacedConfigMap({ namespace: n, body: { metadata: { name: 'w2' } } });
    const seen: string[] = [];
    const watch = new k8s.Watch(kc);
    let done: unknown = 'open';
    const ctl = await watch.watch(
      `/api/v1/namespaces/${n}/configmaps`,
      { resourceVersion: rv, labelSelector: 'watch=yes', allowWatchBookmarks: true },
      (type, obj: k8s.V1ConfigMap) => seen.push(`${type} ${obj.metadata?.name ?? obj.metadata?.resourceVersion}`),
      (err) => (done = err),
    );
    await core.patchNamespacedConfigMap({ name: 'w1', namespace: n, body: { data: { a: 'b' } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    await core.deleteNamespacedConfigMap({ name: 'w1', namespace: n });
    await until(() => seen.includes('DELETED w1') && seen.some((s) => s.startsWith('BOOKMARK')), 'the events and a bookmark');
    expect(seen.filter((s) => !s.startsWith('BOOKMARK'))).toEqual(['ADDED w1', 'MODIFIED w1', 'DELETED w1']);
    ctl.abort();

    emu.api.compact();
    let expired: unknown;
    await watch.watch(`/api/v1/namespaces/${n}/configmaps`, { resourceVersion: rv }, (type, obj: k8s.V1Status) => (expired = { type, code: obj.code, reason: obj.reason }), () => undefined);
    await until(() => expired, 'the 410');
    expect(expired).toEqual({ type: 'ERROR', code: 410, reason: 'Expired' });
    void done;
  });

  it('reconciles a Deployment through its scale subresource, and collects the garbage of deleted owners', async () => {
    const n = await namespace();
    const d = await apps.createNamespacedDeployment({
      namespace: n,
      body: { metadata: { name: 'web' }, spec: { replicas: 2, selector: { matchLabels: { app: 'web' } }, template: { metadata: { labels: { app: 'web' } }, spec: { containers: [{ name: 'c', image: 'fake:1' }] } } } },
    });
    const pods = async () => (await core.listNamespacedPod({ namespace: n, labelSelector: 'app=web' })).items.filter((p) => !p.metadata?.deletionTimestamp);
    expect((await pods()).map((p) => p.metadata?.ownerReferences?.[0]?.uid)).toEqual([d.metadata?.uid, d.metadata?.uid]);
    await apps.patchNamespacedDeploymentScale({ name: 'web', namespace: n, body: { spec: { replicas: 4 } } }, k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch));
    expect(await pods()).toHaveLength(4);
    const scale = await apps.readNamespacedDeploymentScale({ name: 'web', namespace: n });
    expect(scale).toMatchObject({ kind: 'Scale', spec: { replicas: 4 }, status: { replicas: 4, selector: 'app=web' } });
    await apps.replaceNamespacedDeploymentScale({ name: 'web', namespace: n, body: { ...scale, spec: { replicas: 1 } } });
    await until(async () => (await pods()).length === 1, 'scale-down to 1');
    // An owner reference: deleting the owner deletes the dependent.
    const owner = await core.createNamespacedConfigMap({ namespace: n, body: { metadata: { name: 'owner' } } });
    await core.createNamespacedSecret({ namespace: n, body: { metadata: { name: 'dep', ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata!.uid! }] }, stringData: { a: 'b' } } });
    await core.deleteNamespacedConfigMap({ name: 'owner', namespace: n });
    await apps.deleteNamespacedDeployment({ name: 'web', namespace: n });
    await until(async () => (await core.listNamespacedSecret({ namespace: n })).items.length === 0 && (await pods()).length === 0, 'garbage collection');
    // Deleting the namespace deletes what is in it, then the namespace.
    await core.deleteNamespace({ name: n });
    await until(async () => (await core.listNamespace()).items.every((x) => x.metadata?.name !== n), 'the namespace to go');
  });

  it('answers an injected fault (RBAC 403) with a Forbidden Status', async () => {
    const n = await namespace();
    const undo = emu.fault({ verb: 'create', resource: 'pods', namespace: n, code: 403, reason: 'Forbidden' });
    const err = await core.createNamespacedPod({ namespace: n, body: nodePod('x', '') }).catch((e: unknown) => e);
    undo();
    expect(statusOf(err)).toMatchObject({ code: 403, reason: 'Forbidden' });
    expect(statusOf(err).message).toContain('cannot create resource "pods"');
  });
});

describe('the kubelet: pods as local processes', () => {
  it('runs a pod on its own loopback IP with its env, Secret files (0600) and readiness, serves logs and a Service', async () => {
    const n = await namespace();
    await core.createNamespacedSecret({ namespace: n, body: { metadata: { name: 'creds' }, stringData: { token: 's3cret' } } });
    const script = `
      const fs = require('fs');
      const t = fs.readFileSync(process.env.TOKEN_FILE, 'utf8');
      const mode = (fs.statSync(process.env.TOKEN_FILE).mode & 0o777).toString(8);
      console.log('token', t, 'mode', mode, 'ip', process.env.MY_IP, 'host', require('os').hostname());
      require('http').createServer((q, s) => s.end('from ' + process.env.MY_IP)).listen(8080, '0.0.0.0');`;
    await core.createNamespacedPod({
      namespace: n,
      body: nodePod(
        'web',
        script,
        {
          env: [
            { name: 'MY_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
            { name: 'TOKEN_FILE', value: '/etc/creds/token' },
          ],
          volumeMounts: [{ name: 'c', mountPath: '/etc/creds' }],
          ports: [{ name: 'http', containerPort: 8080 }],
          readinessProbe: { httpGet: { path: '/', port: 'http' }, periodSeconds: 1 },
        },
        { volumes: [{ name: 'c', secret: { secretName: 'creds', defaultMode: 0o600 } }] },
      ),
    });
    const pod = await until(async () => {
      const p = await core.readNamespacedPod({ name: 'web', namespace: n });
      return ready(p) && p;
    }, 'the pod to be ready');
    const ip = pod.status!.podIP!;
    expect(ip).toMatch(/^127\.42\.\d+\.\d+$/);
    expect(pod.status?.phase).toBe('Running');
    const log = await until(async () => {
      const l = await core.readNamespacedPodLog({ name: 'web', namespace: n });
      return l.includes('token') && l;
    }, 'the log line');
    expect(log).toBe(`token s3cret mode 600 ip ${ip} host web\n`);
    const svc = await core.createNamespacedService({ namespace: n, body: { metadata: { name: 'web' }, spec: { selector: { app: 'test' }, ports: [{ port: 80, targetPort: 'http' }] } } });
    const text = await until(async () => fetch(`http://${svc.spec!.clusterIP}/`).then((r) => r.text(), () => undefined), 'the service to answer');
    expect(text).toBe(`from ${ip}`);
    // A port-forward through client-node's PortForward (the WebSocket protocol).
    // Its own streams: the default handler opens process.stdin.
    const pf = new k8s.PortForward(kc, true, new WebSocketHandler(kc, undefined, { stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough() }));
    const server = createServer((socket) => void pf.portForward(n, 'web', [8080], socket, null, socket));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe(`from ${ip}`);
    server.close();
  });

  it("gives the pod's fsGroup the Secret files (group read: defaultMode 0600 becomes 0640), as the kubelet does", async () => {
    const n = await namespace();
    await core.createNamespacedSecret({ namespace: n, body: { metadata: { name: 'creds' }, stringData: { key: 'k3y' } } });
    const script = `
      const fs = require('fs'), st = fs.statSync('/etc/creds/key');
      console.log('mode', (st.mode & 0o777).toString(8), 'gid', st.gid, fs.readFileSync('/etc/creds/key', 'utf8'));
      setInterval(() => {}, 1000);`;
    for (const [name, securityContext] of [['grouped', { fsGroup: 1000 }], ['plain', undefined]] as const) {
      await core.createNamespacedPod({
        namespace: n,
        body: nodePod(name, script, { volumeMounts: [{ name: 'c', mountPath: '/etc/creds', readOnly: true }] }, { volumes: [{ name: 'c', secret: { secretName: 'creds', defaultMode: 0o600 } }], ...(securityContext ? { securityContext } : {}) }),
      });
    }
    const logOf = (name: string) =>
      until(async () => {
        const l = await core.readNamespacedPodLog({ name, namespace: n });
        return l.includes('mode') && l.trim();
      }, `the log of ${name}`);
    const root = process.getuid?.() === 0;
    expect(await logOf('grouped')).toBe(`mode 640 gid ${root ? 1000 : process.getgid!()} k3y`);
    expect(await logOf('plain')).toBe(`mode 600 gid ${process.getgid!()} k3y`);
  });

  it('restarts a crashing container (CrashLoopBackOff, restartCount, previous logs) and reports an unknown image', async () => {
    const n = await namespace();
    await core.createNamespacedPod({ namespace: n, body: nodePod('crash', "console.log('boom'); process.exit(3)") });
    await core.createNamespacedPod({ namespace: n, body: { metadata: { name: 'img' }, spec: { containers: [{ name: 'c', image: 'registry.example/nope:1' }] } } });
    const crashed = await until(async () => {
      const p = await core.readNamespacedPod({ name: 'crash', namespace: n });
      const s = p.status?.containerStatuses?.[0];
      return (s?.restartCount ?? 0) >= 2 && s?.state?.waiting?.reason === 'CrashLoopBackOff' && s;
    }, 'CrashLoopBackOff');
    expect(crashed.lastState?.terminated).toMatchObject({ exitCode: 3, reason: 'Error' });
    expect(await core.readNamespacedPodLog({ name: 'crash', namespace: n, previous: true })).toBe('boom\n');
    const pulled = await until(async () => {
      const p = await core.readNamespacedPod({ name: 'img', namespace: n });
      return p.status?.containerStatuses?.[0]?.state?.waiting?.reason === 'ImagePullBackOff' && p;
    }, 'ImagePullBackOff');
    expect(pulled.status?.phase).toBe('Pending');
    await core.deleteNamespacedPod({ name: 'crash', namespace: n });
    await core.deleteNamespacedPod({ name: 'img', namespace: n });
    await until(async () => (await core.listNamespacedPod({ namespace: n })).items.length === 0, 'the pods to go');
  });

  it('terminates with SIGTERM, then SIGKILL after the grace period; restartPolicy Never ends Succeeded', async () => {
    const n = await namespace();
    await core.createNamespacedPod({ namespace: n, body: nodePod('polite', "process.on('SIGTERM', () => { console.log('term'); process.exit(0) }); setInterval(() => {}, 1000); console.log('up')") });
    await core.createNamespacedPod({ namespace: n, body: nodePod('stubborn', "process.on('SIGTERM', () => console.log('ignored')); setInterval(() => {}, 1000); console.log('up')", {}, { terminationGracePeriodSeconds: 1 }) });
    await core.createNamespacedPod({ namespace: n, body: nodePod('once', "console.log('done')", {}, { restartPolicy: 'Never' }) });
    for (const name of ['polite', 'stubborn']) await until(async () => (await core.readNamespacedPodLog({ name, namespace: n })).includes('up'), `${name} up`);
    const t0 = Date.now();
    const deleted = await core.deleteNamespacedPod({ name: 'polite', namespace: n });
    expect(deleted.metadata?.deletionTimestamp).toBeInstanceOf(Date);
    await core.deleteNamespacedPod({ name: 'stubborn', namespace: n });
    const gone = (name: string) => core.readNamespacedPod({ name, namespace: n }).then(() => false, (e: unknown) => statusOf(e).code === 404);
    await until(() => gone('polite'), 'polite to go', 5_000);
    const politeMs = Date.now() - t0;
    await until(() => gone('stubborn'), 'stubborn to go', 5_000);
    expect(politeMs).toBeLessThan(900);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);
    const once = await until(async () => {
      const p = await core.readNamespacedPod({ name: 'once', namespace: n });
      return p.status?.phase === 'Succeeded' && p;
    }, 'Succeeded');
    expect(once.status?.containerStatuses?.[0]?.state?.terminated?.exitCode).toBe(0);
  });

  it('keeps a pod Pending and Unschedulable when told to', async () => {
    const n = await namespace();
    emu.unschedulable((p) => (p.metadata?.namespace === n ? '0/1 nodes are available: 1 Insufficient cpu.' : undefined));
    try {
      await core.createNamespacedPod({ namespace: n, body: nodePod('big', '') });
      const p = await core.readNamespacedPod({ name: 'big', namespace: n });
      expect(p.status?.phase).toBe('Pending');
      expect(p.status?.conditions?.[0]).toMatchObject({ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: '0/1 nodes are available: 1 Insufficient cpu.' });
    } finally {
      emu.unschedulable(undefined);
    }
  });
});

describe('kubectl against the emulator', () => {
  it('gets pods as JSON, scales a deployment, deletes a pod (waiting for it to go)', async () => {
    const n = await namespace();
    const cfg = emu.writeKubeconfig(join(dir, 'kubeconfig'), n);
    const kubectl = async (...args: string[]) => (await run('kubectl', ['--kubeconfig', cfg, ...args], { timeout: 30_000 })).stdout;
    await apps.createNamespacedDeployment({
      namespace: n,
      body: { metadata: { name: 'd' }, spec: { replicas: 1, selector: { matchLabels: { app: 'd' } }, template: { metadata: { labels: { app: 'd' } }, spec: { containers: [{ name: 'c', image: 'fake:1' }] } } } },
    });
    const before = JSON.parse(await kubectl('get', 'pods', '-o', 'json')) as { kind: string; items: k8s.V1Pod[] };
    expect(before.kind).toBe('List');
    expect(before.items.map((p) => p.status?.phase)).toEqual(['Running']);
    expect(await kubectl('scale', 'deployment', 'd', '--replicas=3')).toContain('deployment.apps/d scaled');
    expect((await core.listNamespacedPod({ namespace: n })).items).toHaveLength(3);
    const victim = before.items[0]!.metadata!.name!;
    expect(await kubectl('delete', 'pod', victim)).toContain(`pod "${victim}" deleted`);
    const after = JSON.parse(await kubectl('get', 'pods', '-l', 'app=d', '-o', 'json')) as { items: k8s.V1Pod[] };
    expect(after.items.map((p) => p.metadata?.name)).not.toContain(victim);
    expect(after.items).toHaveLength(3);
    await until(async () => (await apps.readNamespacedDeployment({ name: 'd', namespace: n })).status?.readyReplicas === 3, 'three ready replicas');
    expect(JSON.parse(await kubectl('get', 'deployment', 'd', '-o', 'json'))).toMatchObject({ spec: { replicas: 3 }, status: { readyReplicas: 3 } });
  });
});

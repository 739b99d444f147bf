import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { get as httpsGet } from 'node:https';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as k8s from '@kubernetes/client-node';
import { Client } from '@skein/client';
import { CommClosedError, Security, UnauthenticatedError } from '@skein/common';
import type { KubeEmulator } from '@skein/kube-emulator';
import { HelmCluster, KubeCluster } from '../src/index.js';
import { clusterName, kubeconfig, leftovers, options, startEmulator, until } from './helpers.js';
// @ts-expect-error: a plain .mjs tool script, without types
import { helmPath } from '../../../tools/helm.mjs';

const CHART = fileURLToPath(new URL('../../../charts/skein', import.meta.url));
const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));

// Level 3 on the emulator: a KubeCluster on mutual TLS, its credentials delivered as Secrets
// mounted as files; the scheduler, nannies and workers are this checkout's `skein` processes.
let emu: KubeEmulator;

beforeAll(async () => {
  emu = await startEmulator();
});

afterAll(async () => {
  await emu?.close();
});

const TOKEN = 'kube-tls-token-0123456789abcdef';

/** The pod's processes as the kubelet runs them: argv and environment from /proc. */
function processesOf(pod: string): Array<{ argv: string[]; environ: string; pid: number }> {
  const rt = [...emu.kubelet.pods.values()].find((p) => p.name === pod && !p.done);
  if (!rt) throw new Error(`no pod ${pod} in the kubelet`);
  return rt.containers.flatMap((c) => (c.proc?.pid ? [{ pid: c.proc.pid, argv: readFileSync(`/proc/${c.proc.pid}/cmdline`, 'utf8').split('\0'), environ: readFileSync(`/proc/${c.proc.pid}/environ`, 'utf8') }] : []));
}

/** GET a dashboard page over HTTPS, trusting only the cluster's CA (the host is not checked, as the cluster's links do): `<status> <body>`. */
function dashboardGet(link: string, security: Security, path: string): Promise<string> {
  const ca = security.credentials('client')!.ca;
  return new Promise((resolve, reject) => {
    httpsGet(link.replace('/status', path), { ca, checkServerIdentity: () => undefined }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve(`${res.statusCode} ${text}`));
    }).on('error', reject);
  });
}

/** The value after `flag` in argv. */
const flag = (argv: string[], name: string) => argv[argv.indexOf(name) + 1]!;

/** A map, then a task on one worker that needs a value computed on the other (fetched worker to worker). */
async function compute(client: Client, workers: string[]): Promise<void> {
  const xs = Array.from({ length: 20 }, (_, i) => i);
  expect(await client.gather(client.map((x: number) => x * x, xs))).toEqual(xs.map((x) => x * x));
  const [a, b] = workers;
  const made = client.submitWith({ workers: [a!], pure: false }, (n: number) => ({ pid: process.pid, v: Array.from({ length: n }, (_, i) => i) }), 1000);
  const summed = client.submitWith({ workers: [b!], allowOtherWorkers: false }, (m: { pid: number; v: number[] }) => [m.pid, process.pid, m.v.reduce((s, x) => s + x, 0)], made);
  const [from, at, sum] = (await summed.result()) as number[];
  expect(sum).toBe((999 * 1000) / 2);
  // Made in one worker's pod, used in the other's: the value moved worker to worker.
  expect(from).not.toBe(at);
}

describe('KubeCluster with security', () => {
  it('security: true runs on mutual TLS: credentials as files from Secrets (0600 + fsGroup read; never in args or env), a map and a worker-to-worker dependency, scale 1 → 2, a client without credentials refused', async () => {
    const cluster = await KubeCluster.start(options(emu, { nWorkers: 1, security: true }));
    try {
      expect(cluster.connection).toBe('direct');
      expect(cluster.security.tls).toBe(true);
      expect(cluster.schedulerAddress).toMatch(/^tls:\/\/127\.43\.\d+\.\d+:8786$/);
      expect(cluster.dashboardLink).toMatch(/^https:\/\/127\.43\.\d+\.\d+:8787\/status$/);
      expect(await dashboardGet(cluster.dashboardLink, cluster.security, '/health')).toMatch(/^200/);

      // Nothing secret in any pod object: the credentials are in the Secrets only.
      const pods = emu.list('pods', 'default', `skein.dev/cluster=${cluster.name}`);
      for (const p of pods) {
        expect(JSON.stringify(p)).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
        expect(p['spec']['volumes']).toEqual([{ name: 'skein-credentials', secret: { secretName: expect.stringMatching(/-(scheduler|worker)-credentials$/), defaultMode: 0o600 } }]);
        // The image runs as `node`: its group may read the root-owned Secret files.
        expect(p['spec']['securityContext']).toEqual({ fsGroup: 1000 });
      }
      const secrets = emu.list('secrets', 'default', `skein.dev/cluster=${cluster.name}`).map((s) => s['metadata']['name']).sort();
      expect(secrets).toEqual([`${cluster.name}-scheduler-credentials`, `${cluster.name}-worker-credentials`]);

      await using client = await Client.connect(cluster);
      await cluster.scale(2);
      await cluster.waitForWorkers(2, { timeoutMs: 30_000 });
      const info = await client.schedulerInfo();
      expect(info.workers).toHaveLength(2);
      for (const w of info.workers) expect(w.address).toMatch(/^tls:\/\/127\.42\.\d+\.\d+:\d+$/);
      await compute(client, info.workers.map((w) => w.address));

      // Each process reads its credentials from files of its pod's Secret volume (0600, plus read for
      // the fsGroup); argv names them, env has none.
      for (const pod of [`${cluster.name}-scheduler`, `${cluster.name}-worker-0`, `${cluster.name}-worker-1`]) {
        const procs = processesOf(pod);
        expect(procs).toHaveLength(1);
        const { argv, environ } = procs[0]!;
        expect(argv.join(' ')).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE/);
        expect(environ).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE|SKEIN_AUTH_TOKEN|SKEIN_TLS_/);
        for (const f of ['--tls-ca-file', '--tls-cert', '--tls-key']) {
          const path = flag(argv, f);
          expect(path, `${pod} ${f}`).toMatch(/\/fs\/etc\/skein\/credentials\//);
          expect(statSync(path).mode & 0o777, `${pod} ${f}`).toBe(0o640);
        }
        expect(readFileSync(flag(argv, '--tls-key'), 'utf8')).toMatch(/PRIVATE KEY/);
        expect(argv).toContain('--require-encryption');
      }

      // No certificate: refused with a TLS error; another CA's certificate: refused too.
      const plain = cluster.schedulerAddress.replace('tls://', 'tcp://');
      const noCreds = await Client.connect(plain, { security: Security.insecure(), connectTimeoutMs: 2_000 }).catch((e: unknown) => e);
      expect(noCreds).toBeInstanceOf(CommClosedError);
      expect((noCreds as Error).message).toMatch(/TLS/);
      const stranger = await Client.connect(cluster.schedulerAddress, { security: Security.temporary(), connectTimeoutMs: 2_000 }).catch((e: unknown) => e);
      expect(stranger).toBeInstanceOf(CommClosedError);
      expect((stranger as Error).message).toMatch(/not signed by this process's CA/);
    } finally {
      await cluster.close();
    }
    expect(leftovers(emu, cluster)).toEqual([]);
  });

  it('Security.temporary({ token }) through a port-forward: the client verifies the scheduler certificate and presents the token', async () => {
    const security = Security.temporary({ token: TOKEN });
    const cluster = await KubeCluster.start(options(emu, { nWorkers: 2, security, portForward: true }));
    try {
      expect(cluster.connection).toBe('port-forward');
      expect(cluster.schedulerAddress).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
      expect(cluster.dashboardLink).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/status$/);
      expect(await dashboardGet(cluster.dashboardLink, security, '/health')).toMatch(/^200/);
      expect(cluster.security).toBe(security);
      for (const p of emu.list('pods', 'default', `skein.dev/cluster=${cluster.name}`)) expect(JSON.stringify(p)).not.toContain(TOKEN);
      for (const pod of [`${cluster.name}-scheduler`, `${cluster.name}-worker-0`]) {
        const { argv, environ } = processesOf(pod)[0]!;
        expect(argv.join(' ')).not.toContain(TOKEN);
        expect(environ).not.toContain(TOKEN);
        expect(readFileSync(flag(argv, '--auth-token-file'), 'utf8').trim()).toBe(TOKEN);
        expect(statSync(flag(argv, '--auth-token-file')).mode & 0o777).toBe(0o640);
      }
      await using client = await Client.connect(cluster);
      await cluster.waitForWorkers(2, { timeoutMs: 30_000 });
      await compute(client, (await client.schedulerInfo()).workers.map((w) => w.address));

      // The forwarded port reaches the scheduler's TLS port: a client trusting another CA is refused
      // (the certificate is checked although the host is 127.0.0.1), and so is one without the token.
      const otherCa = await Client.connect(cluster.schedulerAddress, { security: Security.temporary({ token: TOKEN }), connectTimeoutMs: 2_000 }).catch((e: unknown) => e);
      expect(otherCa).toBeInstanceOf(CommClosedError);
      expect((otherCa as Error).message).toMatch(/not signed by this process's CA/);
      const noToken = await Client.connect(cluster.schedulerAddress, { security: security.withToken(undefined), connectTimeoutMs: 2_000 }).catch((e: unknown) => e);
      expect(noToken).toBeInstanceOf(UnauthenticatedError);
      expect((noToken as Error).message).toMatch(/requires an auth token/);
    } finally {
      await cluster.close();
    }
    expect(leftovers(emu, cluster)).toEqual([]);
  });
});

async function template(release: string, namespace: string, ...set: string[]): Promise<k8s.KubernetesObject[]> {
  const { stdout } = await promisify(execFile)((helmPath as () => string)(), ['template', release, CHART, '--namespace', namespace, ...set.flatMap((v) => ['--set', v])], { timeout: 30_000 });
  return k8s.loadAllYaml(stdout).filter(Boolean) as k8s.KubernetesObject[];
}

const podSpecOf = (o: k8s.KubernetesObject) => (o as k8s.V1Deployment).spec!.template.spec!;

describe('KubeCluster security options', () => {
  it('refuses security that is not a Security, and security: true for fromName (a new CA the running cluster does not trust)', async () => {
    await expect(KubeCluster.start(options(emu, { security: { tls: true } as unknown as Security }))).rejects.toThrow(/security must be a Security .* or true/);
    await expect(KubeCluster.fromName('some-cluster', { kubeconfig: kubeconfig(emu), security: true })).rejects.toThrow(/cannot take security: true: a new temporary CA would not be trusted/);
  });
});

describe('skein-kubernetes with credential files', () => {
  it('start --tls-ca-file --tls-cert --tls-key: the cluster runs on TLS with those credentials; scale with the same flags; a client with them computes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'skein-kube-tls-'));
    const name = clusterName();
    const kubeconfigFile = emu.writeKubeconfig(join(dir, 'kubeconfig'));
    // Files as a user keeps them: a CA and one certificate for every role.
    const pems = Security.temporary().credentials(['client', 'nanny', 'scheduler', 'worker'])!;
    const files = { caFile: join(dir, 'ca.pem'), certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') };
    writeFileSync(files.caFile, pems.ca, { mode: 0o600 });
    writeFileSync(files.certFile, pems.cert, { mode: 0o600 });
    writeFileSync(files.keyFile, pems.key, { mode: 0o600 });
    const flags = ['--tls-ca-file', files.caFile, '--tls-cert', files.certFile, '--tls-key', files.keyFile];
    const cli = async (...args: string[]) => (await promisify(execFile)(process.execPath, [CLI, ...args], { env: { ...process.env, KUBECONFIG: kubeconfigFile }, timeout: 60_000 })).stdout;
    try {
      const out = await cli('start', '--name', name, '--image', 'skein:test', '--n-workers', '1', '--resource-timeout', '30', ...flags);
      const address = /Scheduler at: +(\S+)/.exec(out)?.[1];
      expect(address).toMatch(/^tls:\/\/127\.43\.\d+\.\d+:8786$/);
      for (const p of emu.list('pods', 'default', `skein.dev/cluster=${name}`)) expect(JSON.stringify(p)).not.toMatch(/PRIVATE KEY/);
      expect(await cli('scale', name, '2', ...flags)).toContain(`Cluster ${name}: 1 → 2 workers`);
      await using client = await Client.connect(address!, { security: Security.fromFiles(files) });
      await until(async () => (await client.schedulerInfo()).workers.length === 2, 20_000, 'two workers');
      await compute(client, (await client.schedulerInfo()).workers.map((w) => w.address));
      // Without the flags, scale says the cluster runs with security and what to pass.
      const err = await cli('scale', name, '1').then(() => 'no error', (e: { stderr: string }) => e.stderr);
      expect(err).toMatch(new RegExp(`Cluster ${name} in namespace default runs with security .*no TLS credentials were given: .*--tls-ca-file, --tls-cert, --tls-key`));
    } finally {
      await cli('close', name);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('charts/skein with security.existingSecret', () => {
  it('renders the Secret as a 0600 volume in every pod, the credential flags, tls:// for the workers, and nothing of it without the value', async () => {
    const objs = (await template('rel', 'default', 'security.existingSecret=rel-tls', 'security.tokenKey=token', 'additionalWorkerGroups[0].name=gpu')).filter((o) => o.kind === 'Deployment');
    expect(objs.map((o) => o.metadata!.name).sort()).toEqual(['rel-skein-scheduler', 'rel-skein-worker', 'rel-skein-worker-gpu']);
    const flags = ['--tls-ca-file', '/etc/skein/credentials/ca.pem', '--tls-cert', '/etc/skein/credentials/cert.pem', '--tls-key', '/etc/skein/credentials/key.pem', '--auth-token-file', '/etc/skein/credentials/token', '--require-encryption'];
    for (const o of objs) {
      const spec = podSpecOf(o);
      const c = spec.containers[0]!;
      expect(c.args!.slice(c.args!.indexOf('--ready-json') + 1)).toEqual(flags);
      expect(c.volumeMounts).toEqual([{ name: 'skein-credentials', mountPath: '/etc/skein/credentials', readOnly: true }]);
      expect(spec.securityContext).toEqual({ fsGroup: 1000 });
      expect(spec.volumes).toEqual([
        {
          name: 'skein-credentials',
          secret: { secretName: 'rel-tls', defaultMode: 0o600, items: [{ key: 'ca.crt', path: 'ca.pem' }, { key: 'tls.crt', path: 'cert.pem' }, { key: 'tls.key', path: 'key.pem' }, { key: 'token', path: 'token' }] },
        },
      ]);
      if (c.name === 'worker') expect(c.args![1]).toBe('tls://rel-skein-scheduler:8786');
    }
    const plain = (await template('rel', 'default')).filter((o) => o.kind === 'Deployment');
    for (const o of plain) {
      const spec = podSpecOf(o);
      expect(spec.volumes).toBeUndefined();
      expect(spec.securityContext).toBeUndefined();
      expect(spec.containers[0]!.volumeMounts).toBeUndefined();
      expect(spec.containers[0]!.args!.join(' ')).not.toMatch(/--tls-|--auth-token|tls:\/\//);
    }
  });

  it('HelmCluster: the chart on TLS from an existing Secret runs a map and a worker-to-worker dependency; a client without credentials is refused', async () => {
    const kc = kubeconfig(emu);
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const apps = kc.makeApiClient(k8s.AppsV1Api);
    const ns = 'helm-tls';
    await core.createNamespace({ body: { metadata: { name: ns } } });
    // What cert-manager or kubectl would put there: a CA and one certificate for every cluster role.
    const security = Security.temporary({ token: TOKEN });
    const pems = security.credentials(['scheduler', 'worker', 'nanny'])!;
    await core.createNamespacedSecret({ namespace: ns, body: { metadata: { name: 'rel-tls' }, stringData: { 'ca.crt': pems.ca, 'tls.crt': pems.cert, 'tls.key': pems.key, token: `${TOKEN}\n` } } });
    for (const o of await template('rel', ns, 'image.repository=skein', 'image.tag=test', 'worker.replicas=2', 'worker.terminationGracePeriodSeconds=2', 'security.existingSecret=rel-tls', 'security.tokenKey=token')) {
      if (o.kind === 'Deployment') await apps.createNamespacedDeployment({ namespace: ns, body: o as k8s.V1Deployment });
      else if (o.kind === 'Service') await core.createNamespacedService({ namespace: ns, body: o as k8s.V1Service });
      else throw new Error(`unexpected kind ${o.kind}`);
    }
    try {
      await using cluster = await HelmCluster.connect({ releaseName: 'rel', namespace: ns, kubeconfig: kc, resourceTimeoutMs: 30_000, security });
      expect(cluster.schedulerAddress).toMatch(/^tls:\/\//);
      expect(cluster.dashboardLink).toMatch(/^https:\/\//);
      await cluster.waitForWorkers(2);
      await using client = await Client.connect(cluster);
      const workers = (await client.schedulerInfo()).workers.map((w) => w.address);
      for (const w of workers) expect(w).toMatch(/^tls:\/\//);
      await compute(client, workers);
      const noCreds = await Client.connect(cluster.schedulerAddress.replace('tls://', 'tcp://'), { security: Security.insecure(), connectTimeoutMs: 2_000 }).catch((e: unknown) => e);
      expect(noCreds).toBeInstanceOf(CommClosedError);
      expect((noCreds as Error).message).toMatch(/TLS/);
    } finally {
      await core.deleteNamespace({ name: ns });
    }
  });
});

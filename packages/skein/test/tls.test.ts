import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, registered } from '@skein/client';
import { CommClosedError, Security, readSchedulerFile } from '@skein/common';
import { WorkerServiceClient, type GetStatusResponse } from '@skein/protocol';
import { Worker } from '@skein/core-worker';
import { deployerConformance, type DeployerUnderTest } from '@skein/cluster/testing';
import { LocalCluster } from '../src/index.js';
import { REPO, SKEIN_BIN, readyOf, startProcess, until, type Proc } from './helpers.js';

/** A worker's GetStatus, over the cluster's TLS (its bulk counters say how values moved). */
function workerStatus(security: Security, address: string): Promise<GetStatusResponse> {
  const dial = security.dial(address, 'client', 'worker');
  const stub = new WorkerServiceClient(dial.target, dial.credentials, dial.options);
  return new Promise<GetStatusResponse>((resolve, reject) =>
    stub.getStatus({}, (err, res) => {
      stub.close();
      if (err) reject(err);
      else resolve(res);
    }),
  ).finally(() => stub.close());
}

/** Writes a Security's credentials for `role` as files, as a deployer would (mode 0600). */
function filesOf(security: Security, role: Parameters<Security['launchFiles']>[0], dir: string): string[] {
  const { files, args } = security.launchFiles(role, dir);
  for (const f of files) writeFileSync(f.path, f.contents, { mode: f.mode });
  return args;
}

// Level 3: a LocalCluster of worker processes (under nannies in this process) on mutual TLS.
describe('LocalCluster with Security.temporary()', () => {
  let cluster: LocalCluster;
  let client: Client;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 1, memoryLimit: '1GB', security: true });
    client = await Client.connect(cluster);
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it('runs a map and gathers over TLS; every address is tls://', async () => {
    expect(cluster.security.tls).toBe(true);
    expect(cluster.schedulerAddress).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    const xs = Array.from({ length: 500 }, (_, i) => i);
    expect(await client.gather(client.map((x: number) => x * x, xs))).toEqual(xs.map((x) => x * x));
    const info = await client.schedulerInfo();
    expect(info.workers).toHaveLength(2);
    for (const w of info.workers) expect(w.address).toMatch(/^tls:\/\//);
  });

  it('moves a large value between workers over the encrypted bulk path', async () => {
    const [a, b] = [...cluster.workers.values()].map((w) => w.address);
    const before = await workerStatus(cluster.security, b!);
    // 8 MB: over the bulk path's 1 MiB threshold, two encrypted frames
    const big = client.submitWith({ workers: [a!], pure: false }, (n: number) => {
      const buf = Buffer.alloc(n);
      for (let i = 0; i < n; i += 4096) buf[i] = i % 251;
      return buf;
    }, 8_000_000);
    const sum = client.submitWith({ workers: [b!], allowOtherWorkers: false }, (buf: Buffer) => {
      let s = 0;
      for (let i = 0; i < buf.length; i += 4096) s += buf[i]!;
      return [buf.length, s];
    }, big);
    let expected = 0;
    for (let i = 0; i < 8_000_000; i += 4096) expected += i % 251;
    expect(await sum.result()).toEqual([8_000_000, expected]);
    const after = await workerStatus(cluster.security, b!);
    expect(Number(after.bulkFetchedEncrypted) - Number(before.bulkFetchedEncrypted)).toBe(1);
    expect(Number(after.bulkFetched) - Number(before.bulkFetched)).toBe(1);
    // and the value comes back to the client intact
    const got = (await big.result()) as Buffer;
    expect(got.length).toBe(8_000_000);
  });

  it('gives the worker processes their credentials as private files, never in argv or the environment', async () => {
    for (const w of cluster.workers.values()) {
      const cmdline = readFileSync(`/proc/${w.pid}/cmdline`, 'utf8').split('\0');
      const environ = readFileSync(`/proc/${w.pid}/environ`, 'utf8');
      expect(cmdline.join(' ')).not.toMatch(/PRIVATE KEY/);
      expect(environ).not.toMatch(/PRIVATE KEY|SKEIN_AUTH_TOKEN|SKEIN_TLS_/);
      const key = cmdline[cmdline.indexOf('--tls-key') + 1]!;
      expect(cmdline.indexOf('--tls-key')).toBeGreaterThan(0);
      expect(statSync(key).mode & 0o777).toBe(0o600);
      const dir = join(key, '..');
      expect(statSync(dir).mode & 0o777).toBe(0o700);
      expect(readdirSync(dir).sort()).toEqual(['ca.pem', 'worker-key.pem', 'worker.pem']);
    }
  });

  it('serves the dashboard over HTTPS with the scheduler certificate (no client certificate needed)', async () => {
    const link = cluster.dashboardLink;
    expect(link).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/status$/);
    const ca = cluster.security.credentials('client')!.ca;
    const body = await new Promise<string>((resolve, reject) => {
      httpsGet(link.replace('/status', '/health'), { ca, servername: 'localhost' }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve(`${res.statusCode} ${text}`));
      }).on('error', reject);
    });
    expect(body).toMatch(/^200/);
  });

  it('refuses a client without certificates with an error that says TLS is required and how to pass credentials', async () => {
    const plain = cluster.schedulerAddress.replace('tls://', 'tcp://');
    const err = await Client.connect(plain, { security: Security.insecure(), connectTimeoutMs: 1500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommClosedError);
    expect((err as Error).message).toMatch(/TLS/);
    expect((err as Error).message).toMatch(/--tls-ca-file/);
  });

  it('refuses a worker without certificates at its start, saying TLS is required', async () => {
    const plain = cluster.schedulerAddress.replace('tls://', 'tcp://');
    const err = await Worker.start({ scheduler: plain, host: '127.0.0.1', connectTimeoutMs: 1500, memoryLimit: '1GB' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommClosedError);
    expect((err as Error).message).toMatch(/requires TLS.*--tls-ca-file/);
  });

  it('refuses a client whose certificate comes from another CA, saying so', async () => {
    const err = await Client.connect(cluster.schedulerAddress, { security: Security.temporary(), connectTimeoutMs: 1500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommClosedError);
    expect((err as Error).message).toMatch(/TLS certificate is not signed by this process's CA.*--tls-ca-file/);
  });

  it('refuses a client with TLS credentials at a plaintext scheduler, saying the scheduler does not speak TLS', async () => {
    await using plain = await LocalCluster.start({ nWorkers: 0 });
    const addr = plain.schedulerAddress.replace('tcp://', 'tls://');
    const err = await Client.connect(addr, { security: cluster.security, connectTimeoutMs: 1500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommClosedError);
    expect((err as Error).message).toMatch(/does not speak TLS|may not speak TLS/);
  });
});

describe('LocalCluster with security: worker processes without a nanny, and removal of the credential files', () => {
  it('computes with bare worker processes on TLS and removes their credential files at close', async () => {
    const cluster = await LocalCluster.start({ nWorkers: 1, nanny: false, memoryLimit: '1GB', security: Security.temporary() });
    let keyFile = '';
    try {
      await using client = await Client.connect(cluster);
      expect(await client.submit((x: number) => x + 1, 1).result()).toBe(2);
      const w = [...cluster.workers.values()][0]!;
      const cmdline = readFileSync(`/proc/${w.pid}/cmdline`, 'utf8').split('\0');
      keyFile = cmdline[cmdline.indexOf('--tls-key') + 1]!;
      expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    } finally {
      await cluster.close();
    }
    expect(() => statSync(keyFile)).toThrow(/ENOENT/);
  });
});

// Level 3: the real `skein` command with TLS files and a token, as on several machines.
describe('skein scheduler + skein worker + a client with TLS files', () => {
  const procs: Proc[] = [];
  let dir: string;
  let security: Security;
  let schedulerArgs: string[];
  let address: string;
  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
  });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'skein-tls-cli-'));
    security = Security.temporary({ token: 'a-token-of-this-cluster-0123456789' });
    schedulerArgs = filesOf(security, 'scheduler', join(dir));
  });

  it('computes; the scheduler file, banner and ready lines carry tls:// and say TLS is on', async () => {
    const schedulerFile = join(dir, 'scheduler.json');
    const scheduler = startProcess([SKEIN_BIN, 'scheduler', '--host', '127.0.0.1', '--port', '0', '--dashboard-address', ':0', '--scheduler-file', schedulerFile, '--ready-json', ...schedulerArgs]);
    procs.push(scheduler);
    const ready = await readyOf(scheduler);
    address = ready.address;
    expect(address).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
    expect(ready).toMatchObject({ role: 'scheduler', tls: true });
    expect((ready as { dashboard: string }).dashboard).toMatch(/^https:\/\//);
    expect(scheduler.stdout).toContain(`Scheduler at:   ${address}`);
    expect(scheduler.stdout.some((l) => /^dashboard at: +https:\/\//.test(l))).toBe(true);
    expect(readSchedulerFile(schedulerFile)?.address).toBe(address);

    // one worker under a nanny (one certificate for both roles), one without, from the scheduler file
    const wdir = join(dir, 'w0');
    const nannyArgs = filesOf(security, ['worker', 'nanny'], (mkdirP(wdir), wdir));
    const bareDir = join(dir, 'w1');
    const bareArgs = filesOf(security, 'worker', (mkdirP(bareDir), bareDir));
    const workers = [
      startProcess([SKEIN_BIN, 'worker', '--scheduler-file', schedulerFile, '--host', '127.0.0.1', '--name', 'tls-0', '--module', `${REPO}examples/tasks/tasks.mjs`, '--ready-json', ...nannyArgs]),
      startProcess([SKEIN_BIN, 'worker', address, '--no-nanny', '--host', '127.0.0.1', '--name', 'tls-1', '--module', `${REPO}examples/tasks/tasks.mjs`, '--ready-json', ...bareArgs]),
    ];
    procs.push(...workers);
    for (const w of workers) {
      const r = await readyOf(w);
      expect(r).toMatchObject({ role: 'worker', scheduler: address, tls: true });
      expect(r.address).toMatch(/^tls:\/\//);
    }
    const clientSecurity = Security.fromFiles({ ...filesFor(security, 'client', dir), tokenFile: join(dir, 'token') });
    await using client = await Client.connect(address, { security: clientSecurity });
    const inc = registered<[number], number>('inc');
    const add = registered<[number, number], number>('add');
    expect(await client.submit(add, client.submit(inc, 1), client.submit(inc, 2)).result()).toBe(5);
    expect(await client.gather(client.map(inc, [10, 20, 30]))).toEqual([11, 21, 31]);
    // a large value from the worker under a nanny to the bare one: the encrypted bulk path
    const big = client.submitWith({ workers: ['tls-0'], pure: false }, (n: number) => Buffer.alloc(n, 3), 3_000_000);
    const len = client.submitWith({ workers: ['tls-1'], allowOtherWorkers: false }, (b: Buffer) => b.length + b[b.length - 1]!, big);
    expect(await len.result()).toBe(3_000_003);
  });

  it('refuses partial or unreadable credential sets at start, naming the flag', async () => {
    const partial = startProcess([SKEIN_BIN, 'scheduler', '--port', '0', '--tls-cert', join(dir, 'scheduler.pem')]);
    expect(await partial.exited).toBe(2);
    expect(partial.stderr.join('\n')).toMatch(/missing: --tls-ca-file.*--tls-key/);
    const unreadable = startProcess([SKEIN_BIN, 'worker', address, '--tls-ca-file', join(dir, 'nope.pem'), '--tls-cert', join(dir, 'scheduler.pem'), '--tls-key', join(dir, 'scheduler-key.pem')]);
    expect(await unreadable.exited).not.toBe(0);
    expect(unreadable.stderr.join('\n')).toMatch(/Cannot read the CA file .*nope\.pem.*--tls-ca-file/);
    const bare = startProcess([SKEIN_BIN, 'worker', '--no-nanny', address, '--tls-key', join(dir, 'scheduler-key.pem')]);
    expect(await bare.exited).toBe(1);
    expect(bare.stderr.join('\n')).toMatch(/missing: --tls-ca-file/);
  });

  it('takes the credentials from the environment (SKEIN_TLS_*, SKEIN_AUTH_TOKEN) when no flag is given', async () => {
    const f = filesFor(security, 'worker', dir);
    filesOf(security, 'worker', dir);
    const w = startProcess([SKEIN_BIN, 'worker', address, '--no-nanny', '--host', '127.0.0.1', '--name', 'tls-env', '--ready-json'], {
      SKEIN_TLS_CA_FILE: f.caFile,
      SKEIN_TLS_CERT: f.certFile,
      SKEIN_TLS_KEY: f.keyFile,
      SKEIN_AUTH_TOKEN: 'a-token-of-this-cluster-0123456789',
    });
    procs.push(w);
    expect(await readyOf(w)).toMatchObject({ role: 'worker', tls: true });
    await until(async () => {
      await using c = await Client.connect(address, { security: Security.fromFiles({ ...filesFor(security, 'client', dir), tokenFile: join(dir, 'token') }) });
      return (await c.schedulerInfo()).workers.some((x) => x.name === 'tls-env');
    });
  });
});

function mkdirP(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** The file paths `launchFiles(role, dir)` names (written by `filesOf`). */
function filesFor(security: Security, role: Parameters<Security['launchFiles']>[0], dir: string): { caFile: string; certFile: string; keyFile: string } {
  const { files } = security.launchFiles(role, dir);
  const stem = typeof role === 'string' ? role : [...role].sort().join('-');
  const path = (name: string) => files.find((f) => f.path.endsWith(`/${name}`))!.path;
  const caFile = path('ca.pem');
  const certFile = path(`${stem}.pem`);
  const keyFile = path(`${stem}-key.pem`);
  for (const f of files) writeFileSync(f.path, f.contents, { mode: f.mode });
  return { caFile, certFile, keyFile };
}

/** Live child processes of this test process (LocalCluster's workers are its children), described. */
function liveChildren(): string[] {
  const out: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const [, state, ppid] = /\) (\S) (\d+)/.exec(readFileSync(`/proc/${entry}/stat`, 'latin1')) ?? [];
      if (Number(ppid) !== process.pid || state === 'Z') continue;
      out.push(`process ${entry}: ${readFileSync(`/proc/${entry}/cmdline`, 'latin1').replace(/\0/g, ' ').trim()}`);
    } catch {
      // gone
    }
  }
  return out;
}

const HANGING_MODULE = join(mkdtempSync(join(tmpdir(), 'skein-tls-conformance-')), 'hangs.mjs');
writeFileSync(HANGING_MODULE, 'setInterval(() => {}, 1 << 30);\nawait new Promise(() => {});\n');

const localTls: DeployerUnderTest<LocalCluster> = {
  start: (nWorkers) => LocalCluster.start({ nWorkers, memoryLimit: '1GB', security: true }),
  kill: (cluster, name) => {
    process.kill(cluster.workers.get(name)!.pid, 'SIGKILL');
  },
  leftovers: () => liveChildren(),
  async burst(cluster, tasks, taskMs) {
    await using client = await Client.connect(cluster);
    const futures = client.map(
      async (x: number, ms: number) => {
        await new Promise((r) => setTimeout(r, ms));
        return x;
      },
      Array.from({ length: tasks }, (_, i) => i),
      Array.from({ length: tasks }, () => taskMs),
    );
    await client.gather(futures);
  },
  startBroken: () => LocalCluster.start({ nWorkers: 1, memoryLimit: '1GB', security: true, modules: ['/nonexistent/skein-conformance.mjs'] }),
  startNeverReady: (timeoutMs) => LocalCluster.start({ nWorkers: 0, memoryLimit: '1GB', security: true, modules: [HANGING_MODULE], workerStartTimeoutMs: timeoutMs }),
  startTimeoutMs: 20_000,
};

describe('LocalCluster with TLS: deployer conformance', () => {
  for (const c of deployerConformance(localTls)) it(c.name, c.run, c.timeoutMs);
});

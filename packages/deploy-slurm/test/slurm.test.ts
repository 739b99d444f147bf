import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@skein/client';
import { CommClosedError, Security, parseReadyLine } from '@skein/common';
import { SchedulerAdmin } from '@skein/cluster';
import { deployerConformance, type DeployerUnderTest } from '@skein/cluster/testing';
import { InvalidQueueError, ResourceRequestError, SLURMCluster, type SLURMClusterOptions } from '../src/index.js';
import { SKEIN_COMMAND, SLURM_BIN, liveJobs, squeue, startSlurm, stopSlurm, until } from './helpers.js';

// Level 3: a real single-node Slurm (tools/slurm-local.sh: munge, slurmctld, slurmd from Debian's
// packages), whose node offers 4 CPUs. Jobs are small: 1 CPU, 400 MB, 5 minutes.
let root: string;

function options(overrides: Partial<SLURMClusterOptions> = {}): SLURMClusterOptions {
  return {
    cores: 1,
    memory: '400MB',
    queue: 'cpu',
    walltime: '00:05:00',
    skeinCommand: SKEIN_COMMAND,
    sharedDirectory: root,
    pollIntervalMs: 200,
    deathTimeout: 15,
    schedulerOptions: { host: '127.0.0.1', dashboardAddress: null },
    env: { SKEIN_LOG_LEVEL: 'warn' },
    ...overrides,
  };
}

const sleepMap = (client: Client, n: number, ms: number) =>
  client.map(
    async (x: number, wait: number) => {
      await new Promise((r) => setTimeout(r, wait));
      return x * 3;
    },
    Array.from({ length: n }, (_, i) => i),
    Array.from({ length: n }, () => ms),
  );

beforeAll(() => {
  startSlurm();
  root = mkdtempSync(join(tmpdir(), 'skein-slurm-test-'));
}, 300_000);

afterAll(() => {
  stopSlurm();
  rmSync(root, { recursive: true, force: true });
});

describe('SLURMCluster on a real Slurm', () => {
  it('scales to 3 jobs and computes a map; Slurm runs exactly jobScript(); close() leaves no job', async () => {
    const cluster = await SLURMCluster.start(options());
    try {
      await cluster.scale({ jobs: 3 });
      expect(cluster.workerCounts).toMatchObject({ planned: 3, requested: 3 });
      await cluster.waitForWorkers(3, { timeoutMs: 60_000 });
      await using client = await Client.connect(cluster);
      const xs = Array.from({ length: 100 }, (_, i) => i);
      expect(await client.gather(client.map((x: number) => x * x, xs))).toEqual(xs.map((x) => x * x));
      const workers = (await client.schedulerInfo()).workers;
      expect(workers.map((w) => w.name).sort()).toEqual(['slurm-0', 'slurm-1', 'slurm-2']);
      for (const w of workers) expect(w).toMatchObject({ nthreads: 1, memoryLimit: 4e8 });
      // What Slurm holds for the job is the script jobScript() shows.
      const id = cluster.jobIds.get('slurm-0')!;
      expect(execFileSync('scontrol', ['write', 'batch_script', id, '-'], { encoding: 'utf8' })).toBe(cluster.jobScript('slurm-0'));
      expect(cluster.jobScript('slurm-0')).toContain(`--name slurm-0 --nthreads 1 --memory-limit 400MB --death-timeout 15`);
      expect([...squeue([id]).values()][0]?.state).toBe('RUNNING');
      await until(() => cluster.logs()['slurm-0']!.some((l) => l.includes('Registered to')), 10_000, "the job's output in logs()");
    } finally {
      await cluster.close();
    }
    expect(cluster.submittedJobIds).toHaveLength(3);
    await until(() => liveJobs(cluster.submittedJobIds).length === 0, 30_000, 'no job of the cluster in squeue');
  });

  it('runs processes workers per job, named after the job, with cores / processes threads and memory / processes each', async () => {
    await using cluster = await SLURMCluster.start(options({ cores: 2, memory: '800MB', processes: 2 }));
    await cluster.scale(4);
    expect(cluster.workerCounts.planned).toBe(4);
    await cluster.waitForWorkers(4, { timeoutMs: 60_000 });
    expect(cluster.jobIds.size).toBe(2);
    await using client = await Client.connect(cluster);
    const workers = (await client.schedulerInfo()).workers;
    expect(workers.map((w) => w.name).sort()).toEqual(['slurm-0-0', 'slurm-0-1', 'slurm-1-0', 'slurm-1-1']);
    for (const w of workers) expect(w).toMatchObject({ nthreads: 1, memoryLimit: 4e8 });
    expect(await client.submit((a: number) => a + 1, 41).result()).toBe(42);
    // adapt in jobs: bounds of 1 to 3 jobs are 2 to 6 workers.
    const adaptive = cluster.adapt({ minimumJobs: 1, maximumJobs: 3, intervalMs: 60_000 });
    expect(adaptive.options).toMatchObject({ minimum: 2, maximum: 6 });
    await adaptive.stop();
  });

  it('shows jobs beyond the node as pending with Slurm\'s reason, and starts them when room frees', async () => {
    await using cluster = await SLURMCluster.start(options());
    await cluster.scale(5); // the node has 4 CPUs: one job of 1 CPU must wait
    await cluster.waitForWorkers(4, { timeoutMs: 60_000 });
    await until(() => /pending in Slurm \(job \d+: (Resources|Priority)\)/.test(cluster.workerStatus().pending[0]?.reason ?? ''), 20_000, "the fifth job's pending reason");
    const st = cluster.workerStatus();
    expect(st.running).toHaveLength(4);
    expect(st.pending).toHaveLength(1);
    const waiting = st.pending[0]!;
    const waitingId = cluster.jobIds.get(waiting.name)!;
    expect(squeue([waitingId]).get(waitingId)?.state).toBe('PENDING');
    // Room frees: a running job retires, the pending one runs.
    await cluster.retireWorkers([st.running[0]!.name]);
    await cluster.scale(5);
    await cluster.waitForWorkers(4, { timeoutMs: 60_000 });
    await until(() => cluster.workers.has(waiting.name), 30_000, `${waiting.name} to run once a CPU is free`);
    expect(squeue([waitingId]).get(waitingId)?.state).toBe('RUNNING');
  });

  it('loses no result when a job is scancelled mid-computation, and replaces the job', async () => {
    await using cluster = await SLURMCluster.start(options({ nWorkers: 2 }));
    await using client = await Client.connect(cluster);
    const futures = sleepMap(client, 30, 200);
    await Promise.all(futures.slice(0, 4).map((f) => f.result()));
    const victim = cluster.jobIds.get('slurm-1')!;
    execFileSync('scancel', [victim]);
    expect(await client.gather(futures)).toEqual(Array.from({ length: 30 }, (_, i) => i * 3));
    await until(() => cluster.jobIds.has('slurm-1') && cluster.jobIds.get('slurm-1') !== victim, 30_000, 'a new job for slurm-1');
    await cluster.waitForWorkers(2, { timeoutMs: 60_000 });
    expect(squeue([victim]).get(victim)?.state ?? 'gone').toMatch(/CANCELLED|gone/);
  });

  it('close() cancels every job it submitted, pending ones too', async () => {
    const cluster = await SLURMCluster.start(options());
    await cluster.scale(6);
    await until(() => cluster.jobIds.size === 6 && cluster.workerStatus().pending.some((p) => /Resources|Priority/.test(p.reason)), 30_000, '6 jobs, some pending');
    expect(liveJobs(cluster.submittedJobIds)).toHaveLength(6);
    await cluster.close();
    expect(liveJobs(cluster.submittedJobIds)).toEqual([]);
    expect(cluster.submittedJobIds).toHaveLength(6);
  });

  it("returns a bad queue and an over-limit memory request as typed errors with Slurm's own message", async () => {
    const queue = await SLURMCluster.start(options({ queue: 'no-such-partition', nWorkers: 1 })).catch((e: unknown) => e);
    expect(queue).toBeInstanceOf(InvalidQueueError);
    expect((queue as InvalidQueueError).code).toBe('invalid_argument');
    expect((queue as InvalidQueueError).queue).toBe('no-such-partition');
    expect((queue as Error).message).toMatch(/Slurm refused the job .*invalid partition specified: no-such-partition.*`sinfo -s`/s);
    const memory = await SLURMCluster.start(options({ memory: '100TB', nWorkers: 1 })).catch((e: unknown) => e);
    expect(memory).toBeInstanceOf(ResourceRequestError);
    expect((memory as ResourceRequestError).code).toBe('resource_exhausted');
    expect((memory as ResourceRequestError).systemMessage).toMatch(/Memory specification can not be satisfied/);
    expect((memory as Error).message).toMatch(/asked for 1 CPUs and 93133G of memory per job/);
  });
});

/** The private file a flag of a process names: mode 0600 in a 0700 directory. */
function privateFileOf(argv: readonly string[], flag: string): string {
  const i = argv.indexOf(flag);
  expect(i, `${flag} in ${argv.join(' ')}`).toBeGreaterThan(0);
  const file = argv[i + 1]!;
  expect(statSync(file).mode & 0o777).toBe(0o600);
  expect(statSync(dirname(file)).mode & 0o777).toBe(0o700);
  return file;
}

/**
 * Each job's worker process and its nanny (the job's `skein worker`): their credentials are in
 * private files the flags name, never in argv or the environment; nor in what Slurm holds of the
 * job (its batch script, `scontrol show job`).
 */
async function checkJobCredentials(cluster: SLURMCluster, client: Client, secrets: readonly string[], flags: readonly string[]): Promise<void> {
  const leaks = (text: string) => [
    ...[/PRIVATE KEY/, /SKEIN_AUTH_TOKEN|SKEIN_TLS_/].filter((r) => r.test(text)).map(String),
    ...secrets.filter((s) => text.includes(s)),
  ];
  const workers = (await client.schedulerInfo()).workers;
  expect(workers).toHaveLength(2);
  for (const w of workers) {
    const ppid = Number(readFileSync(`/proc/${w.pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[1]);
    for (const pid of [w.pid, ppid]) {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      expect(leaks(argv.join(' ')), `argv of ${pid}`).toEqual([]);
      expect(leaks(readFileSync(`/proc/${pid}/environ`, 'utf8')), `environment of ${pid}`).toEqual([]);
      for (const f of flags) privateFileOf(argv, f);
    }
    // The nanny runs the job's `skein worker`: it is a process of the Slurm job.
    expect(readFileSync(`/proc/${ppid}/environ`, 'utf8').split('\0')).toContain(`SLURM_JOB_ID=${cluster.jobIds.get(w.name)}`);
    const id = cluster.jobIds.get(w.name)!;
    const script = execFileSync('scontrol', ['write', 'batch_script', id, '-'], { encoding: 'utf8' });
    expect(script).toBe(cluster.jobScript(w.name));
    for (const f of flags) expect(script).toContain(`${f} ${join(cluster.directory, 'security', 'worker')}/`);
    expect(leaks(script), 'the batch script').toEqual([]);
    expect(leaks(execFileSync('scontrol', ['show', 'job', id], { encoding: 'utf8' })), 'scontrol show job').toEqual([]);
  }
}

/** The pids of this user's processes whose command line mentions `text`. */
function processesNaming(text: string): number[] {
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(text)) pids.push(Number(d));
    } catch {
      // gone, or not ours
    }
  }
  return pids;
}

/** Two tasks on different workers, the second needing the first's result (a worker-to-worker fetch). */
async function crossWorkerTask(client: Client): Promise<number> {
  const [a, b] = (await client.schedulerInfo()).workers.map((w) => w.address);
  const x = client.submitWith({ workers: [a!], allowOtherWorkers: false, pure: false }, (n: number) => n + 1, 20);
  const y = client.submitWith({ workers: [b!], allowOtherWorkers: false }, (v: number) => v * 2, x);
  return (await y.result()) as number;
}

describe('SLURMCluster with security', () => {
  it('security: true (Security.temporary()): 2 jobs compute over mutual TLS; a client without the credentials is refused; keys only in private files', async () => {
    const cluster = await SLURMCluster.start(options({ security: true }));
    const security = join(cluster.directory, 'security');
    try {
      expect(cluster.security.tls).toBe(true);
      expect(cluster.schedulerAddress).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
      await cluster.scale({ jobs: 2 });
      await cluster.waitForWorkers(2, { timeoutMs: 60_000 });
      await using client = await Client.connect(cluster); // with cluster.security
      const xs = Array.from({ length: 50 }, (_, i) => i);
      expect(await client.gather(client.map((x: number) => x * x, xs))).toEqual(xs.map((x) => x * x));
      expect(await crossWorkerTask(client)).toBe(42);
      const workers = (await client.schedulerInfo()).workers;
      for (const w of workers) expect(w.address).toMatch(/^tls:\/\//);
      // Without certificates, or with another CA's, the scheduler refuses the client.
      const plain = await Client.connect(cluster.schedulerAddress.replace('tls://', 'tcp://'), { security: Security.insecure(), connectTimeoutMs: 1500 }).catch((e: unknown) => e);
      expect(plain).toBeInstanceOf(CommClosedError);
      expect((plain as Error).message).toMatch(/TLS.*--tls-ca-file/s);
      const stranger = await Client.connect(cluster.schedulerAddress, { security: Security.temporary(), connectTimeoutMs: 1500 }).catch((e: unknown) => e);
      expect(stranger).toBeInstanceOf(CommClosedError);
      expect((stranger as Error).message).toMatch(/not signed by this process's CA/);
      // The keys: the scheduler's and the jobs' in private files, named by flags, nowhere else.
      const pem = cluster.security.credentials('client')!.key.split('\n')[1]!.slice(0, 40);
      await checkJobCredentials(cluster, client, [pem], ['--tls-ca-file', '--tls-cert', '--tls-key']);
      expect(statSync(security).mode & 0o777).toBe(0o700);
      expect(readdirSync(join(security, 'worker')).sort()).toEqual(['ca.pem', 'nanny-worker-key.pem', 'nanny-worker.pem']);
      expect(readdirSync(join(security, 'scheduler')).sort()).toEqual(['ca.pem', 'scheduler-key.pem', 'scheduler.pem']);
      // The scheduler, a child process here: the one `skein scheduler` with this cluster's files.
      // (the /bin/sh that started it, and its watcher, name the same files)
      const schedulers = processesNaming(join(security, 'scheduler')).filter((pid) => !readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('/bin/sh'));
      expect(schedulers).toHaveLength(1);
      const scheduler = schedulers[0]!;
      const schedulerArgv = readFileSync(`/proc/${scheduler}/cmdline`, 'utf8').split('\0');
      expect(schedulerArgv).toContain('scheduler');
      expect(schedulerArgv.join(' ')).not.toContain(pem);
      expect(schedulerArgv).toContain('--require-encryption');
      expect(privateFileOf(schedulerArgv, '--tls-key')).toBe(join(security, 'scheduler', 'scheduler-key.pem'));
      expect(readFileSync(`/proc/${scheduler}/environ`, 'utf8')).not.toMatch(/PRIVATE KEY|SKEIN_TLS_/);
    } finally {
      await cluster.close();
    }
    expect(existsSync(security)).toBe(false); // the credentials go with the cluster
    await until(() => liveJobs(cluster.submittedJobIds).length === 0, 30_000, 'no job of the cluster in squeue');
  });

  it('Security.fromToken: 2 jobs compute with the token; a client without it or with another is refused; the token only in private files', async () => {
    const token = `tok-${Date.now()}-s3cr3t-slurm`;
    await using cluster = await SLURMCluster.start(options({ security: Security.fromToken(token), nWorkers: 2 }));
    expect(cluster.schedulerAddress).toMatch(/^tcp:\/\//);
    await using client = await Client.connect(cluster);
    expect(await client.gather(client.map((x: number) => x + 1, [1, 2, 3]))).toEqual([2, 3, 4]);
    expect(await crossWorkerTask(client)).toBe(42);
    const none = await Client.connect(cluster.schedulerAddress, { security: Security.insecure(), connectTimeoutMs: 5_000 }).catch((e: unknown) => e);
    expect((none as Error).message).toMatch(/requires an auth token and none was presented/);
    const wrong = await Client.connect(cluster.schedulerAddress, { security: Security.fromToken('not-the-token-0123456789'), connectTimeoutMs: 5_000 }).catch((e: unknown) => e);
    expect((wrong as Error).message).toMatch(/the auth token presented is not this cluster's/);
    await checkJobCredentials(cluster, client, [token], ['--auth-token-file']);
    const file = join(cluster.directory, 'security', 'worker', 'token');
    expect(readFileSync(file, 'utf8')).toBe(`${token}\n`);
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });
});

describe('SlurmRunner inside srun', () => {
  it('srun -n 4: rank 0 the scheduler, rank 1 the client, 2 workers; computes a map and every task exits 0', async () => {
    const dir = mkdtempSync(join(root, 'runner-'));
    const app = join(dir, 'app.mjs');
    const index = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    const client = fileURLToPath(new URL('../../client/dist/index.js', import.meta.url));
    writeFileSync(
      app,
      `import { SlurmRunner } from ${JSON.stringify(index)};
import { Client } from ${JSON.stringify(client)};
const runner = await SlurmRunner.start({ schedulerFile: ${JSON.stringify(join(dir, 'scheduler-{jobId}.json'))}, skeinCommand: ${JSON.stringify(SKEIN_COMMAND)},
  schedulerOptions: { dashboardAddress: null }, workerOptions: { deathTimeoutMs: 15000 } });
const client = await Client.connect(runner);
await runner.waitForWorkers();
const names = (await client.schedulerInfo()).workers.map((w) => w.name).sort();
const out = await client.gather(client.map((x) => x + 1, [1, 2, 3, 4, 5]));
console.log('RESULT ' + JSON.stringify({ rank: runner.rank, names, out, jobId: runner.jobId }));
await client.close();
await runner.close();
`,
    );
    const child = spawn('srun', ['-n', '4', '-p', 'cpu', '--mem-per-cpu=300M', '-t', '00:05:00', '-J', 'skein-runner-test', process.execPath, app], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SKEIN_LOG_LEVEL: 'warn' },
    });
    const lines: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
    createInterface({ input: child.stderr! }).on('line', (l) => lines.push(l));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(code, lines.join('\n')).toBe(0);
    const result = lines.find((l) => l.startsWith('RESULT '));
    expect(result, lines.join('\n')).toBeDefined();
    const r = JSON.parse(result!.slice(7)) as { rank: number; names: string[]; out: number[]; jobId: string };
    expect(r).toEqual({ rank: 1, names: [`${r.jobId}-2`, `${r.jobId}-3`], out: [2, 3, 4, 5, 6], jobId: r.jobId });
  }, 90_000);

  it('srun -n 4 with the same Security.fromFiles in every task: TLS and a token on every link, each rank its own private files, none left', async () => {
    const dir = mkdtempSync(join(root, 'runner-tls-'));
    // The credentials every task reads: one certificate for every role, a CA, a token (as a site would issue them).
    const issued = Security.temporary({ token: `runner-token-${Date.now()}-0123456789` });
    const given = join(dir, 'given');
    mkdirSync(given, { mode: 0o700 });
    const { files } = issued.launchFiles(['client', 'nanny', 'scheduler', 'worker'], given);
    for (const f of files) writeFileSync(f.path, f.contents, { mode: f.mode });
    const [caFile, certFile, keyFile, tokenFile] = files.map((f) => f.path);
    const app = join(dir, 'app.mjs');
    const index = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    const client = fileURLToPath(new URL('../../client/dist/index.js', import.meta.url));
    const common = fileURLToPath(new URL('../../common/dist/index.js', import.meta.url));
    writeFileSync(
      app,
      `import { readFileSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { SlurmRunner } from ${JSON.stringify(index)};
import { Client } from ${JSON.stringify(client)};
import { Security } from ${JSON.stringify(common)};
const security = Security.fromFiles(${JSON.stringify({ caFile, certFile, keyFile, tokenFile, requireEncryption: true })});
const runner = await SlurmRunner.start({ schedulerFile: ${JSON.stringify(join(dir, 'scheduler-{jobId}.json'))}, skeinCommand: ${JSON.stringify(SKEIN_COMMAND)},
  schedulerOptions: { dashboardAddress: null }, workerOptions: { deathTimeoutMs: 15000 }, security });
const client = await Client.connect(runner);
await runner.waitForWorkers();
const workers = (await client.schedulerInfo()).workers;
const out = await client.gather(client.map((x) => x + 1, [1, 2, 3, 4, 5]));
const [a, b] = workers.map((w) => w.address);
const x = client.submitWith({ workers: [a], allowOtherWorkers: false, pure: false }, (n) => n + 1, 20);
const dep = await client.submitWith({ workers: [b], allowOtherWorkers: false }, (v) => v * 2, x).result();
const keys = workers.map((w) => {
  const argv = readFileSync('/proc/' + w.pid + '/cmdline', 'utf8').split('\\0');
  const key = argv[argv.indexOf('--tls-key') + 1];
  return { key, mode: (statSync(key).mode & 0o777).toString(8), dir: (statSync(dirname(key)).mode & 0o777).toString(8), leak: /PRIVATE KEY|runner-token/.test(argv.join(' ') + readFileSync('/proc/' + w.pid + '/environ', 'utf8')) };
});
const refused = await Client.connect(runner.schedulerAddress.replace('tls://', 'tcp://'), { security: Security.insecure(), connectTimeoutMs: 1500 }).then(() => 'connected', (e) => e.message);
console.log('RESULT ' + JSON.stringify({ jobId: runner.jobId, scheduler: runner.schedulerAddress, addresses: workers.map((w) => w.address), out, dep, keys, refused }));
await client.close();
await runner.close();
`,
    );
    const child = spawn('srun', ['-n', '4', '-p', 'cpu', '--mem-per-cpu=300M', '-t', '00:05:00', '-J', 'skein-runner-tls', process.execPath, app], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SKEIN_LOG_LEVEL: 'warn' },
    });
    const lines: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
    createInterface({ input: child.stderr! }).on('line', (l) => lines.push(l));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(code, lines.join('\n')).toBe(0);
    const result = lines.find((l) => l.startsWith('RESULT '));
    expect(result, lines.join('\n')).toBeDefined();
    const r = JSON.parse(result!.slice(7)) as { jobId: string; scheduler: string; addresses: string[]; out: number[]; dep: number; keys: Array<{ key: string; mode: string; dir: string; leak: boolean }>; refused: string };
    expect(r.scheduler).toMatch(/^tls:\/\//);
    expect(r.addresses).toHaveLength(2);
    for (const a of r.addresses) expect(a).toMatch(/^tls:\/\//);
    expect(r.out).toEqual([2, 3, 4, 5, 6]);
    expect(r.dep).toBe(42);
    expect(r.refused).toMatch(/TLS.*--tls-ca-file/s);
    // Each worker rank wrote its own copy (0600 in a 0700 directory), and nothing is in argv or the environment.
    const credentials = join(dir, `.skein-credentials-${r.jobId}`);
    expect(r.keys.map((k) => ({ ...k, key: dirname(k.key) })).sort((p, q) => p.key.localeCompare(q.key))).toEqual([
      { key: join(credentials, 'worker-2'), mode: '600', dir: '700', leak: false },
      { key: join(credentials, 'worker-3'), mode: '600', dir: '700', leak: false },
    ]);
    // Every rank removed its files once its process ended.
    expect(existsSync(credentials)).toBe(false);
  }, 90_000);

  it('when the client code throws, the scheduler still stops and every task ends', async () => {
    const dir = mkdtempSync(join(root, 'runner-'));
    const app = join(dir, 'app.mjs');
    const index = fileURLToPath(new URL('../dist/index.js', import.meta.url));
    writeFileSync(
      app,
      `import { SlurmRunner } from ${JSON.stringify(index)};
const runner = await SlurmRunner.start({ schedulerFile: ${JSON.stringify(join(dir, 'scheduler-{jobId}.json'))}, skeinCommand: ${JSON.stringify(SKEIN_COMMAND)},
  schedulerOptions: { dashboardAddress: null }, workerOptions: { deathTimeoutMs: 2000 } });
await runner.waitForWorkers();
throw new Error('the user code failed');
`,
    );
    const child = spawn('srun', ['-n', '3', '-p', 'cpu', '--mem-per-cpu=300M', '-t', '00:05:00', '-J', 'skein-runner-throws', process.execPath, app], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, SKEIN_LOG_LEVEL: 'warn' },
    });
    const lines: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
    createInterface({ input: child.stderr! }).on('line', (l) => lines.push(l));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(code, lines.join('\n')).not.toBe(0);
    expect(lines.join('\n')).toContain('the user code failed');
  }, 60_000);
});

describe('the skein-slurm command', () => {
  it('starts the scheduler and jobs, prints the addresses, and cancels its jobs on SIGTERM', async () => {
    const child = spawn(
      process.execPath,
      [SLURM_BIN, '--cores', '1', '--memory', '400MB', '--queue', 'cpu', '--walltime', '00:05:00', '--jobs', '2', '--skein-command', SKEIN_COMMAND,
        '--shared-directory', root, '--dashboard-address', '127.0.0.1:0', '--death-timeout', '15', '--ready-json'],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SKEIN_LOG_LEVEL: 'warn' } },
    );
    const out: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => out.push(l));
    createInterface({ input: child.stderr! }).on('line', (l) => out.push(l));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    try {
      await until(() => out.some((l) => parseReadyLine(l)) || child.exitCode !== null, 30_000, `skein-slurm to start:\n${out.join('\n')}`);
      const ready = out.map((l) => parseReadyLine(l)).find((e) => e !== undefined);
      if (ready?.role !== 'cluster') throw new Error(`no cluster ready line:\n${out.join('\n')}`);
      expect(out).toContain(`Scheduler at:   ${ready.address}`);
      expect(out.some((l) => /^Dashboard at: +http:\/\/127\.0\.0\.1:\d+/.test(l)), out.join('\n')).toBe(true);
      const ids = out.map((l) => /^Job slurm-\d: Slurm job (\d+)$/.exec(l)?.[1]).filter((x): x is string => x !== undefined);
      expect(ids).toHaveLength(2);
      await using client = await Client.connect(ready.address);
      expect(await client.submit((a: number, b: number) => a * b, 6, 7).result()).toBe(42);
      await until(async () => (await client.schedulerInfo()).workers.length === 2, 30_000, 'both jobs registered');
      await client.close();
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(liveJobs(ids)).toEqual([]);
    } finally {
      // Cleanly on failure too: SIGTERM cancels the jobs; SIGKILL only if it hangs.
      child.kill('SIGTERM');
      const hung = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(hung);
    }
  });
  it('with --tls-* and --auth-token-file: tls:// addresses, the jobs get private copies of the credentials, a client without them is refused', async () => {
    const dir = mkdtempSync(join(root, 'cli-tls-'));
    const { files } = Security.temporary({ token: `cli-token-${Date.now()}-0123456789` }).launchFiles(['client', 'nanny', 'scheduler', 'worker'], dir);
    for (const f of files) writeFileSync(f.path, f.contents, { mode: f.mode });
    const [caFile, certFile, keyFile, tokenFile] = files.map((f) => f.path) as [string, string, string, string];
    const child = spawn(
      process.execPath,
      [SLURM_BIN, '--cores', '1', '--memory', '400MB', '--queue', 'cpu', '--walltime', '00:05:00', '--jobs', '1', '--skein-command', SKEIN_COMMAND,
        '--shared-directory', root, '--dashboard-address', '127.0.0.1:0', '--death-timeout', '15', '--ready-json',
        '--tls-ca-file', caFile, '--tls-cert', certFile, '--tls-key', keyFile, '--auth-token-file', tokenFile, '--require-encryption'],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SKEIN_LOG_LEVEL: 'warn' } },
    );
    const out: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => out.push(l));
    createInterface({ input: child.stderr! }).on('line', (l) => out.push(l));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    try {
      await until(() => out.some((l) => parseReadyLine(l)) || child.exitCode !== null, 30_000, `skein-slurm to start:\n${out.join('\n')}`);
      const ready = out.map((l) => parseReadyLine(l)).find((e) => e !== undefined);
      if (ready?.role !== 'cluster') throw new Error(`no cluster ready line:\n${out.join('\n')}`);
      expect(ready.address).toMatch(/^tls:\/\/\S+:\d+$/);
      expect(ready).toMatchObject({ tls: true });
      const id = out.map((l) => /^Job slurm-0: Slurm job (\d+)$/.exec(l)?.[1]).find((x) => x !== undefined)!;
      await using client = await Client.connect(ready.address, { security: Security.fromFiles({ caFile, certFile, keyFile, tokenFile }) });
      expect(await client.submit((a: number, b: number) => a * b, 6, 7).result()).toBe(42);
      const refused = await Client.connect(ready.address.replace('tls://', 'tcp://'), { security: Security.insecure(), connectTimeoutMs: 1500 }).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(CommClosedError);
      // The job names copies in the cluster's own private directory, not the files given.
      const script = execFileSync('scontrol', ['write', 'batch_script', id, '-'], { encoding: 'utf8' });
      const key = /--tls-key (\S+)/.exec(script)?.[1] ?? '';
      expect(key).toMatch(new RegExp(`^${root}/\\.skein-jobqueue/[0-9a-f]{8}/security/worker/nanny-worker-key\\.pem$`));
      expect(statSync(key).mode & 0o777).toBe(0o600);
      expect(statSync(dirname(key)).mode & 0o777).toBe(0o700);
      expect(script).not.toMatch(/PRIVATE KEY|cli-token-/);
      await client.close();
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(liveJobs([id])).toEqual([]);
      expect(existsSync(dirname(dirname(key)))).toBe(false);
    } finally {
      child.kill('SIGTERM');
      const hung = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(hung);
    }
  });
});

describe('a client that dies', () => {
  it('leaves no scheduler and, after the death timeout, no job behind (skein-slurm killed with SIGKILL)', async () => {
    const child = spawn(
      process.execPath,
      [SLURM_BIN, '--cores', '1', '--memory', '400MB', '--queue', 'cpu', '--walltime', '00:05:00', '--jobs', '1', '--skein-command', SKEIN_COMMAND,
        '--shared-directory', root, '--dashboard-address', '127.0.0.1:0', '--death-timeout', '2', '--ready-json'],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SKEIN_LOG_LEVEL: 'warn' } },
    );
    const out: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => out.push(l));
    createInterface({ input: child.stderr! }).on('line', (l) => out.push(l));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    await until(() => out.some((l) => parseReadyLine(l)) || child.exitCode !== null, 30_000, `skein-slurm to start:\n${out.join('\n')}`);
    const ready = out.map((l) => parseReadyLine(l)).find((e) => e !== undefined)!;
    const ids = out.map((l) => /^Job slurm-\d: Slurm job (\d+)$/.exec(l)?.[1]).filter((x): x is string => x !== undefined);
    expect(ids, out.join('\n')).toHaveLength(1);
    const admin = new SchedulerAdmin(ready.address, { callTimeoutMs: 2_000 });
    try {
      await until(async () => (await admin.workers()).length === 1, 30_000, 'the job registered');
      child.kill('SIGKILL'); // no chance to cancel anything
      await exited;
      await until(() => admin.workers().then(() => false, () => true), 15_000, 'the scheduler to stop with its parent');
      await until(() => liveJobs(ids).length === 0, 30_000, 'the job to end once its scheduler is gone');
    } finally {
      admin.close();
    }
  });
});

// The deployer conformance suite of @skein/cluster, in this file so that it shares the Slurm.
const slurmDeployer: DeployerUnderTest<SLURMCluster> = {
  start: (nWorkers) => SLURMCluster.start(options({ nWorkers })),
  async kill(cluster, name) {
    await using client = await Client.connect(cluster);
    const w = (await client.schedulerInfo()).workers.find((x) => x.name === name)!;
    process.kill(w.pid, 'SIGKILL'); // the compute node is this machine; the worker's nanny restarts it
  },
  leftovers: (cluster) => liveJobs(cluster.submittedJobIds),
  async burst(cluster, tasks, taskMs) {
    await using client = await Client.connect(cluster);
    await client.gather(sleepMap(client, tasks, taskMs));
  },
  startBroken: () => SLURMCluster.start(options({ nWorkers: 1, modules: ['/nonexistent/skein-conformance.mjs'], nanny: false })),
  // A job Slurm holds back (--begin an hour from now): it stays pending with reason BeginTime.
  startNeverReady: (timeoutMs) => SLURMCluster.start(options({ nWorkers: 0, jobExtraDirectives: ['--begin=now+3600'], workerStartTimeoutMs: timeoutMs })),
  startTimeoutMs: 30_000,
};

describe('SLURMCluster: deployer conformance', () => {
  for (const c of deployerConformance(slurmDeployer)) it(c.name, c.run, c.timeoutMs);
});

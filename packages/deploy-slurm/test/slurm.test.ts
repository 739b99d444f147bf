import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@skein/client';
import { Security, parseReadyLine } from '@skein/common';
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

  it('gives the scheduler and every job their credentials in files only the user can read, never on a command line', async () => {
    // The CLIs do not take the credential flags yet (issue 14), so the jobs start Skein through a
    // wrapper that checks each credential file where the process starts (on the "compute node"),
    // records its mode and its directory's, and drops the flags before it runs Skein.
    const token = `tok-${Date.now()}-s3cr3t`;
    const dir = mkdtempSync(join(root, 'creds-'));
    const log = join(dir, 'seen.log');
    const wrapper = join(dir, 'skein-wrapper.sh');
    writeFileSync(
      wrapper,
      `#!/usr/bin/env bash
echo "ARGV $*" >> ${log}
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --auth-token-file|--tls-ca-file|--tls-cert|--tls-key)
      echo "FILE $1 $2 $(stat -c %a "$2") $(stat -c %a "$(dirname "$2")") $(cat "$2")" >> ${log}; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
exec ${SKEIN_COMMAND} "\${args[@]}"
`,
      { mode: 0o700 },
    );
    const cluster = await SLURMCluster.start(options({ security: Security.fromToken(token), skeinCommand: wrapper, nWorkers: 2 }));
    const security = join(cluster.directory, 'security');
    try {
      await using client = await Client.connect(cluster); // with cluster.security
      expect(await client.submit((a: number) => a * 2, 21).result()).toBe(42);
      const script = execFileSync('scontrol', ['write', 'batch_script', cluster.jobIds.get('slurm-0')!, '-'], { encoding: 'utf8' });
      expect(script).toContain(`--auth-token-file ${join(security, 'worker', 'token')}`);
      expect(script).not.toContain(token);
      const seen = readFileSync(log, 'utf8').split('\n').filter(Boolean);
      const files = seen.filter((l) => l.startsWith('FILE '));
      // The scheduler here and both jobs found their token file: mode 0600 in a 0700 directory.
      expect(files).toEqual([
        `FILE --auth-token-file ${join(security, 'scheduler', 'token')} 600 700 ${token}`,
        `FILE --auth-token-file ${join(security, 'worker', 'token')} 600 700 ${token}`,
        `FILE --auth-token-file ${join(security, 'worker', 'token')} 600 700 ${token}`,
      ]);
      for (const l of seen.filter((x) => x.startsWith('ARGV '))) expect(l).not.toContain(token);
      expect(statSync(security).mode & 0o777).toBe(0o700);
    } finally {
      await cluster.close();
    }
    expect(existsSync(security)).toBe(false); // the credentials go with the cluster
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

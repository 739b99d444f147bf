import { randomUUID } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, type Transition } from '@skein/client';
import { Security, parseReadyLine } from '@skein/common';
import { deployerConformance, type DeployerUnderTest } from '@skein/cluster/testing';
import {
  SSHAuthenticationError,
  SSHCluster,
  SSHHostUnreachableError,
  SchedulerPortInUseError,
  SkeinNotInstalledError,
  type SSHClusterOptions,
} from '../src/index.js';
import { KEY, KNOWN_HOSTS, PASSWORD, PASSWORD_USER, REMOTE_COMMAND, SSHD_PORT, SSH_BIN, processesWithMarker, startSshd, stopSshd, until } from './helpers.js';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

// Level 3: a real OpenSSH server (tools/sshd-local.sh) on 127.0.0.1-3; each loopback address is
// one "host" with its own remote working directory.
let root: string;
const keyAuth = () => ({ username: 'root', port: SSHD_PORT, privateKey: KEY, knownHosts: KNOWN_HOSTS });

function options(marker: string, overrides: Partial<SSHClusterOptions> = {}): SSHClusterOptions {
  return {
    hosts: ['127.0.0.1', '127.0.0.2', '127.0.0.3'].map((host, i) => ({ host, workDir: join(root, marker, `host${i + 1}`) })),
    connectOptions: keyAuth(),
    schedulerOptions: { port: 0 },
    remoteCommand: REMOTE_COMMAND,
    env: { SKEIN_TEST_MARK: marker, SKEIN_LOG_LEVEL: 'warn' },
    startTimeoutMs: 30_000,
    ...overrides,
  };
}

const computedTimes = (story: Transition[], key: string) => story.filter((t) => t.key === key && t.start === 'processing' && t.finish === 'memory').length;

beforeAll(() => {
  startSshd();
  root = mkdtempSync(join(tmpdir(), 'skein-ssh-test-'));
}, 240_000);

afterAll(() => {
  stopSshd();
  rmSync(root, { recursive: true, force: true });
});

describe('SSHCluster on a real sshd', () => {
  it('runs a computation on three hosts, scales, adapts, and leaves no process behind', async () => {
    const marker = `mark-${randomUUID()}`;
    const cluster = await SSHCluster.start(options(marker));
    try {
      expect(cluster.status).toBe('running');
      expect(cluster.schedulerAddress).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
      expect(Object.values(cluster.placement).sort()).toEqual(['127.0.0.2', '127.0.0.3']);
      await using client = await Client.connect(cluster);

      // A computation, on workers that run in their own host's directory.
      const xs = Array.from({ length: 50 }, (_, i) => i);
      expect(await client.gather(client.map((x: number) => x * x, xs))).toEqual(xs.map((x) => x * x));
      const cwds = await client.run(() => process.cwd());
      expect(Object.values(cwds).sort()).toEqual([join(root, marker, 'host2'), join(root, marker, 'host3')]);
      expect(cluster.logs()['scheduler']).toContain(`Scheduler at:   ${cluster.schedulerAddress}`);

      // scale up (round-robin over the worker hosts) and down, keeping results.
      await cluster.scale(4);
      await cluster.waitForWorkers(4, { timeoutMs: 30_000 });
      expect((await client.schedulerInfo()).workers).toHaveLength(4);
      expect(Object.values(cluster.placement).sort()).toEqual(['127.0.0.2', '127.0.0.2', '127.0.0.3', '127.0.0.3']);
      const info = await client.schedulerInfo();
      const kept = info.workers.map((w, i) => client.submitWith({ workers: [w.address], pure: false }, (n: number) => `r${n}`.padEnd(100_000, '.'), i));
      await client.gather(kept);
      await cluster.scale(2);
      expect((await client.schedulerInfo()).workers).toHaveLength(2);
      expect((await client.gather(kept)).map((s) => s.slice(0, 2))).toEqual(['r0', 'r1', 'r2', 'r3']);
      let story = await client.story(...kept);
      for (const f of kept) expect(computedTimes(story, f.key)).toBe(1);

      // adapt: a burst grows the cluster to the maximum, idleness shrinks it to the minimum.
      const adaptive = cluster.adapt({ minimum: 2, maximum: 4, intervalMs: 250, waitCount: 3, targetDurationMs: 500 });
      const burst = client.map(
        async (x: number) => {
          await new Promise((r) => setTimeout(r, 300));
          return x + 1000;
        },
        Array.from({ length: 60 }, (_, i) => i),
      );
      await until(async () => (await client.schedulerInfo()).workers.length === 4, 30_000, 'adapt to grow to 4 workers');
      expect(await client.gather(burst)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1000));
      await until(() => cluster.workers.size === 2, 30_000, 'adapt to shrink to 2 workers');
      expect((await client.schedulerInfo()).workers).toHaveLength(2);
      expect(await client.gather(burst)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1000));
      story = await client.story(...burst, ...kept);
      for (const f of [...burst, ...kept]) expect(computedTimes(story, f.key)).toBe(1);
      await adaptive.stop();
    } finally {
      await cluster.close();
    }
    expect(cluster.status).toBe('closed');
    await until(() => processesWithMarker(marker).length === 0, 15_000, 'every remote process to stop');
  });

  it('gives remote workers every worker option of the launch spec: resources, threads, memory limit', async () => {
    const marker = `mark-${randomUUID()}`;
    const cluster = await SSHCluster.start(
      options(marker, { hosts: options(marker).hosts.slice(0, 2), workerOptions: { resources: { GPU: 2 }, nthreads: 2, memoryLimit: '1GB', deathTimeoutMs: 7_000 } }),
    );
    try {
      await using client = await Client.connect(cluster);
      const [w] = (await client.schedulerInfo()).workers;
      expect(w).toMatchObject({ name: 'ssh-0', nthreads: 2, memoryLimit: 1e9, resources: { GPU: 2 } });
      expect(await client.submitWith({ resources: { GPU: 2 } }, () => 'on a GPU worker').result()).toBe('on a GPU worker');
    } finally {
      await cluster.close();
    }
  });

  it('logs in with a password', async () => {
    const marker = `mark-${randomUUID()}`;
    const pwRoot = join('/tmp', `skein-ssh-pw-${marker}`); // created by the remote user itself
    await using cluster = await SSHCluster.start({
      ...options(marker),
      hosts: [
        { host: '127.0.0.1', workDir: `${pwRoot}/h1` },
        { host: '127.0.0.2', workDir: `${pwRoot}/h2` },
      ],
      connectOptions: { username: PASSWORD_USER, password: PASSWORD, port: SSHD_PORT, knownHosts: KNOWN_HOSTS },
    });
    await using client = await Client.connect(cluster);
    const uid = await client.submit(() => process.getuid?.() ?? -1).result();
    expect(uid).toBeGreaterThan(0); // the password user, not root
    await cluster.close();
    rmSync(pwRoot, { recursive: true, force: true });
    await until(() => processesWithMarker(marker).length === 0, 15_000, 'every remote process to stop');
  });
});

describe('the skein-ssh command', () => {
  it('starts a cluster from the command line and stops every remote process on SIGTERM', async () => {
    const marker = `mark-${randomUUID()}`;
    const workDir = join(root, marker);
    const child = spawn(
      process.execPath,
      [SSH_BIN, '127.0.0.1', '127.0.0.2', '127.0.0.3', '--ssh-port', String(SSHD_PORT), '--ssh-user', 'root', '--ssh-key', KEY,
        '--known-hosts', KNOWN_HOSTS, '--remote-command', REMOTE_COMMAND, '--scheduler-port', '0', '--work-dir', workDir, '--ready-json'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const out: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => out.push(l));
    createInterface({ input: child.stderr! }).on('line', (l) => out.push(l));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    try {
      await until(() => out.some((l) => parseReadyLine(l)) || child.exitCode !== null, 30_000, `skein-ssh to start:\n${out.join('\n')}`);
      const ready = out.map((l) => parseReadyLine(l)).find((e) => e !== undefined);
      if (ready?.role !== 'cluster') throw new Error(`no cluster ready line:\n${out.join('\n')}`);
      const address = ready.address;
      expect(address, out.join('\n')).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
      expect(ready.workers.map((w) => w.host).sort()).toEqual(['127.0.0.2', '127.0.0.3']);
      for (const w of ready.workers) expect(w.address).toMatch(/^tcp:\/\/127\.0\.0\.[23]:\d+$/);
      expect(out).toContain(`Scheduler at:   ${address}`); // the banner, for people
      await using client = await Client.connect(address);
      expect(await client.submit((a: number, b: number) => a * b, 6, 7).result()).toBe(42);
      await client.close();
      expect(processesWithMarker(marker).length).toBeGreaterThan(0);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      await until(() => processesWithMarker(marker).length === 0, 15_000, 'every remote process to stop');
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('explains bad arguments', async () => {
    const child = spawn(process.execPath, [SSH_BIN, '--ssh-port', 'x'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    expect(code).toBe(2);
    expect(err).toMatch(/skein-ssh: .*Run skein-ssh --help/);
  });
});

describe('SSHCluster errors say what went wrong', () => {
  it('refuses a wrong password with an authentication error', async () => {
    const err = await SSHCluster.start({
      ...options('auth'),
      connectOptions: { username: PASSWORD_USER, password: 'wrong', port: SSHD_PORT, knownHosts: KNOWN_HOSTS },
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SSHAuthenticationError);
    expect((err as SSHAuthenticationError).code).toBe('unauthenticated');
    expect((err as Error).message).toMatch(/skeintest@127\.0\.0\.1:2222 was refused.*Check the user name and the password/s);
  });

  it('reports a port where nothing listens, and a host that does not answer, as unreachable', async () => {
    const refused = await SSHCluster.start({ ...options('port'), connectOptions: { ...keyAuth(), port: 1 } }).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(SSHHostUnreachableError);
    expect((refused as Error).message).toMatch(/Cannot reach 127\.0\.0\.1:1 over SSH \(ECONNREFUSED\).*sshd listens on port 1/s);
    // A host that accepts the TCP connection but never speaks SSH (loopback only: tests never
    // send traffic off this machine): no answer within the ready timeout.
    const accepted: Socket[] = [];
    const mute: Server = createServer((socket) => {
      accepted.push(socket);
    });
    await new Promise<void>((r) => mute.listen(0, '127.0.0.4', r));
    const mutePort = (mute.address() as { port: number }).port;
    try {
      const silent = await SSHCluster.start({
        ...options('host'),
        hosts: [{ host: '127.0.0.4', port: mutePort }, '127.0.0.2'],
        connectOptions: { ...keyAuth(), readyTimeoutMs: 1500 },
      }).catch((e: unknown) => e);
      expect(silent).toBeInstanceOf(SSHHostUnreachableError);
      expect((silent as Error).message).toMatch(new RegExp(`Cannot reach 127\\.0\\.0\\.4:${mutePort}`));
    } finally {
      mute.close();
      // The mute host's side of each connection the SSH client gave up on.
      for (const socket of accepted) socket.destroy();
    }
  });

  it('says how to install Skein when the remote command is missing', async () => {
    const marker = `mark-${randomUUID()}`;
    const err = await SSHCluster.start({ ...options(marker), remoteCommand: '/nonexistent/bin/skein' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(SkeinNotInstalledError);
    expect((err as Error).message).toMatch(/Skein is not installed on 127\.0\.0\.1: "\/nonexistent\/bin\/skein" was not found.*npm install -g skein/s);
  });

  it('says the scheduler port is in use', async () => {
    const marker = `mark-${randomUUID()}`;
    const server: Server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const err = await SSHCluster.start({ ...options(marker), schedulerOptions: { port } }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SchedulerPortInUseError);
      expect((err as Error).message).toMatch(new RegExp(`port ${port} is already in use there.*choose another port`, 's'));
    } finally {
      server.close();
    }
    await until(() => processesWithMarker(marker).length === 0, 15_000, 'the failed scheduler to be gone');
  });
});

describe('SSHCluster with security (TLS on every link, credentials as files on each host)', () => {
  it('runs a map and a worker-to-worker transfer over TLS; credential files are private, off every command line, and gone after close', async () => {
    const marker = `mark-${randomUUID()}`;
    const cluster = await SSHCluster.start(options(marker, { security: Security.temporary({ token: 'ssh-cluster-token-0123456789abcdef' }) }));
    const dirs: string[] = [];
    try {
      expect(cluster.security.tls).toBe(true);
      expect(cluster.schedulerAddress).toMatch(/^tls:\/\/127\.0\.0\.1:\d+$/);
      await using client = await Client.connect(cluster);
      const info = await client.schedulerInfo();
      expect(info.workers).toHaveLength(2);
      for (const w of info.workers) expect(w.address).toMatch(/^tls:\/\//);
      const xs = Array.from({ length: 50 }, (_, i) => i);
      expect(await client.gather(client.map((x: number) => x + 1, xs))).toEqual(xs.map((x) => x + 1));
      const [a, b] = info.workers.map((w) => w.address);
      const big = client.submitWith({ workers: [a!], pure: false }, (n: number) => Buffer.alloc(n, 9), 2_000_000);
      const len = client.submitWith({ workers: [b!], allowOtherWorkers: false }, (v: Buffer) => v.length + v[0]!, big);
      expect(await len.result()).toBe(2_000_009);

      // every remote process names its credentials by path; no key or token on its command line or in its environment
      const pids = processesWithMarker(marker);
      expect(pids.length).toBeGreaterThanOrEqual(3);
      for (const pid of pids) {
        const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
        const environ = readFileSync(`/proc/${pid}/environ`, 'utf8');
        expect(cmdline.join(' ')).not.toMatch(/PRIVATE KEY|ssh-cluster-token/);
        expect(environ).not.toMatch(/PRIVATE KEY|ssh-cluster-token/);
        const at = cmdline.indexOf('--tls-key');
        if (at < 0) continue;
        const key = cmdline[at + 1]!;
        const dir = dirname(key);
        dirs.push(dir);
        expect(statSync(dir).mode & 0o777).toBe(0o700);
        for (const f of readdirSync(dir)) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
        expect(readdirSync(dir)).toContain('token');
      }
      expect(new Set(dirs).size).toBeGreaterThanOrEqual(3); // the scheduler and each worker: a directory of its own
    } finally {
      await cluster.close();
    }
    await until(() => processesWithMarker(marker).length === 0, 15_000, 'every remote process to stop');
    // (a process that stopped on its own has its directory removed as it goes: poll)
    await until(() => dirs.every((d) => !existsSync(d)), 15_000, 'every credential directory to be removed');
  });

  it('skein-ssh with TLS files: the cluster runs on TLS with those credentials', async () => {
    const marker = `mark-${randomUUID()}`;
    const dir = mkdtempSync(join(tmpdir(), 'skein-ssh-tls-'));
    const sec = Security.temporary();
    const { files, args } = sec.launchFiles(['client', 'scheduler', 'worker', 'nanny'], dir);
    for (const f of files) writeFileSync(f.path, f.contents, { mode: f.mode });
    const child = spawn(
      process.execPath,
      [SSH_BIN, '127.0.0.1', '127.0.0.2', '--ssh-port', String(SSHD_PORT), '--ssh-user', 'root', '--ssh-key', KEY, '--known-hosts', KNOWN_HOSTS,
        '--remote-command', REMOTE_COMMAND, '--scheduler-port', '0', '--work-dir', join(root, marker), '--ready-json', ...args],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SKEIN_TEST_MARK: marker } },
    );
    try {
      const ready = await new Promise<ReturnType<typeof parseReadyLine>>((resolve, reject) => {
        const errs: string[] = [];
        createInterface({ input: child.stderr! }).on('line', (l) => errs.push(l));
        createInterface({ input: child.stdout! }).on('line', (l) => {
          const r = parseReadyLine(l);
          if (r) resolve(r);
        });
        child.once('exit', (code) => reject(new Error(`skein-ssh exited ${code}: ${errs.join('\n')}`)));
      });
      expect(ready).toMatchObject({ role: 'cluster', tls: true });
      expect(ready!.address).toMatch(/^tls:\/\//);
      await using client = await Client.connect(ready!.address, { security: Security.fromFiles({ caFile: join(dir, 'ca.pem'), certFile: join(dir, 'client-nanny-scheduler-worker.pem'), keyFile: join(dir, 'client-nanny-scheduler-worker-key.pem') }) });
      expect(await client.submit((x: number) => x * 3, 14).result()).toBe(42);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      rmSync(dir, { recursive: true, force: true });
    }
    await until(() => processesWithMarker(marker).length === 0, 15_000, 'every remote process to stop');
  });
});

// The deployer conformance suite of @skein/cluster, in this file so that it shares its sshd.
const markers = new WeakMap<SSHCluster, string>();
const sshDeployer = (extra: Partial<SSHClusterOptions> = {}): DeployerUnderTest<SSHCluster> => ({
  async start(nWorkers) {
    const marker = `mark-${randomUUID()}`;
    const cluster = await SSHCluster.start(options(marker, { nWorkers, ...extra }));
    markers.set(cluster, marker);
    return cluster;
  },
  async kill(cluster, name) {
    await using client = await Client.connect(cluster);
    const w = (await client.schedulerInfo()).workers.find((x) => x.name === name)!;
    process.kill(w.pid, 'SIGKILL'); // the "remote" hosts are this machine
  },
  leftovers: (cluster) => processesWithMarker(markers.get(cluster)!).map((pid) => `remote process ${pid}`),
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
  startBroken: () => SSHCluster.start(options(`mark-${randomUUID()}`, { nWorkers: 1, workerOptions: { modules: ['/nonexistent/skein-conformance.mjs'] }, ...extra })),
  // The remote worker starts but hangs loading its module (the "remote" hosts share this file system).
  async startNeverReady(timeoutMs) {
    const marker = `mark-${randomUUID()}`;
    const module = join(root, `${marker}-hangs.mjs`);
    writeFileSync(module, 'setInterval(() => {}, 1 << 30);\nawait new Promise(() => {});\n');
    const cluster = await SSHCluster.start(options(marker, { nWorkers: 0, workerOptions: { modules: [module] }, workerStartTimeoutMs: timeoutMs, ...extra }));
    markers.set(cluster, marker);
    return cluster;
  },
  startTimeoutMs: 30_000,
});

describe('SSHCluster: deployer conformance', () => {
  for (const c of deployerConformance(sshDeployer())) it(c.name, c.run, c.timeoutMs);
});

describe('SSHCluster: deployer conformance with TLS (security: true)', () => {
  for (const c of deployerConformance(sshDeployer({ security: true }))) it(c.name, c.run, c.timeoutMs);
});

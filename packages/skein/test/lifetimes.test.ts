import { afterEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { Metadata, status as GrpcStatus, type ClientDuplexStream, type ServiceError } from '@grpc/grpc-js';
import { Client } from '@skein/client';
import { SchedulerServiceClient, type WorkerSessionRequest, type WorkerSessionResponse } from '@skein/protocol';
import { CHANNEL_OPTIONS, PROTOCOL_VERSION, grpcTarget, insecureChannel } from '@skein/common';
import { Scheduler } from '@skein/core-scheduler';
import { SKEIN_BIN, readyOf, startProcess, until, within, type Proc } from './helpers.js';

// Level 3: nannies, workers and the scheduler as real processes (the `skein` CLI), killed with
// SIGKILL, and what each of the others does about it.

/** The process runs (an orphan that exited may stay a zombie until whoever adopted it reaps it). */
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true; // no /proc here: kill(0) has to do
  }
};

const procs: Proc[] = [];
const strays: number[] = [];
const clients: Client[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const pid of strays.splice(0)) if (alive(pid)) process.kill(pid, 'SIGKILL');
  const all = procs.splice(0);
  for (const p of all) p.kill('SIGKILL');
  await Promise.all(all.map((p) => p.exited));
});

function start(args: string[], env: Record<string, string> = {}): Proc {
  const p = startProcess([SKEIN_BIN, ...args], { SKEIN_READY_JSON: '1', ...env });
  procs.push(p);
  return p;
}

async function startScheduler(args: string[] = [], env: Record<string, string> = {}): Promise<{ scheduler: Proc; address: string }> {
  const scheduler = start(['scheduler', '--host', '127.0.0.1', '--port', '0', '--no-dashboard', ...args], env);
  const { address } = await readyOf(scheduler);
  return { scheduler, address };
}

/** `skein worker` under its nanny (the default), registered. */
async function startNanny(address: string, name: string, args: string[] = []): Promise<Proc> {
  const nanny = start(['worker', address, '--host', '127.0.0.1', '--name', name, ...args]);
  await readyOf(nanny);
  return nanny;
}

async function connect(address: string): Promise<Client> {
  const client = await Client.connect(address);
  clients.push(client);
  return client;
}

async function workerNamed(client: Client, name: string) {
  return (await client.schedulerInfo()).workers.find((w) => w.name === name);
}

/** A worker session opened by hand (as a worker in another language would), registered as `workerAddress`. */
async function rawWorkerSession(schedulerAddress: string, workerAddress: string) {
  const rpc = new SchedulerServiceClient(grpcTarget(schedulerAddress), insecureChannel(), CHANNEL_OPTIONS);
  const session: ClientDuplexStream<WorkerSessionRequest, WorkerSessionResponse> = rpc.workerSession();
  const ended = new Promise<ServiceError | null>((resolve) => {
    session.on('error', (err: ServiceError) => resolve(err));
    session.on('end', () => resolve(null));
  });
  const welcomed = new Promise<void>((resolve) => session.once('data', () => resolve()));
  session.write({
    messages: [
      {
        kind: {
          $case: 'hello',
          value: {
            protocolVersion: PROTOCOL_VERSION,
            address: workerAddress,
            name: 'by-hand',
            nthreads: 1,
            memoryLimit: 0,
            resources: new Map(),
            held: [],
            registeredFunctions: [],
            pid: process.pid,
            nannyAddress: '',
            batches: true,
            versions: undefined,
          },
        },
      },
    ],
  });
  await welcomed;
  return { rpc, session, ended };
}

describe('a nanny whose worker dies while the scheduler is gone', () => {
  it('gives up after the worker\'s --death-timeout and exits non-zero, saying why', async () => {
    const { scheduler, address } = await startScheduler();
    const nanny = await startNanny(address, 'n', ['--death-timeout', '3']);
    const client = await connect(address);
    const { pid } = (await workerNamed(client, 'n'))!;
    await client.close();
    strays.push(pid);
    scheduler.kill('SIGKILL');
    await scheduler.exited;
    process.kill(pid, 'SIGKILL');
    const t0 = Date.now();
    // Without a deadline this nanny restarted workers against the missing scheduler forever.
    const code = await within(nanny.exited, 15_000, 'still running' as const);
    expect(code).toBe(1);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2_500);
    expect(nanny.stderr.join('\n')).toMatch(/no worker could register with the scheduler at \S+ within the death timeout \(3 s\)/);
  });
});

describe('a worker whose nanny is killed', () => {
  it('notices, retires (its results move to a peer) and exits', async () => {
    const { address } = await startScheduler();
    const peer = start(['worker', address, '--no-nanny', '--host', '127.0.0.1', '--name', 'peer']);
    await readyOf(peer);
    const nanny = await startNanny(address, 'orphan', ['--death-timeout', '30']);
    const client = await connect(address);
    // Random, so that a recomputation would show; large, so that only the worker holds it.
    const x = client.submitWith({ workers: ['orphan'], pure: false }, () => ({ r: Math.random(), pad: 'x'.repeat(200_000) }));
    const first = (await x.result()) as { r: number };
    const { pid } = (await workerNamed(client, 'orphan'))!;
    strays.push(pid);
    nanny.kill('SIGKILL');
    await nanny.exited;
    // Long before its death timeout (30 s), and not by crashing: the data reached the peer.
    await until(() => !alive(pid), 15_000, 'the orphaned worker to exit');
    await until(async () => (await client.schedulerInfo()).workers.every((w) => w.name !== 'orphan'), 10_000, 'the scheduler to drop it');
    const y = client.submit((v: { r: number }) => v.r, x);
    expect(await y.result()).toBe(first.r);
    const story = await client.story(x);
    expect(story.filter((t) => t.finish === 'processing')).toHaveLength(1); // moved, not recomputed
  });
});

describe('log lines to a pipe nobody reads', () => {
  /** Closes our ends of the process's stdout and stderr: its next write fails with EPIPE. */
  const closePipes = (p: Proc) => {
    p.child.stdout!.destroy();
    p.child.stderr!.destroy();
  };

  it('do not crash the scheduler', async () => {
    const { scheduler, address } = await startScheduler();
    closePipes(scheduler);
    // The scheduler logs each registration ("Register worker ...").
    const worker = start(['worker', address, '--no-nanny', '--host', '127.0.0.1', '--name', 'bare']);
    await readyOf(worker);
    const client = await connect(address);
    expect(await client.submit((n: number) => n + 1, 1).result()).toBe(2);
    worker.kill('SIGTERM'); // ... and each removal
    await worker.exited;
    expect((await client.schedulerInfo()).workers).toEqual([]);
    expect(scheduler.child.exitCode).toBeNull();
  });

  it('do not crash a nanny', async () => {
    const { address } = await startScheduler();
    const nanny = await startNanny(address, 'nannied');
    const client = await connect(address);
    closePipes(nanny);
    // The nanny logs the death of its worker ("... restarting it") and starts a new one.
    const { pid } = (await workerNamed(client, 'nannied'))!;
    process.kill(pid, 'SIGKILL');
    await until(async () => {
      const w = await workerNamed(client, 'nannied');
      return w !== undefined && w.pid !== pid;
    }, 20_000, 'the nanny to start a new worker');
    expect(nanny.child.exitCode).toBeNull();
  });

  it('do not crash a worker', async () => {
    const { address } = await startScheduler();
    const worker = start(['worker', address, '--no-nanny', '--host', '127.0.0.1', '--name', 'bare']);
    await readyOf(worker);
    closePipes(worker);
    // A worker logs that it retires on SIGTERM; a crash would exit with code 1.
    worker.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
  });
});

describe('a worker the scheduler dropped', () => {
  // A ReportWorkerDeath or a second registration no longer removes a connected worker (issue 14):
  // see authz.test.ts.
  it('silent past the heartbeat TTL (stopped), then back: closes, and its nanny starts a fresh one', async () => {
    const { address } = await startScheduler(['--heartbeat-ms', '200'], { SKEIN_WORKER_TTL_MS: '1500' });
    const nanny = await startNanny(address, 'w');
    const client = await connect(address);
    const before = (await workerNamed(client, 'w'))!;
    strays.push(before.pid);
    process.kill(before.pid, 'SIGSTOP');
    try {
      await until(async () => (await workerNamed(client, 'w')) === undefined, 10_000, 'the scheduler to drop the silent worker');
    } finally {
      process.kill(before.pid, 'SIGCONT');
    }
    await until(() => !alive(before.pid), 10_000, 'the dropped worker to exit');
    await until(async () => {
      const w = await workerNamed(client, 'w');
      return w !== undefined && w.pid !== before.pid;
    }, 20_000, 'its nanny to start a fresh worker');
    // Removed by the scheduler is not retired: the nanny stays.
    expect(nanny.child.exitCode).toBeNull();
    expect(await client.submitWith({ workers: ['w'] }, (n: number) => n + 1, 1).result()).toBe(2);
  });

  it('a heartbeat from a worker the scheduler does not know is answered with NOT_FOUND (not registered)', async () => {
    // In process, to reach the one state the outside cannot: the state forgot the worker while
    // its session is open.
    const scheduler = await Scheduler.start({ host: '127.0.0.1', port: 0, dashboardAddress: null });
    const { rpc, session, ended } = await rawWorkerSession(scheduler.address, 'tcp://127.0.0.1:9');
    try {
      scheduler.state.handle({ type: 'WorkerRemoved', worker: 'tcp://127.0.0.1:9', expected: false, reason: 'test', stimulusId: 'test-removed' });
      const heartbeat = { executing: 0, ready: 0, memoryRss: 0, managedBytes: 0, cpuPercent: 0, nowMs: Date.now(), spilledBytes: 0, paused: false };
      session.write({ messages: [{ kind: { $case: 'heartbeat', value: heartbeat } }] });
      const err = await within(ended, 5_000, 'no answer' as const);
      expect(err).not.toBe('no answer');
      expect((err as ServiceError).code).toBe(GrpcStatus.NOT_FOUND);
      expect((err as ServiceError).details).toMatch(/not registered .*heartbeat from a worker that is not registered/);
    } finally {
      session.cancel();
      rpc.close();
      await scheduler.close();
    }
  });
});

import { afterAll, describe, expect, it } from 'vitest';
import { createServer } from 'node:net';
import { credentials } from '@grpc/grpc-js';
import { Client, registered } from '@skein/client';
import { SchedulerServiceClient, type ClientSessionResponse } from '@skein/protocol';
import { PROTOCOL_VERSION } from '@skein/common';
import { REPO, SKEIN_BIN, readyOf, startProcess, type Proc } from './helpers.js';

// Level 3: the multi-machine flow through the real `skein` command, on loopback.
describe('skein scheduler + skein worker (the multi-machine flow)', () => {
  const procs: Proc[] = [];
  afterAll(async () => {
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
  });

  it('prints the addresses, registers workers and computes with registered functions', async () => {
    const scheduler = startProcess([SKEIN_BIN, 'scheduler', '--host', '127.0.0.1', '--port', '0', '--ready-json']);
    procs.push(scheduler);
    const { address } = await readyOf(scheduler);
    expect(address).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(scheduler.stdout[0]).toBe(`Scheduler at:   ${address}`); // the banner, for people
    const workers = [0, 1].map((i) => {
      const w = startProcess([
        SKEIN_BIN, 'worker', address, '--host', '127.0.0.1', '--name', `cli-${i}`, '--nthreads', '1',
        '--module', `${REPO}examples/tasks/tasks.mjs`, '--ready-json',
      ]);
      procs.push(w);
      return w;
    });
    for (const w of workers) {
      const ready = await readyOf(w);
      expect(ready).toMatchObject({ role: 'worker', scheduler: address });
      expect(ready.address).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
      // The banners, for people: the nanny passes its worker's lines on.
      expect(w.stdout).toContain(`Start worker at:  ${ready.address}`);
      expect(w.stdout).toContain(`Registered to:    ${address}`);
    }
    await using client = await Client.connect(address);
    const info = await client.schedulerInfo();
    expect(info.workers.map((w) => w.name).sort()).toEqual(['cli-0', 'cli-1']);
    const inc = registered<[number], number>('inc');
    const add = registered<[number, number], number>('add');
    const a = client.submit(inc, 1);
    const b = client.submit(inc, 2);
    const c = client.submit(add, a, b);
    expect(await c.result()).toBe(5);
    const xs = client.map(inc, [10, 20, 30]);
    expect(await client.gather(xs)).toEqual([11, 21, 31]);

    // A worker stopped with SIGTERM hands its unique results to its peer before leaving.
    const big = client.submitWith({ workers: ['cli-0'], pure: false }, (n: number) => Buffer.alloc(n, 1), 200_000);
    await big.result();
    const holder = workers[0]!;
    holder.kill('SIGTERM');
    expect(await holder.exited).toBe(0);
    const after = await client.schedulerInfo();
    expect(after.workers.map((w) => w.name)).toEqual(['cli-1']);
    const len = client.submit((buf: Buffer) => buf.length, big);
    expect(await len.result()).toBe(200_000);
    const story = await client.story(big);
    expect(story.filter((t) => t.finish === 'processing')).toHaveLength(1); // moved, not recomputed
  });
});

describe('--interface binds to that network card', () => {
  it('scheduler and worker on the loopback card (lo) advertise its address', async () => {
    const scheduler = startProcess([SKEIN_BIN, 'scheduler', '--interface', 'lo', '--port', '0', '--ready-json']);
    const worker = { p: undefined as Proc | undefined };
    try {
      const { address } = await readyOf(scheduler);
      expect(address).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
      worker.p = startProcess([SKEIN_BIN, 'worker', address, '--interface', 'lo', '--no-nanny', '--ready-json']);
      expect((await readyOf(worker.p)).address).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
      const bad = startProcess([SKEIN_BIN, 'scheduler', '--interface', 'nosuchnic0', '--port', '0']);
      expect(await bad.exited).not.toBe(0);
      expect(bad.stderr.join('\n')).toMatch(/No network interface named "nosuchnic0"\. Available: .*lo/);
    } finally {
      worker.p?.kill('SIGKILL');
      scheduler.kill('SIGKILL');
      await Promise.all([scheduler.exited, worker.p?.exited]);
    }
  });
});

describe('bad input gets a one-line error and a non-zero exit', () => {
  const run = async (args: string[]) => {
    const p = startProcess([SKEIN_BIN, ...args]);
    const code = await p.exited;
    return { code, err: p.stderr.join('\n'), out: p.stdout.join('\n') };
  };

  it('unknown flag', async () => {
    const r = await run(['scheduler', '--bogus']);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/Unknown argument: bogus/);
    expect(r.err.split('\n')).toHaveLength(1);
  });

  it('bad scheduler address', async () => {
    const r = await run(['worker', 'udp://nowhere']);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/udp:\/\/nowhere/);
    expect(r.err.split('\n')).toHaveLength(1);
  });

  it('port in use', async () => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    try {
      const r = await run(['scheduler', '--host', '127.0.0.1', '--port', String(port)]);
      expect(r.code).not.toBe(0);
      expect(r.err).toMatch(/already in use/);
      expect(r.err.split('\n')).toHaveLength(1);
    } finally {
      server.close();
    }
  });

  it('unreachable scheduler', async () => {
    const r = await run(['worker', 'tcp://127.0.0.1:1', '--host', '127.0.0.1', '--death-timeout', '2']);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/tcp:\/\/127\.0\.0\.1:1/);
    expect(r.err.trim().split('\n')).toHaveLength(1);
  });

  it('a command whose package is not installed says which package to install', async () => {
    // The umbrella does not depend on the deployers: users install only the one they need.
    const r = await run(['ssh', '127.0.0.1']);
    expect(r.code).toBe(127);
    expect(r.err.trim()).toBe('skein ssh: needs the package @skein/deploy-ssh, which is not installed. Install it with: npm install @skein/deploy-ssh');
  });

  it('unknown command names the commands', async () => {
    const r = await run(['frobnicate']);
    expect(r.code).not.toBe(0);
    expect(r.err).toMatch(/unknown command "frobnicate"/);
  });
});

describe('protocol version check', () => {
  it('refuses a client of another major version, naming both versions', async () => {
    const scheduler = startProcess([SKEIN_BIN, 'scheduler', '--host', '127.0.0.1', '--port', '0', '--ready-json']);
    try {
      const { address } = await readyOf(scheduler);
      const raw = new SchedulerServiceClient(address.replace('tcp://', ''), credentials.createInsecure());
      const call = raw.clientSession();
      const error = await new Promise<Error>((resolve) => {
        call.on('data', (_: ClientSessionResponse) => undefined);
        call.on('error', resolve);
        call.write({ messages: [{ kind: { $case: 'hello', value: { protocolVersion: '9.0', clientId: 'old', batches: false } } }] });
      });
      expect(error.message).toContain(`speaks skein protocol ${PROTOCOL_VERSION} but the other end speaks 9.0`);
      raw.close();
    } finally {
      scheduler.kill('SIGKILL');
      await scheduler.exited;
    }
  });
});

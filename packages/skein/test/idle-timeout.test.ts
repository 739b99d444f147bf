import { afterEach, describe, expect, it } from 'vitest';
import { Client } from '@skein/client';
import { Scheduler } from '@skein/core-scheduler';
import { InvalidArgumentError } from '@skein/common';
import { SKEIN_BIN, readyOf, startProcess, type Proc } from './helpers.js';

// Dask's idle-timeout (distributed/tests/test_scheduler.py::test_idle_timeout,
// test_idle_timeout_no_workers): a scheduler with no client and nothing to run closes itself, so
// a cluster someone forgot (a Kubernetes or Slurm deployment) gives its machines back.
async function until(what: string, ok: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('idle timeout', () => {
  const closers: (() => Promise<unknown>)[] = [];
  const procs: Proc[] = [];
  afterEach(async () => {
    for (const c of closers.reverse()) await c().catch(() => undefined);
    closers.length = 0;
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    procs.length = 0;
  });

  it('closes a scheduler with no client and no task once the timeout passes; never without one', async () => {
    const idle = await Scheduler.start({ host: '127.0.0.1', port: 0, dashboardAddress: null, heartbeatMs: 50, idleTimeoutMs: 300 });
    closers.push(() => idle.close());
    const forever = await Scheduler.start({ host: '127.0.0.1', port: 0, dashboardAddress: null, heartbeatMs: 50 });
    closers.push(() => forever.close());
    await until('the idle scheduler to close', () => idle.status === 'closed', 5_000);
    expect(forever.status).toBe('running');
  });

  it('a connected client keeps it open, and so does a task waiting to run; it closes once both are gone', async () => {
    const scheduler = await Scheduler.start({ host: '127.0.0.1', port: 0, dashboardAddress: null, heartbeatMs: 50, idleTimeoutMs: 300 });
    closers.push(() => scheduler.close());
    const client = await Client.connect(scheduler.address);
    // No worker: the task waits (queued or no-worker) the whole time.
    const f = client.submit((x: number) => x + 1, 1);
    await new Promise((r) => setTimeout(r, 900));
    expect(scheduler.status).toBe('running');
    expect(f.status).toBe('pending');
    await client.close();
    await until('the scheduler to close after the client left', () => scheduler.status === 'closed', 5_000);
  });

  it('refuses a timeout that is not a positive number', async () => {
    await expect(Scheduler.start({ host: '127.0.0.1', port: 0, dashboardAddress: null, idleTimeoutMs: -1 })).rejects.toThrow(InvalidArgumentError);
  });

  it('skein scheduler --idle-timeout exits 0 by itself, saying why', async () => {
    const p = startProcess([SKEIN_BIN, 'scheduler', '--host', '127.0.0.1', '--port', '0', '--no-dashboard', '--ready-json', '--idle-timeout', '0.5', '--heartbeat-ms', '50']);
    procs.push(p);
    await readyOf(p);
    expect(await p.exited).toBe(0);
    expect(p.stderr.join('\n')).toMatch(/no client and no task/);
  });
});

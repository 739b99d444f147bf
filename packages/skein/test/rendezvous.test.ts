import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@skein/client';
import { SchedulerAdmin, schedulerLaunch, workerLaunch } from '@skein/cluster';
import { parseReadyLine } from '@skein/common';
import { SKEIN_BIN, readyOf, startProcess, until, type Proc } from './helpers.js';

// Level 3: how processes a deployer starts find each other (the scheduler file) and say they are
// ready (the JSON ready line), through the real `skein` command.
const dir = mkdtempSync(join(tmpdir(), 'skein-rendezvous-'));
const procs: Proc[] = [];
afterAll(async () => {
  for (const p of procs) p.kill('SIGKILL');
  await Promise.all(procs.map((p) => p.exited));
  rmSync(dir, { recursive: true, force: true });
});

function start(args: string[], env: Record<string, string> = {}): Proc {
  const p = startProcess([SKEIN_BIN, ...args], env);
  procs.push(p);
  return p;
}

describe('--scheduler-file and the JSON ready line', () => {
  it('a worker started before the scheduler waits for the scheduler file, then they compute', async () => {
    const file = join(dir, 'first.json');
    const worker = start(['worker', '--scheduler-file', file, '--host', '127.0.0.1', '--name', 'rv-0', '--ready-json']);
    // The worker is waiting: no scheduler file yet.
    await worker.waitFor(/waiting for the scheduler file .*first\.json/);
    expect(existsSync(file)).toBe(false);
    const scheduler = start(['scheduler', '--scheduler-file', file, '--host', '127.0.0.1', '--port', '0', '--no-dashboard', '--ready-json']);
    const sready = await readyOf(scheduler);
    expect(sready).toMatchObject({ event: 'ready', role: 'scheduler', dashboard: '', pid: scheduler.child.pid });
    expect(sready.address).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    const contents = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    expect(contents).toEqual({ address: sready.address, dashboard: '', id: (sready as { id: string }).id, pid: scheduler.child.pid });
    expect(contents['id']).toMatch(/^[0-9a-f-]{36}$/);
    // The human banner is still printed, for people.
    expect(scheduler.stdout[0]).toMatch(/^Scheduler at:/);

    const wready = await readyOf(worker);
    expect(wready).toMatchObject({ role: 'worker', scheduler: sready.address, name: 'rv-0' });
    expect(wready.address).toMatch(/^tcp:\/\/127\.0\.0\.1:\d+$/);
    expect((wready as { nanny?: string }).nanny).toMatch(/^tcp:\/\//); // `skein worker` runs under a nanny
    // Only one ready line: the worker's own (for its nanny) is not passed on.
    expect(worker.stdout.filter((l) => parseReadyLine(l))).toHaveLength(1);

    await using client = await Client.connect(sready.address);
    expect((await client.schedulerInfo()).workers.map((w) => [w.name, w.address])).toEqual([['rv-0', wready.address]]);
    expect(await client.submit((x: number) => x * 7, 6).result()).toBe(42);

    // The scheduler removes its file when it stops.
    scheduler.kill('SIGTERM');
    expect(await scheduler.exited).toBe(0);
    expect(existsSync(file)).toBe(false);
  });

  it('a worker without a nanny reads the file too, and SKEIN_READY_JSON=1 asks for the ready line', async () => {
    const file = join(dir, 'bare.json');
    const scheduler = start(['scheduler', '--scheduler-file', file, '--host', '127.0.0.1', '--port', '0', '--no-dashboard'], { SKEIN_READY_JSON: '1' });
    const sready = await readyOf(scheduler);
    const worker = start(['worker', '--scheduler-file', file, '--host', '127.0.0.1', '--no-nanny'], { SKEIN_READY_JSON: '1' });
    const wready = await readyOf(worker);
    expect(wready).toMatchObject({ role: 'worker', scheduler: sready.address, pid: worker.child.pid });
    expect((wready as { nanny?: string }).nanny).toBeUndefined();
    // Without the flag or the variable, no JSON line: the output stays for people.
    const plain = start(['worker', sready.address, '--host', '127.0.0.1', '--no-nanny', '--name', 'plain'], { SKEIN_READY_JSON: '' });
    const admin = new SchedulerAdmin(sready.address);
    try {
      await until(async () => (await admin.workers()).some((w) => w.name === 'plain'), 15_000, 'the plain worker to register');
    } finally {
      admin.close();
    }
    // The banner is printed once the CLI's signal handlers are in place (registration at the
    // scheduler comes a little earlier): a SIGTERM from then on retires the worker gracefully.
    await plain.waitFor(/^Registered to: /);
    plain.kill('SIGTERM');
    expect(await plain.exited).toBe(0);
    expect(plain.stdout.filter((l) => l.startsWith('{'))).toEqual([]);
    expect(plain.stdout).toContain(`Registered to:    ${sready.address}`);
  });

  it('a worker stopped by SIGTERM while it waits for its scheduler file exits 0 at once', async () => {
    const worker = start(['worker', '--scheduler-file', join(dir, 'not-yet.json'), '--no-nanny', '--death-timeout', '60']);
    await worker.waitFor(/waiting for the scheduler file/);
    const sent = Date.now();
    worker.kill('SIGTERM');
    expect(await worker.exited).toBe(0);
    expect(Date.now() - sent).toBeLessThan(5_000);
    expect(worker.stderr.join('\n')).toContain('SIGTERM received');
  });

  it.each([['without a nanny', ['--no-nanny']], ['under a nanny', []]])(
    'a worker (%s) whose scheduler file never appears stops with an error naming the file',
    async (_what, extra) => {
      const file = join(dir, 'never.json');
      const worker = start(['worker', '--scheduler-file', file, '--death-timeout', '0.5', ...extra]);
      expect(await worker.exited).toBe(1);
      expect(worker.stderr.join('\n')).toContain(`The scheduler file ${file} did not appear within 0.5 s`);
    },
  );

  it('the launch spec of @skein/cluster runs as it is: worker first, through the scheduler file', async () => {
    const file = join(dir, 'launch.json');
    const w = workerLaunch({ schedulerFile: file, name: 'launched', host: '127.0.0.1', nthreads: 2, resources: { GPU: 1 }, deathTimeoutMs: 20_000 });
    const worker = start(w.argv, w.env);
    await worker.waitFor(/waiting for the scheduler file/);
    const s = schedulerLaunch({ host: '127.0.0.1', port: 0, dashboardAddress: null, schedulerFile: file });
    const scheduler = start(s.argv, s.env);
    const { address } = await readyOf(scheduler);
    expect(await readyOf(worker)).toMatchObject({ role: 'worker', name: 'launched', scheduler: address });
    await using client = await Client.connect(address);
    expect((await client.schedulerInfo()).workers).toMatchObject([{ name: 'launched', nthreads: 2, resources: { GPU: 1 } }]);
  });

  it('an address and --scheduler-file together are refused', async () => {
    const worker = start(['worker', 'tcp://127.0.0.1:1', '--scheduler-file', join(dir, 'x.json'), '--no-nanny']);
    expect(await worker.exited).not.toBe(0);
    expect(worker.stderr.join('\n')).toMatch(/either a scheduler address or --scheduler-file, not both/);
  });
});

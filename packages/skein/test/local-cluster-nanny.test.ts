import { describe, expect, it } from 'vitest';
import { Client } from '@skein/client';
import { LocalCluster } from '../src/index.js';
import { until } from './helpers.js';

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

// Level 3: LocalCluster's nannies run in the cluster's process and supervise real worker processes.
describe('LocalCluster nannies', () => {
  it('run in this process: a killed worker comes back under the same handle; retiring and closing stop the processes', async () => {
    const cluster = await LocalCluster.start({ nWorkers: 2, memoryLimit: '1GB' });
    const client = await Client.connect(cluster);
    try {
      // The worker processes are this process's children: no nanny process in between.
      expect(Object.values(await client.run(() => process.ppid))).toEqual([process.pid, process.pid]);

      const [name, handle] = [...cluster.workers][0]!;
      const { pid, address } = handle;
      process.kill(pid, 'SIGKILL');
      await until(async () => {
        const workers = (await client.schedulerInfo()).workers;
        return workers.length === 2 && workers.some((w) => w.address === handle.address && w.pid === handle.pid) && handle.pid !== pid;
      }, 30_000, 'the nanny to restart the killed worker');
      // The nanny restarted it: the cluster did not have to replace the worker.
      expect(cluster.workers.get(name)).toBe(handle);
      expect(handle.address).not.toBe(address);
      expect(cluster.logs()[name]!.join('\n')).toMatch(/killed by SIGKILL; restarting it/);
      expect(await client.submit((x: number) => x + 1, 1).result()).toBe(2);

      // Retiring a worker closes its nanny, which stops the process.
      const before = [...cluster.workers.values()];
      await cluster.scale(1);
      const retired = before.find((w) => ![...cluster.workers.values()].includes(w))!;
      expect(await retired.exited).toBe(0);
      await until(() => !alive(retired.pid), 10_000, 'the retired worker process to exit');

      const last = [...cluster.workers.values()][0]!.pid;
      await client.close();
      await cluster.close();
      await until(() => !alive(last), 10_000, 'the last worker process to exit');
    } finally {
      await client.close();
      await cluster.close();
    }
  });

  it('nanny: false runs bare worker processes; the cluster replaces one that dies', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 1, nanny: false, memoryLimit: '1GB' });
    await using client = await Client.connect(cluster);
    const [name, handle] = [...cluster.workers][0]!;
    expect(Object.values(await client.run(() => process.ppid))).toEqual([process.pid]);
    process.kill(handle.pid, 'SIGKILL');
    await until(() => cluster.workers.has(name) && cluster.workers.get(name) !== handle, 30_000, 'the cluster to replace the worker');
    expect(await client.submit((x: number) => x * 2, 21).result()).toBe(42);
  });
});

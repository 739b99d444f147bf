import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { Client } from '@skein/client';
import { deployerConformance, type DeployerUnderTest } from '@skein/cluster/testing';
import { LocalCluster } from '../src/index.js';

/** Live child processes of this test process (LocalCluster's workers are its children), described. */
function liveChildren(): string[] {
  const out: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
      // pid (comm) state ppid ...
      const [, state, ppid] = /\) (\S) (\d+)/.exec(stat) ?? [];
      if (Number(ppid) !== process.pid || state === 'Z') continue;
      out.push(`process ${entry}: ${readFileSync(`/proc/${entry}/cmdline`, 'latin1').replace(/\0/g, ' ').trim()}`);
    } catch {
      // gone
    }
  }
  return out;
}

const local: DeployerUnderTest<LocalCluster> = {
  start: (nWorkers) => LocalCluster.start({ nWorkers, memoryLimit: '1GB' }),
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
  startBroken: () => LocalCluster.start({ nWorkers: 1, memoryLimit: '1GB', modules: ['/nonexistent/skein-conformance.mjs'] }),
  startTimeoutMs: 20_000,
};

// Level 3: LocalCluster passes the deployer conformance suite of @skein/cluster.
describe('LocalCluster: deployer conformance', () => {
  it('(the leak check sees a running cluster\'s worker processes)', async () => {
    const cluster = await LocalCluster.start({ nWorkers: 1, memoryLimit: '1GB' });
    try {
      expect(liveChildren()).toHaveLength(1);
    } finally {
      await cluster.close();
    }
    expect(liveChildren()).toEqual([]);
  });
  for (const c of deployerConformance(local)) it(c.name, c.run, c.timeoutMs);
});

import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@skein/client';
import { deployerConformance, type DeployerUnderTest } from '@skein/cluster/testing';
import { LocalCluster } from '../src/index.js';

/** A module whose import never finishes: a worker loading it starts but never registers. */
const HANGING_MODULE = join(mkdtempSync(join(tmpdir(), 'skein-conformance-')), 'hangs.mjs');
writeFileSync(HANGING_MODULE, 'setInterval(() => {}, 1 << 30);\nawait new Promise(() => {});\n');

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
  startNeverReady: (timeoutMs) => LocalCluster.start({ nWorkers: 0, memoryLimit: '1GB', modules: [HANGING_MODULE], workerStartTimeoutMs: timeoutMs }),
  startTimeoutMs: 20_000,
};

// The same check without a nanny: the worker process is LocalCluster's own child.
const localNoNanny: DeployerUnderTest<LocalCluster> = {
  ...local,
  startNeverReady: (timeoutMs) =>
    LocalCluster.start({ nWorkers: 0, memoryLimit: '1GB', nanny: false, modules: [HANGING_MODULE], workerStartTimeoutMs: timeoutMs }),
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

describe('LocalCluster without nannies: a worker that never starts', () => {
  const c = deployerConformance(localNoNanny).find((x) => x.name.startsWith('a worker that never starts'))!;
  it(c.name, c.run, c.timeoutMs);
});

// A nanny-supervised start that will never finish is aborted by close() at once: its worker
// process is killed then, not after startTimeoutMs.
describe('LocalCluster: close() during a pending start', () => {
  for (const nanny of [true, false]) {
    it(`aborts the start at once (nanny: ${nanny})`, async () => {
      const cluster = await LocalCluster.start({ nWorkers: 0, memoryLimit: '1GB', nanny, modules: [HANGING_MODULE], startTimeoutMs: 60_000 });
      let closed = false;
      try {
        await cluster.scale(1);
        const [name] = cluster.pendingWorkers;
        expect(name).toBeDefined();
        // The worker process runs (it hangs loading its module): wait until it is our child.
        for (const end = Date.now() + 10_000; liveChildren().length === 0 && Date.now() < end; ) await new Promise((r) => setTimeout(r, 20));
        expect(liveChildren()).toHaveLength(1);
        expect(cluster.workerStatus().pending.map((p) => p.name)).toEqual([name]);
        const t0 = Date.now();
        await cluster.close();
        closed = true;
        expect(Date.now() - t0).toBeLessThan(5_000);
        expect(cluster.jobs().find((j) => j.name === name)?.status()).toMatchObject({ state: 'finished', reason: 'cancelled: no longer wanted' });
      } finally {
        if (!closed) await cluster.close();
      }
      expect(liveChildren()).toEqual([]);
    }, 30_000);
  }
});

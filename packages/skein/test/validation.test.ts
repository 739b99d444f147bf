import { mkdtempSync, readFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { InvariantViolation } from '@skein/common';
import { LocalCluster } from '../src/index.js';
import { until } from './helpers.js';

// The test setup (tools/test/support/setup.ts) runs every test in validation mode: these pin that
// a LocalCluster gets it everywhere, and that a broken invariant reaches the report it reads.
describe('validation mode in tests', () => {
  it('is on for the in-process scheduler and passed to every worker process', async () => {
    expect(process.env['SKEIN_VALIDATE']).toBe('1');
    const cluster = await LocalCluster.start({ nWorkers: 2, memoryLimit: '1GB' });
    try {
      expect(cluster.options.validate).toBe(true);
      expect(cluster.scheduler.options.validate).toBe(true);
      expect(cluster.scheduler.state.opts.validate).toBe(true);
      expect(cluster.workers.size).toBe(2);
      for (const w of cluster.workers.values()) {
        const argv = readFileSync(`/proc/${w.pid}/cmdline`, 'utf8').split('\0');
        expect(argv).toContain('--validate');
      }
    } finally {
      await cluster.close();
    }
  });

  it("records a broken scheduler invariant in the setup's report (here a file of this test's)", async () => {
    const saved = process.env['SKEIN_VALIDATE_REPORT'];
    const dir = mkdtempSync(join(tmpdir(), 'skein-validation-'));
    const report = join(dir, 'report.jsonl');
    process.env['SKEIN_VALIDATE_REPORT'] = report;
    const cluster = await LocalCluster.start({ nWorkers: 0 });
    const counts = cluster.scheduler.state.counts;
    try {
      // A count the state machine keeps by hand, off by one: the next event (the scheduler's
      // heartbeat tick) finds it.
      counts.memory += 1;
      await until(() => existsSync(report), 10_000, 'the broken invariant to be recorded');
      counts.memory -= 1;
      const first = JSON.parse(readFileSync(report, 'utf8').split('\n')[0]!) as InvariantViolation;
      expect(first.where).toBe(`scheduler ${cluster.scheduler.address}`);
      expect(first.pid).toBe(process.pid);
      expect(first.message).toBe('SchedulerState invariant broken: count of memory: 1 != 0');
    } finally {
      await cluster.close();
      if (saved === undefined) delete process.env['SKEIN_VALIDATE_REPORT'];
      else process.env['SKEIN_VALIDATE_REPORT'] = saved;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

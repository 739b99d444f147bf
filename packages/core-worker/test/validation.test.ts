import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { InvariantViolation } from '@skein/common';
import { Worker } from '../src/worker.js';
import { FakeScheduler } from './fake-scheduler.js';
import { TASKS } from './harness.js';

// The test setup (tools/test/support/setup.ts) turns validation mode on (SKEIN_VALIDATE=1) and
// fails a test during which a state invariant broke, as recorded in SKEIN_VALIDATE_REPORT.
describe('a worker in validation mode', () => {
  it('is in validation mode by default in tests', async () => {
    const sched = await FakeScheduler.start(0);
    const worker = await Worker.start({ scheduler: sched.address, modules: [TASKS] });
    try {
      expect(worker.options.validate).toBe(true);
    } finally {
      await worker.close();
      await sched.close();
    }
  });

  it("records a broken invariant in the report (here a file of this test's) and logs it", async () => {
    const saved = process.env['SKEIN_VALIDATE_REPORT'];
    const dir = mkdtempSync(join(tmpdir(), 'skein-worker-validation-'));
    const report = join(dir, 'report.jsonl');
    process.env['SKEIN_VALIDATE_REPORT'] = report;
    const sched = await FakeScheduler.start(0);
    const worker = await Worker.start({ scheduler: sched.address, modules: [TASKS] });
    try {
      await sched.waitFor(() => sched.of('heartbeat').length > 0 || undefined);
      // A value with no task: the next event (a FreeKeys from the scheduler) finds it.
      worker.workerState.data.set('ghost', { encoding: 1, data: Buffer.from('1') });
      sched.send(worker.address, { kind: { $case: 'freeKeys', value: { keys: ['nothing'], stimulusId: 'free-nothing' } } });
      await sched.waitFor(() => existsSync(report) || undefined);
      worker.workerState.data.delete('ghost');
      const first = JSON.parse(readFileSync(report, 'utf8').split('\n')[0]!) as InvariantViolation;
      expect(first.where).toBe(`worker ${worker.address}`);
      expect(first.message).toMatch(/^Worker state is inconsistent: ghost: data without a task/);
    } finally {
      await worker.close();
      await sched.close();
      if (saved === undefined) delete process.env['SKEIN_VALIDATE_REPORT'];
      else process.env['SKEIN_VALIDATE_REPORT'] = saved;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

import { describe, expect, it } from 'vitest';
import { sampleProcess } from '../src/proc.js';

describe('sampleProcess', () => {
  it("reads this process's RSS and CPU time from /proc", async () => {
    const s = await sampleProcess(process.pid);
    expect(s).not.toBeNull();
    expect(s!.rss).toBeGreaterThan(10 * 1024 * 1024);
    expect(s!.cpuSeconds).toBeGreaterThan(0);
  });

  it('is null for a process that is gone', async () => {
    expect(await sampleProcess(2 ** 22 + 12345)).toBeNull();
  });

  // issue 18: nannies of a LocalCluster sample every 100 ms in the process that runs the scheduler
  // and the client; procfs reads go straight to the kernel, without thread-pool round trips that
  // wake that process's event loop several times per sample.
  it('answers without a round trip through the thread pool (settled once microtasks have run)', async () => {
    let settled = false;
    void sampleProcess(process.pid).then(() => (settled = true));
    for (let i = 0; i < 5; i++) await Promise.resolve();
    expect(settled).toBe(true);
  });
});

import { describe, expect, it } from 'vitest';
import { Client, type Transition } from '@skein/client';
import { LocalCluster } from '../src/index.js';
import { until } from './helpers.js';

const computedTimes = (story: Transition[], key: string) => story.filter((t) => t.key === key && t.start === 'processing' && t.finish === 'memory').length;

// Level 3: LocalCluster on the Cluster base of @skein/cluster: scale and adapt with a real scheduler.
describe('LocalCluster scale and adapt', () => {
  it('scales worker processes up to 3 and down to 1, keeping every result', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 1, memoryLimit: '1GB' });
    await using client = await Client.connect(cluster);
    await cluster.scale(3);
    await cluster.waitForWorkers(3, { timeoutMs: 30_000 });
    expect(cluster.workers.size).toBe(3);
    expect((await client.schedulerInfo()).workers).toHaveLength(3);
    // Spread results over the three workers (larger than the scheduler keeps inline), then shrink.
    const futures = (await client.schedulerInfo()).workers.map((w, i) =>
      client.submitWith({ workers: [w.address], pure: false }, (x: number) => `value-${x}`.padEnd(100_000, '.'), i),
    );
    const expected = [0, 1, 2].map((i) => `value-${i}`.padEnd(100_000, '.'));
    expect(await client.gather(futures)).toEqual(expected);
    await cluster.scale(1);
    expect(cluster.workers.size).toBe(1);
    const info = await client.schedulerInfo();
    expect(info.workers).toHaveLength(1);
    expect(info.workers[0]!.inMemory).toBe(3); // the retired workers handed their results over
    expect(await client.gather(futures)).toEqual(expected);
    const story = await client.story(...futures);
    for (const f of futures) expect(computedTimes(story, f.key)).toBe(1);
    expect(cluster.logs()['cluster']!.join('\n')).toMatch(/retired/);
  });

  it('adapts: grows under a burst of work, shrinks when idle, recomputes nothing', async () => {
    await using cluster = await LocalCluster.start({ nWorkers: 1, processes: false });
    await using client = await Client.connect(cluster);
    const adaptive = cluster.adapt({ minimum: 1, maximum: 3, intervalMs: 100, waitCount: 3, targetDurationMs: 300 });
    const xs = Array.from({ length: 24 }, (_, i) => i);
    const futures = client.map(
      async (x: number) => {
        await new Promise((r) => setTimeout(r, 150));
        return x * 3;
      },
      xs,
    );
    await until(() => cluster.workers.size === 3, 20_000, 'the cluster to grow to 3 workers');
    expect(await client.gather(futures)).toEqual(xs.map((x) => x * 3));
    await until(() => cluster.workers.size === 1, 20_000, 'the cluster to shrink back to 1 worker');
    expect(adaptive.history.some((h) => h.decision.type === 'up')).toBe(true);
    expect(adaptive.history.some((h) => h.decision.type === 'down')).toBe(true);
    // Every result is still there (moved off the retired workers), none was computed twice.
    expect(await client.gather(futures)).toEqual(xs.map((x) => x * 3));
    const story = await client.story(...futures);
    for (const f of futures) expect(computedTimes(story, f.key)).toBe(1);
    await adaptive.stop();
  });
});

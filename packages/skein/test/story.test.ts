import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, type Transition } from '@skein/client';
import type { SchedulerEvent } from '@skein/core-scheduler';
import { LocalCluster } from '../src/index.js';
import { until } from './helpers.js';

const steps = (story: Transition[], where: string) => story.filter((t) => t.where === where).map((t) => `${t.start}->${t.finish}`);
const indexOf = (story: Transition[], where: string, step: string) => story.findIndex((t) => t.where === where && `${t.start}->${t.finish}` === step);
const timeOf = (story: Transition[], where: string, step: string) => story[indexOf(story, where, step)]!.timeMs;

// Level 3: stories from the scheduler and from the workers' own state machines (WorkerService.GetStory).
describe('client.story from both sides', () => {
  let cluster: LocalCluster;
  let client: Client;
  let a: string;
  let b: string;

  beforeAll(async () => {
    cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 1, memoryLimit: '1GB' });
    client = await Client.connect(cluster);
    [a, b] = (await client.schedulerInfo()).workers.map((w) => w.address) as [string, string];
  });
  afterAll(async () => {
    await client?.close();
    await cluster?.close();
  });

  it('shows a task computed on one worker and fetched by another: both workers and the scheduler, in time order', async () => {
    // Larger than the inline threshold (64 KiB), so b fetches x from a instead of getting it from the scheduler.
    const x = client.submitWith({ workers: [a], pure: false }, (n: number) => 'x'.repeat(n), 100_000);
    const y = client.submitWith({ workers: [b], pure: false }, (s: string) => s.length, x);
    expect(await y.result()).toBe(100_000);

    const story = await client.story(x);
    expect(new Set(story.map((t) => t.where))).toEqual(new Set(['scheduler', a, b]));
    expect(story.skipped).toEqual([]);
    for (const t of story) {
      expect(t.key).toBe(x.key);
      expect(t.stimulusId).not.toBe('');
      expect(t.timeMs).toBeGreaterThan(0);
    }
    for (let i = 1; i < story.length; i++) expect(story[i]!.timeMs).toBeGreaterThanOrEqual(story[i - 1]!.timeMs);

    expect(steps(story, 'scheduler').slice(0, 3)).toEqual(['released->waiting', 'waiting->processing', 'processing->memory']);
    expect(steps(story, a).slice(0, 4)).toEqual(['released->waiting', 'waiting->ready', 'ready->executing', 'executing->memory']);
    expect(steps(story, b).slice(0, 3)).toEqual(['released->fetch', 'fetch->flight', 'flight->memory']);
    expect(story.filter((t) => t.where === a).every((t) => t.worker === a)).toBe(true);
    // Cause before effect (one machine, one clock; within a millisecond the order across processes is open):
    // a computes x, the scheduler learns it, then b fetches it.
    expect(indexOf(story, a, 'ready->executing')).toBeLessThan(indexOf(story, a, 'executing->memory'));
    expect(timeOf(story, a, 'executing->memory')).toBeLessThanOrEqual(timeOf(story, 'scheduler', 'processing->memory'));
    expect(timeOf(story, 'scheduler', 'processing->memory')).toBeLessThanOrEqual(timeOf(story, b, 'released->fetch'));
    expect(indexOf(story, b, 'released->fetch')).toBeLessThan(indexOf(story, b, 'flight->memory'));
    // The stimulus travels: the scheduler logs a's result under the id a gave it, and b's fetch follows from it.
    const finished = story[indexOf(story, a, 'executing->memory')]!.stimulusId;
    expect(story[indexOf(story, 'scheduler', 'processing->memory')]!.stimulusId).toBe(finished);
    expect(story[indexOf(story, b, 'released->fetch')]!.stimulusId).toBe(finished);
  });

  it('tells an empty story for a key nobody knows, without an error', async () => {
    const story = await client.story('no-such-key');
    expect([...story]).toEqual([]);
    expect(story.skipped).toEqual([]);
  });

  it('skips and notes a worker that does not answer in time; the rest of the story is there', async () => {
    const x = client.submitWith({ workers: [a], pure: false }, (n: number) => n + 1, 1);
    expect(await x.result()).toBe(2);
    const info = await client.schedulerInfo();
    const pid = info.workers.find((w) => w.address === b)!.pid;
    process.kill(pid, 'SIGSTOP');
    let story;
    try {
      story = await client.storyWith({ timeoutMs: 500 }, x);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    expect(story.skipped).toHaveLength(1);
    expect(story.skipped[0]).toMatchObject({ worker: b, reason: expect.stringMatching(/GetStory from the worker at .*deadline/i) });
    expect(steps(story, 'scheduler')).toEqual(['released->waiting', 'waiting->processing', 'processing->memory']);
    expect(steps(story, a)).toEqual(['released->waiting', 'waiting->ready', 'ready->executing', 'executing->memory']);
    await expect(client.storyWith({ timeoutMs: 0 }, x)).rejects.toThrow(/timeoutMs must be a positive number/);
  });

  it('gives every heartbeat its own stimulus id', async () => {
    const state = cluster.scheduler.state;
    const handle = state.handle;
    const ids: string[] = [];
    state.handle = function (this: typeof state, event: SchedulerEvent) {
      if (event.type === 'Heartbeat') ids.push(event.stimulusId);
      return handle.call(this, event);
    };
    try {
      await until(() => ids.length >= 4, 10_000, 'four heartbeats');
    } finally {
      state.handle = handle;
    }
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.every((id) => id.startsWith('heartbeat-'))).toBe(true);
  });
});

/**
 * Level 2 (issue 18, scale): the real scheduler of a LocalCluster with many workers. Real worker
 * processes cost too much for hundreds, so these are hand-written worker sessions, speaking the
 * protocol as a worker in another language would (protocol README, "Workers").
 */
import { afterEach, describe, expect, it } from 'vitest';
import { SchedulerServiceClient, type WorkerSessionResponse } from '@skein/protocol';
import { CHANNEL_OPTIONS, PROTOCOL_VERSION, grpcTarget, insecureChannel } from '@skein/common';
import { Client } from '@skein/client';
import { LocalCluster } from '../src/index.js';
import { until } from './helpers.js';

const cleanup: Array<() => Promise<unknown> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

/** `n` worker sessions on one channel; each records the heartbeat interval of every Welcome it gets. */
function sessions(address: string, n: number, prefix: string) {
  const client = new SchedulerServiceClient(grpcTarget(address), insecureChannel(), CHANNEL_OPTIONS);
  const workers = Array.from({ length: n }, (_, i) => {
    const call = client.workerSession();
    const welcomes: number[] = [];
    call.on('data', (r: WorkerSessionResponse) => {
      for (const c of r.commands) if (c.kind?.$case === 'welcome') welcomes.push(c.kind.value.heartbeatIntervalMs);
    });
    call.on('error', () => undefined);
    call.write({
      messages: [
        {
          kind: {
            $case: 'hello',
            value: {
              protocolVersion: PROTOCOL_VERSION,
              address: `tcp://${prefix}-${i}.invalid:1`,
              name: `${prefix}-${i}`,
              nthreads: 1,
              memoryLimit: 0,
              resources: new Map(),
              held: [],
              registeredFunctions: [],
              pid: 1,
              nannyAddress: '',
              batches: true,
              versions: undefined,
            },
          },
        },
      ],
    });
    return { call, welcomes };
  });
  cleanup.push(() => {
    for (const w of workers) w.call.end();
    client.close();
  });
  return workers;
}

describe('a scheduler with many workers', () => {
  it('gives them a longer heartbeat interval as they grow past 100, and the base one again when most have left', async () => {
    const cluster = await LocalCluster.start({ nWorkers: 0 });
    cleanup.push(() => cluster.close());
    const client = await Client.connect(cluster);
    cleanup.push(() => client.close());
    const first = sessions(cluster.schedulerAddress, 100, 'first');
    await until(async () => (await client.schedulerInfo()).workers.length === 100, 20_000, '100 workers');
    // Up to 100 workers: the default interval (1 s), once, in each worker's own Welcome.
    expect(first.every((w) => w.welcomes.length === 1 && w.welcomes[0] === 1000)).toBe(true);
    const more = sessions(cluster.schedulerAddress, 60, 'more');
    await until(async () => (await client.schedulerInfo()).workers.length === 160, 20_000, '160 workers');
    // Past 100: twice the interval, told again to the workers already there, and to the new ones.
    await until(() => first.every((w) => w.welcomes.at(-1) === 2000), 10_000, 'the first workers to hear 2 s');
    expect(first.every((w) => w.welcomes.length === 2)).toBe(true);
    expect(more.every((w) => w.welcomes.at(-1) === 2000)).toBe(true);
    // Most leave (a quarter of what raised it left, 50, or fewer): the base interval again.
    for (const w of [...first.slice(40), ...more]) w.call.end();
    await until(async () => (await client.schedulerInfo()).workers.length === 40, 20_000, '40 workers');
    await until(() => first.slice(0, 40).every((w) => w.welcomes.at(-1) === 1000), 10_000, 'the remaining workers to hear 1 s');
  });
});

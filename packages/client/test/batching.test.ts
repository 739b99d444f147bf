/** The client's outgoing messages stay far below the scheduler's receive limit (issue 14). */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ClientSessionRequest } from '@skein/protocol';
import { Client } from '../src/index.js';
import { FakeCluster } from './fake-cluster.js';

let fake: FakeCluster;
let client: Client;

async function until(cond: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** The largest session request the fake received, encoded (bytes). */
const largestRequest = () => Math.max(...fake.requests.map((r) => ClientSessionRequest.encode(r).finish().length));

describe("the client's batching", () => {
  beforeEach(async () => {
    fake = await FakeCluster.start();
    client = await Client.connect(fake.address);
  });
  afterEach(async () => {
    await client?.close();
    await fake.close();
  });

  it('splits a map with large arguments into updates of about 1 MiB', async () => {
    // 600 tasks of 20 kB of arguments: 12 MB, in one turn of the event loop.
    const xs = Array.from({ length: 600 }, (_, i) => 'a'.repeat(20_000) + i);
    const out = await client.gather(client.map((s: string) => s.length, xs));
    expect(out).toEqual(xs.map((s) => s.length));
    expect(fake.updates.length).toBeGreaterThanOrEqual(10);
    expect(largestRequest()).toBeLessThan(1.2 * 1024 * 1024);
  });

  it('splits releases of many keys into messages of at most 20,000 keys', async () => {
    const n = 20_500;
    const futures = client.map((x: number) => x, Array.from({ length: n }, (_, i) => i));
    await client.gather(futures.slice(-1));
    client.release(futures);
    await until(() => fake.keysOf('releaseKeys').length === n);
    const releases = fake.received.flatMap((m) => (m.kind?.$case === 'releaseKeys' ? [m.kind.value.keys.length] : []));
    expect(Math.max(...releases)).toBeLessThanOrEqual(20_000);
    expect(largestRequest()).toBeLessThan(1.2 * 1024 * 1024);
  });
});

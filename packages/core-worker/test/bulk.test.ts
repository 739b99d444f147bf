import { describe, expect, it } from 'vitest';
import { BulkServer, fetchBulk, BULK_MIN_BYTES } from '../src/server/bulk.js';

describe('bulk path', () => {
  it('moves a value over raw TCP into shared memory, once per token', async () => {
    const bulk = await BulkServer.start('127.0.0.1');
    try {
      const data = Buffer.alloc(3 * BULK_MIN_BYTES + 7);
      for (let i = 0; i < data.length; i += 997) data[i] = i % 256;
      const token = bulk.offer(data);
      const got = await fetchBulk('127.0.0.1', bulk.port, token, data.length, 'peer');
      expect(got.buffer).toBeInstanceOf(SharedArrayBuffer);
      expect(Buffer.compare(got, data)).toBe(0);
      // A token is good for one read only.
      await expect(fetchBulk('127.0.0.1', bulk.port, token, data.length, 'peer')).rejects.toThrow(/cut short \(0 of/);
    } finally {
      await bulk.close();
    }
  });

  it('reports a sender that sends less than announced', async () => {
    const bulk = await BulkServer.start('127.0.0.1');
    try {
      const token = bulk.offer(Buffer.alloc(10));
      await expect(fetchBulk('127.0.0.1', bulk.port, token, 20, 'peer')).rejects.toThrow(/cut short \(10 of 20 bytes\)/);
    } finally {
      await bulk.close();
    }
  });
});

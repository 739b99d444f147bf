import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { BulkServer, fetchBulk, BULK_FRAME_BYTES, BULK_MIN_BYTES } from '../src/server/bulk.js';

describe('bulk path', () => {
  it('moves a value over raw TCP into shared memory, once per token', async () => {
    const bulk = await BulkServer.start('127.0.0.1');
    try {
      const data = Buffer.alloc(3 * BULK_MIN_BYTES + 7);
      for (let i = 0; i < data.length; i += 997) data[i] = i % 256;
      const { token, key } = bulk.offer(data);
      expect(key.length).toBe(0);
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
      const { token } = bulk.offer(Buffer.alloc(10));
      await expect(fetchBulk('127.0.0.1', bulk.port, token, 20, 'peer')).rejects.toThrow(/cut short \(10 of 20 bytes\)/);
    } finally {
      await bulk.close();
    }
  });
});

describe('encrypted bulk path (clusters with TLS)', () => {
  it('moves a value of several frames as AES-GCM frames into shared memory, once per token', async () => {
    const bulk = await BulkServer.start('127.0.0.1', { encrypted: true });
    try {
      for (const size of [BULK_MIN_BYTES, 2 * BULK_FRAME_BYTES, 2 * BULK_FRAME_BYTES + 12_345]) {
        const data = randomBytes(size);
        const { token, key } = bulk.offer(data);
        expect(key.length).toBe(32);
        const got = await fetchBulk('127.0.0.1', bulk.port, token, data.length, 'peer', key);
        expect(got.buffer).toBeInstanceOf(SharedArrayBuffer);
        expect(Buffer.compare(got, data)).toBe(0);
        await expect(fetchBulk('127.0.0.1', bulk.port, token, data.length, 'peer', key)).rejects.toThrow(/cut short \(0 of/);
      }
    } finally {
      await bulk.close();
    }
  });

  it('sends nothing readable on the wire: a reader without the key gets ciphertext, a wrong key fails the integrity check', async () => {
    const bulk = await BulkServer.start('127.0.0.1', { encrypted: true });
    try {
      const data = Buffer.alloc(BULK_MIN_BYTES, 7);
      // An eavesdropper's view: what goes over the socket (ciphertext and tag) is not the value.
      const { token } = bulk.offer(data);
      const raw = await fetchBulk('127.0.0.1', bulk.port, token, data.length + 16, 'peer');
      expect(raw.subarray(0, data.length).equals(data)).toBe(false);
      const wrong = bulk.offer(data);
      await expect(fetchBulk('127.0.0.1', bulk.port, wrong.token, data.length, 'peer', randomBytes(32))).rejects.toThrow(/failed its integrity check \(frame 0\)/);
      // The total is part of what the tag covers: a reader told another size fails too.
      const other = bulk.offer(data);
      await expect(fetchBulk('127.0.0.1', bulk.port, other.token, data.length - 1, 'peer', other.key)).rejects.toThrow(/integrity check|more than the announced/);
    } finally {
      await bulk.close();
    }
  });
});

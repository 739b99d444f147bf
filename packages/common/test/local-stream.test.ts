import { describe, expect, it } from 'vitest';
import { status as GrpcStatus } from '@grpc/grpc-js';
import { localStreamPair } from '../src/index.js';

/** Lets every queued microtask (and the ones they queue) run. */
const settle = () => new Promise<void>((r) => setImmediate(r));

describe('localStreamPair', () => {
  it('delivers messages in order, never inside the write, both ways', async () => {
    const { client, server } = localStreamPair<number, string>();
    const atServer: number[] = [];
    const atClient: string[] = [];
    server.on('data', (m: number) => {
      atServer.push(m);
      server.write(`echo ${m}`);
    });
    client.on('data', (m: string) => atClient.push(m));
    for (let i = 0; i < 5; i++) client.write(i);
    expect(atServer).toEqual([]);
    await settle();
    expect(atServer).toEqual([0, 1, 2, 3, 4]);
    expect(atClient).toEqual(['echo 0', 'echo 1', 'echo 2', 'echo 3', 'echo 4']);
  });

  it('half-close: the server sees end after the data; its end gives the client an OK status, then close', async () => {
    const { client, server } = localStreamPair<string, string>();
    const seen: string[] = [];
    server.on('data', (m: string) => seen.push(`data ${m}`));
    server.on('end', () => {
      seen.push('end');
      server.end();
    });
    server.on('close', () => seen.push('close'));
    client.on('status', (st: { code: number }) => seen.push(`status ${st.code}`));
    client.on('error', () => seen.push('error'));
    client.write('a');
    client.end();
    expect(client.write('late')).toBe(false);
    await settle();
    expect(seen).toEqual(['data a', 'end', `status ${GrpcStatus.OK}`, 'close']);
    expect(server.writableEnded && server.destroyed).toBe(true);
  });

  it("a server 'error' with a code ends the call with that status: an error, then the status, at the client", async () => {
    const { client, server } = localStreamPair<string, string>();
    const heard: unknown[] = [];
    server.on('error', (e: unknown) => heard.push(e));
    const errors: Array<{ code: number; details: string; message: string }> = [];
    const statuses: Array<{ code: number; details: string }> = [];
    client.on('error', (e: { code: number; details: string; message: string }) => errors.push(e));
    client.on('status', (st: { code: number; details: string }) => statuses.push(st));
    server.write('before');
    const data: string[] = [];
    client.on('data', (m: string) => data.push(m));
    server.emit('error', { code: GrpcStatus.ALREADY_EXISTS, details: 'a client with id x is already connected' });
    expect(server.write('after')).toBe(false);
    await settle();
    expect(data).toEqual(['before']);
    expect(heard).toHaveLength(1);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.code).toBe(GrpcStatus.ALREADY_EXISTS);
    expect(errors[0]!.details).toBe('a client with id x is already connected');
    expect(errors[0]!.message).toMatch(/already connected/);
    expect(statuses.map((s) => s.code)).toEqual([GrpcStatus.ALREADY_EXISTS]);
  });

  it('cancel: the server hears cancelled and close, the client a CANCELLED status; nothing more is delivered', async () => {
    const { client, server } = localStreamPair<string, string>();
    const seen: string[] = [];
    server.on('cancelled', () => seen.push('cancelled'));
    server.on('close', () => seen.push('close'));
    server.on('data', () => seen.push('data'));
    client.on('error', (e: { code: number }) => seen.push(`error ${e.code}`));
    client.on('status', (st: { code: number }) => seen.push(`status ${st.code}`));
    client.cancel();
    await settle();
    client.write('late');
    server.write('late');
    await settle();
    expect(seen).toEqual(['cancelled', 'close', `error ${GrpcStatus.CANCELLED}`, `status ${GrpcStatus.CANCELLED}`]);
  });
});

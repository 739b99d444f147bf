// End-to-end regressions for what the fuzz test (fuzz.test.ts) found, on a real LocalCluster.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client as GrpcClient, Metadata, credentials, status as Status } from '@grpc/grpc-js';
import { ClientSessionRequest, WorkerSessionRequest } from '@skein/protocol';
import { CHANNEL_OPTIONS, PROTOCOL_VERSION, grpcTarget } from '@skein/common';
import { Client } from '@skein/client';
import { SKEIN_BIN, readyOf, startProcess, type Proc } from './helpers.js';

const same = (b: Buffer): Buffer => b;
/** Not a protobuf message: field 0 with an invalid wire type. */
const UNDECODABLE = Buffer.from([0xff]);

/**
 * Writes `msgs` on a session all at once, half-closes, and returns how the call ended: its status
 * code and details, or 'no answer' when the scheduler left it open past `ms`.
 */
function session(c: GrpcClient, method: string, msgs: Buffer[], ms = 5_000): Promise<{ code: number; details: string } | 'no answer'> {
  return new Promise((resolve) => {
    const call = c.makeBidiStreamRequest(`/skein.v1.SchedulerService/${method}`, same, same, new Metadata(), { deadline: Date.now() + ms });
    call.on('data', () => undefined);
    call.on('error', () => undefined);
    call.on('status', (s) => resolve(s.code === Status.DEADLINE_EXCEEDED ? 'no answer' : { code: s.code, details: s.details }));
    for (const m of msgs) call.write(m);
    call.end();
  });
}

// A scheduler process (`skein scheduler`): in this process, the calls and the scheduler would share
// one event loop, and the race below would hardly ever show.
describe('a session message the scheduler cannot decode', () => {
  let scheduler: Proc;
  let address = '';
  let rpc: GrpcClient;
  beforeAll(async () => {
    scheduler = startProcess([SKEIN_BIN, 'scheduler', '--host', '127.0.0.1', '--port', '0', '--no-dashboard', '--ready-json']);
    address = (await readyOf(scheduler)).address;
    rpc = new GrpcClient(grpcTarget(address), credentials.createInsecure(), CHANNEL_OPTIONS);
  });
  afterAll(async () => {
    rpc?.close();
    scheduler?.kill('SIGKILL');
    await scheduler?.exited;
  });

  const client = (n: number) => ClientSessionRequest.encode(ClientSessionRequest.fromPartial({ messages: [{ kind: { $case: 'hello', value: { protocolVersion: PROTOCOL_VERSION, clientId: `undecodable-${n}`, batches: true } } }] })).finish();
  // Answered (KeyCancelled: the key is unknown), so the scheduler writes while the next message waits.
  const want = ClientSessionRequest.encode(ClientSessionRequest.fromPartial({ messages: [{ kind: { $case: 'wantKeys', value: { keys: ['no-such-key'], stimulusId: 'w' } } }] })).finish();

  it('ends a client session with a clear error even when the scheduler has just answered an earlier message', async () => {
    for (let n = 0; n < 12; n++) {
      const answered = Array.from({ length: 1 + (n % 3) }, () => Buffer.from(want));
      const end = await session(rpc, 'ClientSession', [Buffer.from(client(n)), ...answered, UNDECODABLE]);
      expect(end, `session ${n}`).toEqual({ code: Status.INVALID_ARGUMENT, details: expect.stringMatching(/could not decode a message of this client session/) as string });
    }
  });

  it('ends a worker session the same way', async () => {
    for (let n = 0; n < 12; n++) {
      const hello = WorkerSessionRequest.encode(WorkerSessionRequest.fromPartial({ messages: [{ kind: { $case: 'hello', value: { protocolVersion: PROTOCOL_VERSION, address: `tcp://127.0.0.1:${10 + n}`, name: 'x', nthreads: 1 } } }] })).finish();
      // A result for a key it was never given: the scheduler answers with FreeKeys.
      const finished = WorkerSessionRequest.encode(WorkerSessionRequest.fromPartial({ messages: [{ kind: { $case: 'taskFinished', value: { key: 'no-such-key', nbytes: 1 } } }] })).finish();
      const answered = Array.from({ length: 1 + (n % 3) }, () => Buffer.from(finished));
      const end = await session(rpc, 'WorkerSession', [Buffer.from(hello), ...answered, UNDECODABLE]);
      expect(end, `session ${n}`).toEqual({ code: Status.INVALID_ARGUMENT, details: expect.stringMatching(/could not decode a message of this worker session/) as string });
    }
  });

  it('leaves the scheduler serving other clients, and the sessions it refused are gone', async () => {
    await using c = await Client.connect(address);
    const info = await c.schedulerInfo();
    expect(info.workers).toEqual([]);
    expect(info.clients).toBe(1);
  });
});

import { describe, expect, it } from 'vitest';
import { ClientSessionRequest, GetStoryRequest, KeysInMemory, TaskSpec, UpdateGraph } from '@skein/protocol';
import { encodeValue, wireProblem } from '../src/index.js';

const bytes = (...b: number[]) => Uint8Array.from(b);

describe('wireProblem (the validating pre-scan of requests)', () => {
  it('accepts what the generated encoders write, nested messages and maps included', () => {
    const spec = TaskSpec.create({
      key: 'k',
      function: { kind: { $case: 'inlineHash', value: 'h' } },
      args: encodeValue([1, 'two'], 'json'),
      dependencies: ['a', 'b'],
      priority: -3,
      retries: 2,
      resources: new Map([['GPU', 1.5]]),
    });
    const req = ClientSessionRequest.encode({
      messages: [{ kind: { $case: 'updateGraph', value: UpdateGraph.create({ tasks: [spec], wantedKeys: ['k'], functions: [{ hash: 'h', source: 'x => x', name: 'f' }] }) } }],
    }).finish();
    expect(wireProblem(req, 'skein.v1.ClientSessionRequest')).toBe('');
    expect(wireProblem(new Uint8Array(), 'skein.v1.GetStoryRequest')).toBe('');
  });

  it('refuses a field with the wrong wire type, naming the message type and the field number', () => {
    // GetStoryRequest.keys (1, a string) sent as a varint: ts-proto would skip it and see no keys.
    expect(wireProblem(bytes(0x08, 0x01), 'skein.v1.GetStoryRequest')).toBe(
      'skein.v1.GetStoryRequest field 1: wire type 0 (varint), the schema says 2 (length-delimited)',
    );
    expect(GetStoryRequest.decode(bytes(0x08, 0x01)).keys).toEqual([]);
  });

  it('finds a wrong wire type deep inside nested messages', () => {
    // TaskSpec.priority (5, an int32) as a 32-bit value, inside UpdateGraph.tasks inside ClientMessage.update_graph.
    const task = [0x0a, 0x01, 0x6b, 0x2d, 1, 2, 3, 4];
    const update = [0x0a, task.length, ...task];
    const message = [0x12, update.length, ...update];
    const req = bytes(0x0a, message.length, ...message);
    expect(wireProblem(req, 'skein.v1.ClientSessionRequest')).toBe('skein.v1.TaskSpec field 5: wire type 5 (32-bit), the schema says 0 (varint)');
  });

  it('takes repeated numbers packed or not, and skips field numbers it does not know', () => {
    const packed = KeysInMemory.encode(KeysInMemory.create({ keys: ['a', 'b'], workerCounts: [1, 2] })).finish();
    expect(wireProblem(packed, 'skein.v1.KeysInMemory')).toBe('');
    // worker_counts (5) unpacked: two varints.
    expect(wireProblem(bytes(0x28, 0x01, 0x28, 0x02), 'skein.v1.KeysInMemory')).toBe('');
    // Field 99 (unknown) as a varint, then a length-delimited field 100.
    expect(wireProblem(bytes(0x98, 0x06, 0x05, 0xa2, 0x06, 0x01, 0x00), 'skein.v1.GetStoryRequest')).toBe('');
  });

  it('refuses truncation, groups and field number 0', () => {
    expect(wireProblem(bytes(0x0a, 0x05, 0x61), 'skein.v1.GetStoryRequest')).toBe('skein.v1.GetStoryRequest field 1: a length of 5 bytes past the end of the message');
    expect(wireProblem(bytes(0x0b), 'skein.v1.GetStoryRequest')).toContain('wire type 3 (group start)');
    expect(wireProblem(bytes(0x00, 0x00), 'skein.v1.GetStoryRequest')).toBe('skein.v1.GetStoryRequest field 0: field number 0 is not allowed');
    expect(wireProblem(bytes(0x19, 1, 2), 'skein.v1.TaskSpec')).toContain('field 3: wire type 1 (64-bit), the schema says 2');
  });
});

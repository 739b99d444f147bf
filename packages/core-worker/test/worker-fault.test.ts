import { describe, expect, it } from 'vitest';
import { decodeValue } from '@skein/common';
import { computeCmd, workerHarness } from './harness.js';

const { setup } = workerHarness();

// The internal-error policy of the worker shell (Dask's fail_hard), with injected faults.
describe('Worker shell: an internal error closes the worker', () => {
  it('on a scheduler command: says why (WorkerClosing after what was queued) and closes with an InternalError', async () => {
    const { sched, worker } = await setup({ testFault: 'FreeKeys' });
    sched.send(worker.address, computeCmd('add-1', 'add', [1, 2]));
    const fin = await sched.waitFor(() => sched.of('taskFinished')[0]);
    expect(decodeValue(fin.value)).toBe(3);
    sched.send(worker.address, { kind: { $case: 'freeKeys', value: { keys: ['add-1'], stimulusId: 'free-7' } } });
    const closed = await worker.closed;
    expect(closed.error?.code).toBe('internal');
    expect(closed.error?.name).toBe('InternalError');
    expect(closed.reason).toMatch(/internal error while handling FreeKeys \(free-7\): injected fault \(SKEIN_TEST_FAULT=FreeKeys:1\)/);
    const closing = await sched.waitFor(() => sched.of('closing')[0]);
    expect(closing).toEqual({ reason: closed.reason, stimulusId: 'free-7' });
    // The last message of the session.
    expect(sched.messages.at(-1)?.kind?.$case).toBe('closing');
    expect(worker.status).toBe('closed');
  });

  it('on the result of a task (an event queued from async work): closes instead of throwing from a microtask', async () => {
    const { sched, worker } = await setup({ testFault: 'ExecuteSuccess:2' });
    sched.send(worker.address, computeCmd('add-1', 'add', [1, 2]));
    await sched.waitFor(() => sched.of('taskFinished')[0]);
    sched.send(worker.address, computeCmd('add-2', 'add', [2, 2]));
    const closed = await worker.closed;
    expect(closed.error?.code).toBe('internal');
    expect(closed.reason).toMatch(/while handling ExecuteSuccess .*injected fault/);
    expect(sched.of('closing')).toHaveLength(1);
    expect(sched.of('taskFinished').map((f) => f.key)).toEqual(['add-1']);
  });

  it('refuses a malformed fault spec with the format', async () => {
    await expect(setup({ testFault: 'FreeKeys:0' })).rejects.toThrow(/testFault="FreeKeys:0": expected <event type>\[:<nth>\]/);
  });
});

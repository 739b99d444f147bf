import { describe, expect, it } from 'vitest';
import {
  CancelledError,
  InternalError,
  InvalidArgumentError,
  InvalidTransitionError,
  KilledWorkerError,
  SkeinError,
  TaskError,
  errorInfoFromWire,
  fromRemoteError,
  taskError,
  toRemoteError,
} from '../src/lite.js';
import { NpmInstallError, VersionMismatchError } from '../src/errors.js';

describe('errors on the wire', () => {
  it('rebuilds a version mismatch and a failed npm install as their own classes, with their details and message', () => {
    const npm = fromRemoteError(toRemoteError(new NpmInstallError(['nope@1'], '/pkgs', 'npm error 404', 'exit code 1')));
    expect(npm).toBeInstanceOf(NpmInstallError);
    expect(npm).toMatchObject({ code: 'install_failed', packages: ['nope@1'], directory: '/pkgs', output: 'npm error 404' });
    expect(npm.message).toContain('exit code 1');
    const diffs = [{ what: 'node', versions: new Map([['v20', ['scheduler']], ['v22', ['worker tcp://w:1']]]) }];
    const vm = fromRemoteError(toRemoteError(new VersionMismatchError(diffs)));
    expect(vm).toBeInstanceOf(VersionMismatchError);
    expect((vm as VersionMismatchError).differences).toEqual(diffs);
    expect(vm.message).toContain('v22');
  });

  it('taskError builds the wire record a state machine decides: type from the code, details as JSON, no stack', () => {
    expect(taskError('k', 'killed_worker', 'died', { key: 'k', deaths: 4, reason: 'oom' })).toEqual({
      type: 'KilledWorkerError',
      message: 'died',
      stack: '',
      code: 'killed_worker',
      key: 'k',
      detailsJson: JSON.stringify({ key: 'k', deaths: 4, reason: 'oom' }),
    });
    expect(taskError('k', 'invalid_argument', 'bad').type).toBe('InvalidArgumentError');
    expect(taskError('k', 'not_found', 'gone')).toMatchObject({ type: 'SkeinError', detailsJson: '' });
    expect(taskError('k', 'unavailable', 'none', { timeoutMs: 5 }, 'NoValidWorkerError').type).toBe('NoValidWorkerError');
  });

  it('one converter each way: a thrown error and the error a future rejects with', () => {
    const killed = fromRemoteError(toRemoteError(new KilledWorkerError('k', 4, 'oom'), 'k'));
    expect(killed).toBeInstanceOf(KilledWorkerError);
    expect(killed).toMatchObject({ key: 'k', deaths: 4 });
    expect(fromRemoteError(toRemoteError(new CancelledError('k', 'stop'), 'k'))).toBeInstanceOf(CancelledError);

    class ParseFailure extends Error {}
    const user = fromRemoteError(toRemoteError(new ParseFailure('no'), 'k'));
    expect(user).toBeInstanceOf(TaskError);
    expect(user).toMatchObject({ key: 'k', remoteType: 'ParseFailure', message: 'no' });

    const refused = fromRemoteError(taskError('k', 'invalid_argument', 'cycle', { cycle: ['k'] }));
    expect(refused).toBeInstanceOf(TaskError);
    expect(refused).toMatchObject({ remoteType: 'InvalidArgumentError' });

    const internal = fromRemoteError(taskError('k', 'internal', 'state broke', { stimulusId: 'tick-7', story: [] }));
    expect(internal).toBeInstanceOf(InternalError);
    expect(internal).toMatchObject({ code: 'internal', stimulusId: 'tick-7', taskKey: 'k', message: 'state broke' });
    // A task whose thread died failed with code internal too, but that is no bug in Skein.
    const died = fromRemoteError(toRemoteError(new SkeinError('internal', 'Task k failed: the thread exited'), 'k'));
    expect(died).toBeInstanceOf(TaskError);
    expect(died).toMatchObject({ remoteType: 'SkeinError' });
  });

  it('a wire RemoteError with an unknown code reads as a user error; a missing one as an internal error', () => {
    const e = errorInfoFromWire({ type: 'Boom', message: 'm', stack: 's', code: 'no-such-code', key: '', detailsJson: '' }, 'k');
    expect(e).toEqual({ type: 'Boom', message: 'm', stack: 's', code: '', key: 'k', detailsJson: '' });
    expect(errorInfoFromWire(undefined, 'k', 'nothing came')).toMatchObject({ code: 'internal', key: 'k', message: 'nothing came' });
  });

  it('InvalidTransitionError of either state machine is an InternalError (a SkeinError with code internal) with the story', () => {
    const e = new InvalidTransitionError('worker', 'k', 'memory', 'flight', [{ start: 'released', finish: 'memory', stimulusId: 's1' }]);
    expect(e).toBeInstanceOf(InternalError);
    expect(e).toBeInstanceOf(SkeinError);
    expect(e.code).toBe('internal');
    expect(e.message).toMatch(/memory->flight of task k in the worker state[^]*released->memory \(s1\)/);
    expect(new InvalidArgumentError('x')).not.toBeInstanceOf(InternalError);
  });
});

/** What the worker shell tests share: the fixture module, ComputeTask commands, a worker on a fake scheduler. */
import { afterEach } from 'vitest';
import { fileURLToPath } from 'node:url';
import { TaskSpec, type WorkerCommand } from '@skein/protocol';
import { encodeValue, inlineFunction } from '@skein/common';
import { Worker } from '../src/worker.js';
import { FakeScheduler } from './fake-scheduler.js';

export const TASKS = fileURLToPath(new URL('./fixtures/tasks.mjs', import.meta.url));

let seq = 0;

/** A ComputeTask command for `fn` (a registered name or an inline function) with JSON arguments. */
export function computeCmd(
  key: string,
  fn: string | Function,
  args: unknown[],
  extra: Partial<{ deps: string[]; whoHas: Array<{ key: string; workers: string[]; nbytes: number }>; sendSource: boolean }> = {},
): WorkerCommand {
  const inline = typeof fn === 'function' ? inlineFunction(fn) : undefined;
  return {
    kind: {
      $case: 'compute',
      value: {
        // TaskSpec.create fills every field left out with its protobuf default.
        spec: TaskSpec.create({
          key,
          function: { kind: inline ? { $case: 'inlineHash', value: inline.hash } : { $case: 'registered', value: fn as string } },
          args: encodeValue(args, 'json'),
          dependencies: extra.deps ?? [],
        }),
        function: inline && extra.sendSource !== false ? inline : undefined,
        whoHas: extra.whoHas ?? [],
        inlineInputs: {},
        sequence: ++seq,
        stimulusId: `compute-${key}`,
      },
    },
  };
}

/**
 * Registers an afterEach that runs the returned `cleanup` list backwards; `setup` starts a fake
 * scheduler and a worker (with the fixture module) registered to it, both cleaned up.
 */
export function workerHarness() {
  const cleanup: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    for (const f of cleanup.splice(0).reverse()) await Promise.resolve(f()).catch(() => undefined);
  });
  async function setup(opts: Partial<Parameters<typeof Worker.start>[0]> = {}) {
    const sched = await FakeScheduler.start();
    cleanup.push(() => sched.close());
    const worker = await Worker.start({ scheduler: sched.address, modules: [TASKS], validate: true, ...opts });
    cleanup.push(() => worker.close());
    return { sched, worker };
  }
  return { cleanup, setup };
}

/** What the worker shell tests share: the fixture module, ComputeTask/ComputeBatch commands, a worker on a fake scheduler. */
import { afterEach } from 'vitest';
import { fileURLToPath } from 'node:url';
import { TaskSpec, type ComputeBatch, type WorkerCommand } from '@skein/protocol';
import { buildValueColumn, encodeValue, inlineFunction } from '@skein/common';
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
        inlineInputs: new Map(),
        sequence: ++seq,
        stimulusId: `compute-${key}`,
      },
    },
  };
}

/**
 * A ComputeBatch command: `fn` (a registered name or an inline function) applied to each entry of
 * `argsList` (JSON arguments), keys `<prefix>-<i>`. The batch is returned as a plain object, so a
 * test can break one of its columns before sending it.
 */
export function computeBatchCmd(
  prefix: string,
  fn: string | Function,
  argsList: unknown[][],
  extra: Partial<{ sendSource: boolean; name: string; stimulusId: string; priority: number }> = {},
): WorkerCommand & { kind: { $case: 'computeBatch'; value: ComputeBatch } } {
  const inline = typeof fn === 'function' ? inlineFunction(fn) : undefined;
  const keys = argsList.map((_, i) => `${prefix}-${i}`);
  return {
    kind: {
      $case: 'computeBatch',
      value: {
        tasks: {
          function: { kind: inline ? { $case: 'inlineHash', value: inline.hash } : { $case: 'registered', value: fn as string } },
          keys,
          args: buildValueColumn(argsList.map((a) => encodeValue(a, 'json'))),
          dependencyCounts: [],
          dependencies: [],
          priority: extra.priority ?? 0,
          retries: 0,
          resources: new Map(),
          workers: [],
          allowOtherWorkers: false,
          resultEncoding: 0,
          pure: false,
        },
        sequences: keys.map(() => ++seq),
        function: inline && extra.sendSource !== false ? { ...inline, name: extra.name ?? inline.name } : undefined,
        stimulusId: extra.stimulusId ?? `compute-batch-${prefix}`,
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
  /** `schedOpts.batches`: the fake's Welcome says it reads TasksFinished (default: it does not). */
  async function setup(opts: Partial<Parameters<typeof Worker.start>[0]> = {}, schedOpts: { batches?: boolean } = {}) {
    const sched = await FakeScheduler.start(0, schedOpts);
    cleanup.push(() => sched.close());
    const worker = await Worker.start({ scheduler: sched.address, modules: [TASKS], validate: true, ...opts });
    cleanup.push(() => worker.close());
    return { sched, worker };
  }
  return { cleanup, setup };
}

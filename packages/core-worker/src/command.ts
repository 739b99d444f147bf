/**
 * @module @skein/core-worker/command
 * Which file to run to start a worker process, without loading the worker itself (nannies and
 * LocalCluster import this; it needs only node:fs).
 *
 * `pnpm build` bundles skein-worker into dist/bundle/skein-worker.js (tools/bundle-worker.mjs): a
 * worker process loads one file instead of a few hundred modules and registers ~100 ms sooner.
 * `workerCommand()` returns the bundle while it is at least as new as every workspace file it was
 * made from, else dist/cli.js, so in a checkout a bundle older than a later `tsc -b` never runs
 * old code.
 *
 * @example
 * import { spawn } from 'node:child_process';
 * import { workerCommand } from '@skein/core-worker/command';
 * spawn(process.execPath, [workerCommand(), 'tcp://127.0.0.1:8786', '--nthreads', '2']);
 */
import { readFileSync, statSync } from 'node:fs';
import { dirname, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Exit code of a worker that lost its scheduler and gave up after --death-timeout (nannies stop then). */
export const EXIT_SCHEDULER_LOST = 3;
/** Exit code of a worker the scheduler removed (its nanny starts a fresh one). */
export const EXIT_REMOVED = 4;
/** Exit code of a worker that closed on an internal error of its own (its nanny starts a fresh one). */
export const EXIT_INTERNAL_ERROR = 5;

// Both src/ (tests) and dist/ sit one level below the package root.
const dist = resolve(dirname(dirname(fileURLToPath(import.meta.url))), 'dist');

/** The path of the script that starts a worker: pass it to `node` with the skein-worker flags. */
export function workerCommand(): string {
  // An installed package's bundle was built with it from the same files (whose mtimes the
  // installer sets as it likes); only in a checkout can they have been rebuilt since.
  const installed = dist.split(sep).includes('node_modules');
  return freshBundle(resolve(dist, 'bundle'), !installed) ?? resolve(dist, 'cli.js');
}

/**
 * `dir`/skein-worker.js when it is there and (with `checkInputs`) at least as new as every file
 * listed in `dir`/inputs.json (paths relative to `dir`), else undefined.
 */
export function freshBundle(dir: string, checkInputs = true): string | undefined {
  const bundle = resolve(dir, 'skein-worker.js');
  let builtAt: number;
  let inputs: string[];
  try {
    builtAt = statSync(bundle).mtimeMs;
    inputs = checkInputs ? (JSON.parse(readFileSync(resolve(dir, 'inputs.json'), 'utf8')) as { inputs: string[] }).inputs : [];
  } catch {
    return undefined; // not built
  }
  const fresh = inputs.every((input) => {
    // A file that is gone (deleted from the sources) cannot be loaded by dist/cli.js either.
    const changedAt = statSync(resolve(dir, input), { throwIfNoEntry: false })?.mtimeMs ?? 0;
    return changedAt <= builtAt;
  });
  return fresh ? bundle : undefined;
}

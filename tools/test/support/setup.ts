// Runs before every test file of every vitest project (vitest.workspace.ts, setupFiles):
//  1. Validation mode: SKEIN_VALIDATE=1, so every scheduler and worker these tests start (in this
//     process or as child processes, which inherit the environment) checks its state invariants
//     after every event, and SKEIN_VALIDATE_REPORT names a file of this test file's where each
//     broken invariant is recorded (@skein/common invariants.ts). A test during which one was
//     recorded fails, with the invariant's message and where it broke.
//  2. The leak check: after the file's tests (and its own afterAll hooks) the file must have left
//     no child process, open socket, server, pipe or file, or active timer behind (leaks.ts); the
//     processes it leaked are killed. SKEIN_LEAK_TRACE=1 also names where each leaked thing was made.
// Both assume vitest's default `forks` pool: one test file at a time per process (with `threads`,
// the files running next to each other would share the descriptors and the environment).
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { snapshot, traceResources, waitForNoLeaks, type ResourceSnapshot } from './leaks.js';

// An explicit SKEIN_VALIDATE=0 (say, to time a test without validation) is respected.
process.env['SKEIN_VALIDATE'] ??= '1';
const report = join(tmpdir(), `skein-validate-${process.pid}-${randomUUID()}.jsonl`);
process.env['SKEIN_VALIDATE_REPORT'] = report;

/** How many lines of the report earlier tests have answered for. */
let seen = 0;

function newViolations(): string[] {
  if (!existsSync(report)) return [];
  const lines = readFileSync(report, 'utf8').split('\n').filter(Boolean);
  const fresh = lines.slice(seen);
  seen = lines.length;
  return fresh.map((line) => {
    try {
      const v = JSON.parse(line) as { where: string; pid: number; stack: string; message: string };
      return `${v.where} (pid ${v.pid}): ${v.stack || v.message}`;
    } catch {
      return line;
    }
  });
}

function failOnViolations(when: string): void {
  const found = newViolations();
  if (found.length === 0) return;
  throw new Error(`State invariants broke ${when} (validation mode, SKEIN_VALIDATE=1):\n${found.join('\n\n')}`);
}

let before: ResourceSnapshot | undefined;
/** SKEIN_LEAK_TRACE=1: record where each timer, socket, server and process was created (slow). */
let trace: ReturnType<typeof traceResources> | undefined;

beforeAll(() => {
  before = snapshot();
  if (process.env['SKEIN_LEAK_TRACE'] === '1') trace = traceResources();
});

afterEach(() => {
  failOnViolations('during this test');
});

afterAll(async (suite) => {
  const file = (suite as { filepath?: string }).filepath ?? suite.name;
  const problems: string[] = [];
  // First the grace period for closing processes, which may still record a broken invariant.
  const leaks = before ? await waitForNoLeaks(before) : [];
  try {
    failOnViolations(`after the last test of ${file} (in its afterAll hooks or later)`);
  } catch (err) {
    problems.push((err as Error).message);
  }
  rmSync(report, { force: true });
  if (leaks.length > 0) {
    // Leaked processes do not outlive the run (a worker process would keep using a core).
    const killed: number[] = [];
    for (const pid of snapshot().children.keys()) {
      if (before?.children.has(pid)) continue;
      try {
        process.kill(pid, 'SIGKILL');
        killed.push(pid);
      } catch {
        // Gone already.
      }
    }
    problems.push(
      `Leak check: ${file} left ${leaks.length} thing(s) open after its tests; close them in the test or its afterAll:\n  ${leaks.join('\n  ')}` +
        (killed.length > 0 ? `\n(The leak check killed child process ${killed.join(', ')}.)` : '') +
        (trace
          ? `\nResources created during the file and still alive (SKEIN_LEAK_TRACE=1):\n${trace.live().join('\n\n')}`
          : '\n(Run with SKEIN_LEAK_TRACE=1 to see where each live timer, socket, server and process was created.)'),
    );
  }
  trace?.stop();
  if (problems.length > 0) throw new Error(problems.join('\n\n'));
});

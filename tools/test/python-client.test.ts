// Level 3: a real scheduler and two real workers started through their CLIs, and the Python client
// in examples/python (written from proto/ alone) computing a small graph of registered functions.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, run, start, type Proc } from './processes.js';

// Debian's python3 gets grpcio and grpc_tools from apt (tools/setup-test-deps.sh); a python3 earlier
// on PATH (pyenv) usually lacks them. SKEIN_PYTHON overrides.
const python = process.env.SKEIN_PYTHON ?? (existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3');
const schedulerCli = join(repoRoot, 'packages/core-scheduler/dist/cli.js');
const workerCli = join(repoRoot, 'packages/core-worker/dist/cli.js');

describe('examples/python against a real cluster', () => {
  const procs: Proc[] = [];
  let schedulerAddress = '';

  beforeAll(async () => {
    for (const cli of [schedulerCli, workerCli]) {
      if (!existsSync(cli)) throw new Error(`${cli} is missing: run \`pnpm build\` first`);
    }
    const deps = await run(python, ['-c', 'import grpc, grpc_tools.protoc']);
    if (deps.code !== 0) {
      throw new Error(
        `${python} cannot import grpc / grpc_tools; run \`bash tools/setup-test-deps.sh\` ` +
          `(installs python3-grpcio and python3-grpc-tools):\n${deps.stderr}`,
      );
    }

    const scheduler = start('scheduler', process.execPath, [schedulerCli, '--host', '127.0.0.1', '--port', '0']);
    procs.push(scheduler);
    const m = await scheduler.waitFor(/Scheduler at:\s+(tcp:\/\/\S+)/);
    schedulerAddress = m[1]!;

    const workers = [0, 1].map((i) =>
      start(`worker-${i}`, process.execPath, [
        workerCli,
        schedulerAddress,
        '--module',
        'examples/tasks/tasks.mjs',
        '--host',
        '127.0.0.1',
      ]),
    );
    procs.push(...workers);
    await Promise.all(
      workers.map(async (w) => {
        await w.waitFor(/Start worker at:\s+tcp:\/\/\S+/);
        const registered = await w.waitFor(/Registered to:\s+(tcp:\/\/\S+)/);
        expect(registered[1]).toBe(schedulerAddress);
      }),
    );
  });

  afterAll(async () => {
    // Workers first, then the scheduler; each gets SIGTERM, then SIGKILL after 10 s.
    await Promise.all(procs.slice(1).map((p) => p.stop()));
    await procs[0]?.stop();
  });

  it('computes a graph of registered functions and reports a task error', async () => {
    const result = await run(python, [join(repoRoot, 'examples/python/example.py'), schedulerAddress], {
      timeoutMs: 120_000,
    });
    const context = `exit ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}\n` +
      procs.map((p) => `--- ${p.name} output:\n${p.output()}`).join('\n');
    expect(result.code, context).toBe(0);
    expect(result.stdout.trim().split('\n'), context).toEqual([
      'inc(1) = 2',
      'inc(2) = 3',
      'add(inc(1), inc(2)) = 5',
      'sum([inc(1), inc(2), add(...)]) = 10',
      "fail('boom') -> erred: Error: boom",
      'result: 10',
    ]);
    // The cluster is still healthy after the Python client has gone.
    for (const p of procs) expect(p.child.exitCode, `${p.name} exited:\n${p.output()}`).toBeNull();
  });

  // What packages/protocol/README.md promises a client in another language, checked from Python
  // (tools/test/python_contract.py: one function per check, named here).
  const contract: Array<[string, string]> = [
    ['json_result_never_v8', 'a JSON result request for NaN is erred naming the value, never V8'],
    ['marker_shaped_data', 'marker-shaped data quoted as the README says comes back unchanged'],
    ['no_worker', 'a task restricted to a nonexistent worker gets no_worker, then cancelled'],
    ['cancel_then_resubmit', 'cancel then resubmit of a running key: cancelled, then one in_memory'],
    ['sizes', 'over 4 MiB of inline values in one batch, a large value fetched with GetData, GetWhoHas'],
    ['errors_and_unknown_keys', 'errors of inputs, unknown wanted keys and a foreign major version'],
  ];
  it.each(contract)('protocol README contract: %s (%s)', async (check) => {
    const result = await run(python, [join(repoRoot, 'tools/test/python_contract.py'), schedulerAddress, check], {
      timeoutMs: 60_000,
    });
    const context = `exit ${result.code}\nstdout:\n${result.stdout}\nstderr:\n${result.stderr}`;
    expect(result.code, context).toBe(0);
    expect(result.stdout.trim(), context).toBe(`ok ${check}`);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freshBundle, workerCommand } from '../src/command.js';
import { FakeScheduler } from './fake-scheduler.js';
import { parseReadyLine } from '@skein/common';

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
const TASKS = fileURLToPath(new URL('./fixtures/tasks.mjs', import.meta.url));

interface Run {
  code: Promise<number>;
  stdout: () => string;
  stderr: () => string;
  kill: (sig: NodeJS.Signals) => void;
  waitForStdout: (re: RegExp) => Promise<void>;
}

function runCli(args: string[]): Run {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SKEIN_LOG_LEVEL: 'error' } });
  let out = '';
  let err = '';
  const listeners: Array<() => void> = [];
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    listeners.forEach((l) => l());
  });
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = new Promise<number>((resolve) => child.on('exit', (c) => resolve(c ?? -1)));
  cleanup.push(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await code;
  });
  return {
    code,
    stdout: () => out,
    stderr: () => err,
    kill: (sig) => child.kill(sig),
    waitForStdout: (re) =>
      new Promise<void>((resolve, reject) => {
        const check = () => re.test(out) && resolve();
        listeners.push(check);
        check();
        void code.then(() => reject(new Error(`exited; stdout: ${out}; stderr: ${err}`)));
      }),
  };
}

const cleanup: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f().catch(() => undefined);
});

describe('skein-worker CLI', () => {
  it.each([
    [['tcp://127.0.0.1:8786', '--bogus', '1'], /Unknown argument: bogus/],
    [['tcp://127.0.0.1:notaport'], /Bad port "notaport"/],
    [['tcp://127.0.0.1:8786', '--resources', 'GPU'], /Bad resource "GPU"/],
    [['tcp://127.0.0.1:8786', '--nthreads', '0'], /nthreads must be a whole number/],
    [['tcp://127.0.0.1:8786', '--nthreads', 'two'], /--nthreads must be a number/],
    [['tcp://127.0.0.1:8786', '--name', '--port', '0'], /--name needs a value/],
    [[], /Missing the scheduler address/],
    [['tcp://127.0.0.1:8786', 'tcp://127.0.0.1:8787'], /Give exactly one scheduler address/],
  ])('bad input %j → one line on stderr, exit 1', async (args, re) => {
    const r = runCli(args);
    expect(await r.code).toBe(1);
    expect(r.stderr()).toMatch(re);
    expect(r.stderr().trim().split('\n')).toHaveLength(1);
    expect(r.stderr()).not.toMatch(/\n\s+at /);
  });

  it('registers, prints its addresses and retires on SIGTERM', async () => {
    const sched = await FakeScheduler.start();
    cleanup.push(() => sched.close());
    const r = runCli([sched.address, '--nthreads', '2', '--resources', 'GPU=2,MEM=1e9', '--name', 'cli-w', '--module', TASKS, '--death-timeout', '5', '--ready-json']);
    await r.waitForStdout(/^\{"event":"ready".*\}$/m);
    const lines = r.stdout().trim().split('\n');
    const ready = parseReadyLine(lines[2]!);
    expect(ready).toEqual({ event: 'ready', role: 'worker', address: expect.stringMatching(/^tcp:\/\/[\d.]+:\d+$/), scheduler: sched.address, name: 'cli-w', pid: expect.any(Number), tls: false });
    // The banners, for people, come first.
    expect(lines.slice(0, 2)).toEqual([`Start worker at:  ${ready!.address}`, `Registered to:    ${sched.address}`]);
    expect(sched.hellos[0]).toMatchObject({ name: 'cli-w', nthreads: 2, resources: new Map([['GPU', 2], ['MEM', 1e9]]) });
    expect(sched.hellos[0]!.registeredFunctions).toContain('add');
    r.kill('SIGTERM');
    expect(await r.code).toBe(0);
    expect(sched.retired).toHaveLength(1);
  });

  it('prints its flags with --help and exits 0', async () => {
    const r = runCli(['--help']);
    expect(await r.code).toBe(0);
    expect(r.stdout()).toMatch(/^Usage: skein-worker <scheduler> \[options\]/);
    expect(r.stdout()).toMatch(/--memory-limit LIMIT/);
    expect(r.stdout()).toMatch(/--module FILE .*\(repeatable\)/);
  });

  it('exits 1 with a one-line message when the scheduler cannot be reached', async () => {
    const r = runCli(['tcp://127.0.0.1:1']);
    expect(await r.code).toBe(1);
    expect(r.stderr().trim()).toMatch(/^skein-worker: Cannot reach the scheduler at tcp:\/\/127\.0\.0\.1:1: .*Is `skein scheduler` running there\?$/);
  }, 30_000);
});

describe('workerCommand', () => {
  it('names the bundle that pnpm build makes, and the bundle runs', async () => {
    expect(workerCommand()).toMatch(/dist\/bundle\/skein-worker\.js$/);
    const child = spawn(process.execPath, [workerCommand(), '--help'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(0);
    expect(out).toMatch(/^Usage: skein-worker/);
  });

  it('passes over a bundle older than a file it was made from', () => {
    const dir = mkdtempSync(join(tmpdir(), 'skein-bundle-'));
    try {
      writeFileSync(join(dir, 'skein-worker.js'), '');
      writeFileSync(join(dir, 'input.js'), '');
      writeFileSync(join(dir, 'inputs.json'), JSON.stringify({ inputs: ['input.js', 'gone.js'] }));
      const at = (file: string, s: number) => utimesSync(join(dir, file), s, s);
      at('skein-worker.js', 2_000);
      at('input.js', 1_000);
      expect(freshBundle(dir)).toBe(join(dir, 'skein-worker.js'));
      at('input.js', 3_000);
      expect(freshBundle(dir)).toBeUndefined();
      expect(freshBundle(dir, false)).toBe(join(dir, 'skein-worker.js'));
      expect(freshBundle(join(dir, 'nothing-here'))).toBeUndefined();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

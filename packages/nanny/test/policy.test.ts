import { describe, expect, it } from 'vitest';
import { RestartPolicy, cpuPercent, memoryVerdict, workerDeathTimeoutMs } from '../src/policy.js';
import { sampleProcess } from '../src/proc.js';
import { parseNannyArgs } from '../src/cli-main.js';

describe('restart back-off', () => {
  it('restarts at once after the first quick death, then backs off exponentially up to the cap', () => {
    const p = new RestartPolicy({ baseDelayMs: 100, maxDelayMs: 1000, healthyAfterMs: 30_000 });
    expect([1, 2, 3, 4, 5, 6].map(() => p.onDeath(50))).toEqual([0, 100, 200, 400, 800, 1000]);
    expect(p.consecutiveQuickDeaths).toBe(6);
  });
  it('forgets earlier deaths once a worker has lived long enough', () => {
    const p = new RestartPolicy({ baseDelayMs: 100, maxDelayMs: 1000, healthyAfterMs: 30_000 });
    p.onDeath(10);
    p.onDeath(10);
    expect(p.onDeath(60_000)).toBe(0);
    expect(p.onDeath(10)).toBe(100);
  });
});

describe('memory verdict', () => {
  it('kills only past the terminate fraction of a set limit, and says why', () => {
    expect(memoryVerdict(940e6, 1e9, 0.95)).toBeNull();
    expect(memoryVerdict(960e6, 1e9, 0.95)).toBe('memory past the limit: RSS 960 MB > 95% of the 1000 MB memory limit');
    expect(memoryVerdict(5e9, 0, 0.95)).toBeNull();
    expect(memoryVerdict(5e9, 1e9, false)).toBeNull();
  });
  it('computes CPU percent from CPU seconds over wall time', () => {
    expect(cpuPercent(1, 0, 1.5, 1000)).toBe(50);
    expect(cpuPercent(1, 1000, 1, 1000)).toBe(0);
  });
});

describe('process sampling', () => {
  it('reads RSS and CPU time of a live process and null for a gone one', async () => {
    const s = await sampleProcess(process.pid);
    expect(s!.rss).toBeGreaterThan(10e6);
    expect(s!.cpuSeconds).toBeGreaterThan(0);
    expect(await sampleProcess(2 ** 22 + 12345)).toBeNull();
  });
});

describe('skein-nanny arguments', () => {
  it('keeps its own flags and passes the worker flags through unchanged', () => {
    const o = parseNannyArgs(['tcp://10.0.0.5:8786', '--nthreads', '2', '--memory-limit', '2GB', '--nanny-port', '9000', '--host', '127.0.0.1', '--terminate-fraction=0.9', '--module', 'a.js']);
    expect(o).toEqual({
      scheduler: 'tcp://10.0.0.5:8786',
      port: 9000,
      memoryLimit: '2GB',
      host: '127.0.0.1',
      terminateFraction: 0.9,
      workerArgs: ['--nthreads', '2', '--host', '127.0.0.1', '--module', 'a.js'],
    });
  });
  it('takes --scheduler-file and --ready-json for itself, and a worker flag\'s value is never the scheduler address', () => {
    expect(parseNannyArgs(['--scheduler-file', '/shared/s.json', '--death-timeout', '5', '--ready-json', '--nthreads=2'])).toEqual({
      scheduler: '',
      schedulerFile: '/shared/s.json',
      readyJson: true,
      workerArgs: ['--death-timeout', '5', '--nthreads=2'],
    });
    expect(() => parseNannyArgs(['tcp://h:1', '--scheduler-file', 'f.json'])).toThrow(/either a scheduler address or --scheduler-file, not both/);
  });
  it('passes a worker flag without a value (--validate) on alone: the next argument is still the scheduler address', () => {
    expect(parseNannyArgs(['--validate', 'tcp://h:1', '--nthreads', '2'])).toEqual({ scheduler: 'tcp://h:1', workerArgs: ['--validate', '--nthreads', '2'] });
  });
  it('rejects bad input with a message that names the flag', () => {
    expect(() => parseNannyArgs([])).toThrow(/missing the scheduler address/);
    expect(() => parseNannyArgs(['udp://x:1'])).toThrow(/Unsupported address scheme/);
    expect(() => parseNannyArgs(['tcp://h:1', '--nanny-port', 'abc'])).toThrow(/--nanny-port must be a number/);
    expect(() => parseNannyArgs(['tcp://h:1', '--terminate-fraction', '2'])).toThrow(/between 0 and 1/);
  });
});

describe("the worker's death timeout, as the nanny reads it from the worker's flags", () => {
  it('reads --death-timeout SECONDS and --death-timeout=SECONDS; none gives undefined', () => {
    expect(workerDeathTimeoutMs(['--nthreads', '2', '--death-timeout', '3'])).toBe(3000);
    expect(workerDeathTimeoutMs(['--death-timeout=0.5'])).toBe(500);
    expect(workerDeathTimeoutMs(['--nthreads', '2'])).toBeUndefined();
  });
  it('refuses a value that is not a number of seconds, naming it', () => {
    expect(() => workerDeathTimeoutMs(['--death-timeout', 'soon'])).toThrow(/--death-timeout must be a number of seconds, got "soon"/);
    expect(() => workerDeathTimeoutMs(['--death-timeout='])).toThrow(/--death-timeout must be a number of seconds/);
  });
});

import { describe, expect, it } from 'vitest';
import { schedulerLaunch, workerFlags, workerLaunch } from '../src/index.js';

describe('workerLaunch', () => {
  it('turns every worker option into skein worker flags, in one place', () => {
    expect(
      workerLaunch({
        scheduler: 'tcp://10.0.0.5:8786',
        name: 'job-7',
        nthreads: 4,
        memoryLimit: '8GB',
        resources: { GPU: 2, MEM: 1e9 },
        modules: ['/shared/tasks.mjs', 'more.mjs'],
        interface: 'ib0',
        deathTimeoutMs: 120_000,
        nanny: false,
        extraArgs: ['--local-directory', '/scratch'],
        env: { SKEIN_LOG_LEVEL: 'info' },
      }),
    ).toEqual({
      argv: [
        'worker', 'tcp://10.0.0.5:8786',
        '--interface', 'ib0', '--name', 'job-7', '--nthreads', '4', '--memory-limit', '8GB',
        '--resources', 'GPU=2,MEM=1000000000', '--module', '/shared/tasks.mjs', '--module', 'more.mjs',
        '--death-timeout', '120', '--ready-json', '--local-directory', '/scratch', '--no-nanny',
      ],
      env: { SKEIN_LOG_LEVEL: 'info' },
    });
  });
  it('finds the scheduler through a file; runs under a nanny and prints the ready line by default', () => {
    expect(workerLaunch({ schedulerFile: '/shared/s.json' }).argv).toEqual(['worker', '--scheduler-file', '/shared/s.json', '--ready-json']);
    expect(workerLaunch({ scheduler: 'tcp://h:1', readyJson: false }).argv).toEqual(['worker', 'tcp://h:1']);
  });
  it('leaves the memory limit to a nanny that sets it itself', () => {
    expect(workerFlags({ memoryLimit: 1e9, nthreads: 1 }, false)).toEqual(['--nthreads', '1', '--ready-json']);
  });
  it('refuses a spec it cannot express, saying what is wrong', () => {
    expect(() => workerLaunch({})).toThrow(/exactly one of scheduler .* and schedulerFile/);
    expect(() => workerLaunch({ scheduler: 'tcp://h:1', schedulerFile: 'f' })).toThrow(/exactly one/);
    expect(() => workerLaunch({ scheduler: 'tcp://h:1', nthreads: 0 })).toThrow('nthreads must be a whole number ≥ 1, got 0.');
    expect(() => workerLaunch({ scheduler: 'tcp://h:1', resources: { 'A,B': 1 } })).toThrow(/resource name .* got "A,B"/);
    expect(() => workerLaunch({ scheduler: 'tcp://h:1', resources: { GPU: Number.NaN } })).toThrow('Resource GPU must be a number ≥ 0, got NaN.');
    expect(() => workerLaunch({ scheduler: 'tcp://h:1', deathTimeoutMs: -1 })).toThrow(/deathTimeoutMs/);
  });
});

describe('schedulerLaunch', () => {
  it('turns the scheduler options into skein scheduler flags', () => {
    expect(schedulerLaunch({ host: '0.0.0.0', port: 0, dashboardAddress: null, schedulerFile: '/shared/s.json', extraArgs: ['--validate'] })).toEqual({
      argv: ['scheduler', '--host', '0.0.0.0', '--port', '0', '--no-dashboard', '--scheduler-file', '/shared/s.json', '--ready-json', '--validate'],
      env: {},
    });
    expect(schedulerLaunch({ interface: 'eth0', dashboardAddress: ':9000', readyJson: false }).argv).toEqual(['scheduler', '--interface', 'eth0', '--dashboard-address', ':9000']);
  });
});

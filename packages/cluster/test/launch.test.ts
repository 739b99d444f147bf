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
      files: [],
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
      files: [],
    });
    expect(schedulerLaunch({ interface: 'eth0', dashboardAddress: ':9000', readyJson: false }).argv).toEqual(['scheduler', '--interface', 'eth0', '--dashboard-address', ':9000']);
  });
});

describe('credentials through the launch spec', () => {
  it('a worker launch names credential files in credentialsDir and lists them to write; no key or token in argv', async () => {
    const { Security } = await import('@skein/common');
    const token = 'a-token-of-thirty-two-characters';
    const security = Security.temporary({ token });
    const l = workerLaunch({ scheduler: 'tls://10.0.0.5:8786', security, credentialsDir: '/home/u/.skein/c1' });
    expect(l.argv).toContain('--tls-cert');
    expect(l.argv[l.argv.indexOf('--tls-cert') + 1]).toBe('/home/u/.skein/c1/nanny-worker.pem');
    expect(l.argv[l.argv.indexOf('--auth-token-file') + 1]).toBe('/home/u/.skein/c1/token');
    expect(l.files.map((f) => f.path).sort()).toEqual(['/home/u/.skein/c1/ca.pem', '/home/u/.skein/c1/nanny-worker-key.pem', '/home/u/.skein/c1/nanny-worker.pem', '/home/u/.skein/c1/token']);
    expect(l.files.every((f) => f.mode === 0o600)).toBe(true);
    const cert = l.files.find((f) => f.path.endsWith('nanny-worker.pem'))!.contents;
    const { X509Certificate } = await import('node:crypto');
    expect(new X509Certificate(cert).subject).toMatch(/OU=worker[\s\S]*OU=nanny|OU=nanny[\s\S]*OU=worker/);
    const text = JSON.stringify(l.argv) + JSON.stringify(l.env);
    expect(text).not.toContain('PRIVATE KEY');
    expect(text).not.toContain(token);
    const s = schedulerLaunch({ security, credentialsDir: '/d' });
    expect(s.argv.slice(s.argv.indexOf('--tls-ca-file'))).toEqual(['--tls-ca-file', '/d/ca.pem', '--tls-cert', '/d/scheduler.pem', '--tls-key', '/d/scheduler-key.pem', '--require-encryption', '--auth-token-file', '/d/token']);
    expect(() => workerLaunch({ scheduler: 'tls://h:1', security })).toThrow(/needs credentialsDir/);
    expect(workerLaunch({ scheduler: 'tcp://h:1' }).files).toEqual([]);
  });
});

import { describe, expect, it } from 'vitest';
import { schedulerLaunch, workerFlags, workerLaunch } from '../src/index.js';

describe('preload in launch specs', () => {
  it('passes --preload to the scheduler and the worker, and --preload-nanny only to a worker under a nanny', () => {
    expect(schedulerLaunch({ preload: ['/srv/a.mjs', 'pkg'], readyJson: false }).argv).toEqual(['scheduler', '--preload', '/srv/a.mjs', '--preload', 'pkg']);
    const spec = { scheduler: 'tcp://h:1', preload: ['/srv/w.mjs'], preloadNanny: ['/srv/n.mjs'], readyJson: false };
    expect(workerLaunch(spec).argv).toEqual(['worker', 'tcp://h:1', '--preload', '/srv/w.mjs', '--preload-nanny', '/srv/n.mjs']);
    expect(workerLaunch({ ...spec, nanny: false }).argv).toEqual(['worker', 'tcp://h:1', '--preload', '/srv/w.mjs', '--no-nanny']);
    // The worker's own flags (what a nanny passes on) never carry the nanny's.
    expect(workerFlags(spec)).toEqual(['--preload', '/srv/w.mjs']);
  });
});

import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Nanny } from '../src/nanny.js';

describe('Nanny.start with an abort signal', () => {
  it('kills a prespawned worker process when the start is aborted while the nanny binds its port', async () => {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = once(child, 'exit');
    try {
      const abort = new AbortController();
      const start = Nanny.start({ scheduler: 'tcp://127.0.0.1:1', host: '127.0.0.1', signal: abort.signal }, child);
      abort.abort();
      await expect(start).rejects.toMatchObject({ code: 'cancelled' });
      const deadline = new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), 2000).unref());
      expect(await Promise.race([exited.then(() => 'exited' as const), deadline])).toBe('exited');
    } finally {
      child.kill('SIGKILL');
    }
  });
});

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { lock } from '../src/environment/npm.js';

const LOCK = '.skein-install.lock';

function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  return r.pid!;
}

describe('npm install lock', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const newDir = () => {
    const d = mkdtempSync(join(tmpdir(), 'skein-npm-lock-'));
    dirs.push(d);
    return d;
  };

  it('two waiters breaking the same stale lock: only one holds it at a time', async () => {
    const dir = newDir();
    writeFileSync(join(dir, LOCK), JSON.stringify({ host: hostname(), pid: deadPid() }));
    // Both waiters judge the lock stale before either breaks it (the race).
    let judged = 0;
    let bothJudged!: () => void;
    const barrier = new Promise<void>((r) => (bothJudged = r));
    const hooks = {
      beforeBreak: async () => {
        if (++judged === 2) bothJudged();
        await barrier;
      },
    };
    let holding = 0;
    let most = 0;
    const holdAndRelease = async () => {
      const release = await lock(dir, Date.now() + 10_000, 60_000, hooks);
      holding++;
      most = Math.max(most, holding);
      // Hold over a few turns of the event loop, so the other waiter gets to run meanwhile.
      for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 10));
      holding--;
      release();
    };
    await Promise.all([holdAndRelease(), holdAndRelease()]);
    expect(most).toBe(1);
    expect(existsSync(join(dir, LOCK))).toBe(false);
  });

  it('release removes only its own lock, not one another process took after breaking it', async () => {
    const dir = newDir();
    const release = await lock(dir, Date.now() + 10_000, 60_000);
    // Another waiter judged ours stale and broke it, then took the lock itself.
    const theirs = JSON.stringify({ host: hostname(), pid: process.pid, token: 'someone-else' });
    rmSync(join(dir, LOCK));
    writeFileSync(join(dir, LOCK), theirs);
    release();
    expect(readFileSync(join(dir, LOCK), 'utf8')).toBe(theirs);
  });
});

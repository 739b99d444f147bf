import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { watchInvariants, type InvariantViolation } from '../src/index.js';

describe('watchInvariants', () => {
  let dir: string;
  let file: string;
  let saved: string | undefined;
  beforeEach(() => {
    // A report of this test's own, so the test setup (which reads the shared one) sees nothing.
    saved = process.env['SKEIN_VALIDATE_REPORT'];
    dir = mkdtempSync(join(tmpdir(), 'skein-invariants-'));
    file = join(dir, 'report.jsonl');
    process.env['SKEIN_VALIDATE_REPORT'] = file;
  });
  afterEach(() => {
    if (saved === undefined) delete process.env['SKEIN_VALIDATE_REPORT'];
    else process.env['SKEIN_VALIDATE_REPORT'] = saved;
    rmSync(dir, { recursive: true, force: true });
  });

  it('records a broken invariant in the SKEIN_VALIDATE_REPORT file and rethrows it', () => {
    let broken = false;
    const state = {
      validateState(): void {
        if (broken) throw new Error('count of memory: 1 != 0');
      },
    };
    watchInvariants(state, () => 'worker tcp://127.0.0.1:1234');
    state.validateState();
    expect(() => readFileSync(file)).toThrow(/ENOENT/);
    broken = true;
    expect(() => state.validateState()).toThrow('count of memory: 1 != 0');
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(1);
    const v = JSON.parse(lines[0]!) as InvariantViolation;
    expect(v).toMatchObject({ where: 'worker tcp://127.0.0.1:1234', pid: process.pid, message: 'count of memory: 1 != 0' });
    expect(v.stack).toMatch(/validateState/);
  });

  it('only rethrows when no report file is set', () => {
    delete process.env['SKEIN_VALIDATE_REPORT'];
    const state = {
      validateState(): void {
        throw new Error('broken');
      },
    };
    watchInvariants(state, () => 'scheduler');
    expect(() => state.validateState()).toThrow('broken');
    expect(() => readFileSync(file)).toThrow(/ENOENT/);
  });
});

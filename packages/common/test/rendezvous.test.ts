import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseReadyLine, readSchedulerFile, readyJsonWanted, readyLine, removeSchedulerFile, waitForSchedulerFile, writeSchedulerFile } from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'skein-rv-unit-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const identity = { address: 'tcp://10.0.0.5:8786', dashboard: '', id: 'id-1', pid: 42 };

describe('the scheduler file', () => {
  it('is written whole (no temporary file left) and read back', () => {
    const file = join(dir, 'a.json');
    writeSchedulerFile(file, identity);
    expect(readSchedulerFile(file)).toEqual(identity);
    expect(readdirSync(dir)).toEqual(['a.json']);
  });
  it('is removed only by the scheduler it names', () => {
    const file = join(dir, 'b.json');
    writeSchedulerFile(file, identity);
    removeSchedulerFile(file, 'someone-else');
    expect(readSchedulerFile(file)).toEqual(identity);
    removeSchedulerFile(file, 'id-1');
    expect(readSchedulerFile(file)).toBeUndefined();
  });
  it('a wait ends when the file appears, and after the deadline with an error naming it', async () => {
    const file = join(dir, 'c.json');
    const waiting = waitForSchedulerFile(file, 5_000, { intervalMs: 10 });
    setTimeout(() => writeSchedulerFile(file, identity), 50);
    expect(await waiting).toEqual(identity);
    const missing = join(dir, 'missing.json');
    await expect(waitForSchedulerFile(missing, 50, { intervalMs: 10 })).rejects.toMatchObject({
      code: 'deadline_exceeded',
      message: expect.stringContaining(`The scheduler file ${missing} did not appear within 0.05 s`),
    });
  });
  it('a file without an address is refused with its path', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{"dashboard": ""}');
    expect(() => readSchedulerFile(file)).toThrow(`The scheduler file ${file} has no "address"`);
    writeFileSync(file, 'Scheduler at: tcp://x:1');
    expect(() => readSchedulerFile(file)).toThrow(/is not JSON/);
  });
});

describe('the ready line', () => {
  it('round-trips, and other lines are not ready lines', () => {
    const ev = { event: 'ready', role: 'worker', address: 'tcp://h:1', scheduler: 'tcp://h:2', name: 'w', pid: 1 } as const;
    expect(parseReadyLine(readyLine(ev))).toEqual(ev);
    expect(parseReadyLine('Registered to:    tcp://h:2')).toBeUndefined();
    expect(parseReadyLine('{"event":"ready"')).toBeUndefined();
    expect(parseReadyLine('{"event":"ready","role":"client","address":"x"}')).toBeUndefined();
  });
  it('is asked for by the flag or SKEIN_READY_JSON', () => {
    expect(readyJsonWanted(true, {})).toBe(true);
    expect(readyJsonWanted(false, {})).toBe(false);
    expect(readyJsonWanted(undefined, { SKEIN_READY_JSON: '1' })).toBe(true);
    expect(readyJsonWanted(undefined, { SKEIN_READY_JSON: '0' })).toBe(false);
  });
});

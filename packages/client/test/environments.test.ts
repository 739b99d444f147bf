import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@skein/common';
import { UploadDirectory } from '../src/environments.js';

describe('UploadDirectory input checks (client side)', () => {
  const work = mkdtempSync(join(tmpdir(), 'skein-client-upload-'));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('refuses a symbolic link inside the folder, naming it and the way out', () => {
    const dir = join(work, 'withlink');
    mkdirSync(dir);
    writeFileSync(join(dir, 'index.js'), 'export const a = 1;\n');
    writeFileSync(join(work, 'outside.js'), 'export const b = 2;\n');
    symlinkSync(join(work, 'outside.js'), join(dir, 'linked.js'));
    let err: unknown;
    try {
      UploadDirectory(dir);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toMatch(/linked\.js.*symbolic link.*skip/s);
    // Left out explicitly, the rest is shipped.
    const p = UploadDirectory(dir, { skip: (rel) => rel === 'linked.js' });
    expect((p.options as { files: Array<{ path: string }> }).files.map((f) => f.path)).toEqual(['index.js']);
  });

  it('refuses a folder without a name (the file system root) at the call', () => {
    expect(() => UploadDirectory('/')).toThrow(/has no name/);
  });
});

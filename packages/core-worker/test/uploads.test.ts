import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '@skein/common';
import { uploadsDirectory, writeUpload, type UploadedFile } from '../src/environment/uploads.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('writeUpload input checks', () => {
  const root = join(mkdtempSync(join(tmpdir(), 'skein-uploads-test-')), 'root');
  afterAll(() => rmSync(join(root, '..'), { recursive: true, force: true }));

  const fails = (name: string, files: unknown[], kind: 'file' | 'directory'): Error => {
    try {
      writeUpload(root, name, files as UploadedFile[], kind);
    } catch (e) {
      return e as Error;
    }
    throw new Error('writeUpload accepted it');
  };

  it('accepts names that merely start with two dots', () => {
    writeUpload(root, '..data', [{ path: '..data', base64: b64('x') }], 'file');
    writeUpload(root, 'lib', [{ path: '..hidden/a.txt', base64: b64('y') }], 'directory');
    expect(readFileSync(join(uploadsDirectory(root), '..data'), 'utf8')).toBe('x');
    expect(readFileSync(join(uploadsDirectory(root), 'lib', '..hidden', 'a.txt'), 'utf8')).toBe('y');
  });

  it.each([
    ['..', /'\.\.'/],
    ['../x', /'\.\.'/],
    ['', /empty/],
    ['/etc/x', /absolute/],
  ])('refuses the upload name %j, saying what is wrong', (name, why) => {
    const e = fails(name, [{ path: name, base64: b64('x') }], 'file');
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.message).toMatch(why);
  });

  it.each([
    [{ path: 'a/../../x', base64: b64('x') }, /files\[0\].*'\.\.'.*inside the folder/s],
    [{ path: '/abs/x', base64: b64('x') }, /files\[0\].*absolute/s],
    [{ path: '.', base64: b64('x') }, /files\[0\].*the folder itself/s],
    [{ path: 'sub/', base64: b64('x') }, /files\[0\].*folder/s],
    [null, /files\[0\] must be \{ path: string, base64: string \}, got null/],
    [{ path: 'a.txt', base64: 12 }, /files\[0\]\.base64 must be a string.*number/],
  ])('refuses the directory entry %j with a clear error, writing nothing', (entry, why) => {
    const e = fails('bad', [entry], 'directory');
    expect(e).toBeInstanceOf(InvalidArgumentError);
    expect(e.message).toMatch(why);
    expect(existsSync(join(uploadsDirectory(root), 'bad'))).toBe(false);
    expect(existsSync(join(root, '..', 'x'))).toBe(false);
  });
});

describe('writeUpload of an upload already in place', () => {
  const root = join(mkdtempSync(join(tmpdir(), 'skein-uploads-same-')), 'root');
  afterAll(() => rmSync(join(root, '..'), { recursive: true, force: true }));

  it('leaves the same contents alone (another worker of the host wrote them), replaces changed ones', () => {
    const files = [
      { path: 'index.js', base64: b64('export const v = 1;\n') },
      { path: 'data/t.json', base64: b64('{}') },
    ];
    const at = writeUpload(root, 'lib', files, 'directory');
    const before = statSync(join(at, 'index.js')).ino;
    const dirBefore = statSync(at).ino;
    // Entries in another order: the same upload.
    writeUpload(root, 'lib', [...files].reverse(), 'directory');
    expect([statSync(at).ino, statSync(join(at, 'index.js')).ino]).toEqual([dirBefore, before]);
    writeUpload(root, 'lib', [{ path: 'index.js', base64: b64('export const v = 2;\n') }], 'directory');
    expect(readFileSync(join(at, 'index.js'), 'utf8')).toBe('export const v = 2;\n');
    expect(existsSync(join(at, 'data'))).toBe(false);
    // Nothing left beside it.
    expect(readdirSync(uploadsDirectory(root))).toEqual(['lib']);
  });
});

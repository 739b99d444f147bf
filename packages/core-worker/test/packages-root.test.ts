import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeUpload } from '../src/environment/uploads.js';
import { clusterPackagesRoot } from '../src/runtime/packages.js';

const file = (text: string) => [{ path: 'x.mjs', base64: Buffer.from(text).toString('base64') }];

describe("the cluster's package directory", () => {
  let tmp: string;
  let saved: { TMPDIR?: string; SKEIN_PACKAGES_DIR?: string };
  beforeEach(() => {
    tmp = mkdtempSync(join(tmpdir(), 'skein-root-test-'));
    saved = { TMPDIR: process.env['TMPDIR'], SKEIN_PACKAGES_DIR: process.env['SKEIN_PACKAGES_DIR'] };
    // The default root lives under os.tmpdir(): point it at a directory of this test.
    process.env['TMPDIR'] = tmp;
    delete process.env['SKEIN_PACKAGES_DIR'];
  });
  afterEach(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    rmSync(tmp, { recursive: true, force: true });
  });

  it('refuses a default root that another user could have planted as a symlink', () => {
    const root = clusterPackagesRoot('127.0.0.1', 45_001);
    expect(root.startsWith(tmp)).toBe(true);
    const planted = join(tmp, 'planted');
    mkdirSync(planted);
    mkdirSync(join(root, '..'), { recursive: true });
    symlinkSync(planted, root);
    expect(() => writeUpload(root, 'x.mjs', file('export const x = 1;'), 'file')).toThrow(/symbolic link.*remove it/s);
    expect(existsSync(join(planted, 'uploads'))).toBe(false);
  });

  it('refuses a default root that is world-writable, and creates its own private', () => {
    const root = clusterPackagesRoot('127.0.0.1', 45_002);
    mkdirSync(root, { recursive: true });
    chmodSync(root, 0o777);
    expect(() => writeUpload(root, 'x.mjs', file('export const x = 1;'), 'file')).toThrow(/writable by other users.*remove it/s);
    rmSync(root, { recursive: true });
    const fresh = clusterPackagesRoot('127.0.0.1', 45_003);
    writeUpload(fresh, 'x.mjs', file('export const x = 1;'), 'file');
    // A per-user base, private to this user.
    expect(fresh).toContain(`skein-packages-${process.getuid!()}`);
  });
});

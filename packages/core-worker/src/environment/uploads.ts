/**
 * UploadFile and UploadDirectory on the worker: write the files a client shipped into the cluster's
 * uploads directory on this host (`<root>/uploads/node_modules`, see runtime/packages.ts), where
 * the resolve hook finds them: `await import('helpers.mjs')` for a file, `await import('mylib')`
 * (its package.json or index.js) or `'mylib/data.json'` for a directory. Each upload is written
 * beside its place and renamed into it, so a task never sees half a file and workers of one host
 * writing the same upload at once do no harm.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, normalize, sep } from 'node:path';
import { InvalidArgumentError } from '@skein/common';
import { securePackagesRoot, uploadsPrefix } from '../runtime/packages.js';

/** One file of an upload: its path relative to the upload (a file upload: its own name), base64 contents. */
export interface UploadedFile {
  path: string;
  base64: string;
}

/** Where uploads land under a cluster root: the folder the resolve hook searches. */
export function uploadsDirectory(root: string): string {
  return join(uploadsPrefix(root), 'node_modules');
}

function checkRelative(p: string, where: string): string {
  const n = normalize(p);
  if (!p || p.includes('\0') || n.startsWith('..') || n.startsWith(sep) || /^[a-zA-Z]:/.test(n)) {
    throw new InvalidArgumentError(`${where}: ${JSON.stringify(p)} is not a relative path inside the upload.`);
  }
  return n;
}

/**
 * Writes upload `name` (a file's or a directory's base name) with `files` into the uploads
 * directory, replacing an earlier upload of that name; returns its path. A file upload has one
 * entry whose path is `name` itself.
 */
export function writeUpload(root: string, name: string, files: readonly UploadedFile[], kind: 'file' | 'directory'): string {
  const base = checkRelative(name, 'Upload name');
  if (base.includes(sep) || base === '.' || base === 'node_modules') throw new InvalidArgumentError(`Upload name ${JSON.stringify(name)} must be a single file or folder name.`);
  const dir = uploadsDirectory(securePackagesRoot(root));
  mkdirSync(dir, { recursive: true });
  const target = join(dir, base);
  const tmp = join(dir, `.upload-${randomBytes(6).toString('hex')}`);
  try {
    if (kind === 'file') {
      const [f] = files;
      if (!f || files.length !== 1) throw new InvalidArgumentError(`UploadFile ${name}: expected one file, got ${files.length}.`);
      writeFileSync(tmp, Buffer.from(f.base64, 'base64'));
    } else {
      mkdirSync(tmp);
      for (const f of files) {
        const rel = checkRelative(f.path, `UploadDirectory ${name}`);
        mkdirSync(dirname(join(tmp, rel)), { recursive: true });
        writeFileSync(join(tmp, rel), Buffer.from(f.base64, 'base64'));
      }
    }
    rmSync(target, { recursive: true, force: true });
    try {
      renameSync(tmp, target);
    } catch (err) {
      // Another worker of this host put the same upload in place between the rm and the rename.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EISDIR') throw err;
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return target;
}

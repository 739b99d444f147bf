/**
 * UploadFile and UploadDirectory on the worker: write the files a client shipped into the cluster's
 * uploads directory on this host (`<root>/uploads/node_modules`, see runtime/packages.ts), where
 * the resolve hook finds them: `await import('helpers.mjs')` for a file, `await import('mylib')`
 * (its package.json or index.js) or `'mylib/data.json'` for a directory. Each upload is written
 * beside its place and renamed into it, so a task never sees half a file and workers of one host
 * writing the same upload at once do no harm; a worker finding the same contents in place (by the
 * hash recorded in `<root>/uploads/.hashes/<name>`) leaves them alone.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
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

/**
 * A path inside the upload: relative, not empty, no '..' segment, not absolute, not the folder
 * itself, not a folder (trailing slash). Returns it normalized; throws saying what is wrong and how
 * to fix it.
 */
function checkRelative(p: unknown, where: string, example: string): string {
  if (typeof p !== 'string') throw new InvalidArgumentError(`${where} must be a string, got ${p === null ? 'null' : typeof p}; give a path relative to the upload, e.g. ${JSON.stringify(example)}.`);
  if (p === '') throw new InvalidArgumentError(`${where} is empty; give a path relative to the upload, e.g. ${JSON.stringify(example)}.`);
  if (p.includes('\0')) throw new InvalidArgumentError(`${where} holds a NUL character; remove it.`);
  if (isAbsolute(p) || p.startsWith('/') || p.startsWith('\\') || /^[a-zA-Z]:/.test(p)) {
    throw new InvalidArgumentError(`${where} is absolute (${JSON.stringify(p)}); give it relative to the upload, e.g. ${JSON.stringify(example)}.`);
  }
  if (p.split(/[\\/]/).includes('..')) {
    throw new InvalidArgumentError(`${where} (${JSON.stringify(p)}) has a '..' segment; an upload may only write inside the folder: give the path without '..'.`);
  }
  const n = normalize(p);
  if (n === '.' || n === `.${sep}`) throw new InvalidArgumentError(`${where} (${JSON.stringify(p)}) names the folder itself, not a file inside it.`);
  if (/[\\/]$/.test(p)) throw new InvalidArgumentError(`${where} (${JSON.stringify(p)}) ends with a slash, so it names a folder; entries are files (folders are made for them).`);
  return n;
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Writes upload `name` (a file's or a directory's base name) with `files` into the uploads
 * directory, replacing an earlier upload of that name (left alone when its recorded content hash is
 * the same: the host's other workers write each upload once); returns its path. A file upload has one
 * entry whose path is `name` itself.
 */
export function writeUpload(root: string, name: string, files: readonly UploadedFile[], kind: 'file' | 'directory'): string {
  const base = checkRelative(name, 'The upload name', 'helpers.mjs');
  if (base.includes(sep) || base === 'node_modules') throw new InvalidArgumentError(`The upload name ${JSON.stringify(name)} must be a single file or folder name other than node_modules, e.g. "helpers.mjs".`);
  const what = kind === 'file' ? `UploadFile ${name}` : `UploadDirectory ${name}`;
  if (!Array.isArray(files)) throw new InvalidArgumentError(`${what}: files must be an array of { path, base64 }, got ${files === null ? 'null' : typeof files}.`);
  const checked = files.map((f: unknown, i) => {
    if (!f || typeof f !== 'object') throw new InvalidArgumentError(`${what}: files[${i}] must be { path: string, base64: string }, got ${f === null ? 'null' : typeof f}.`);
    const { path, base64 } = f as { path?: unknown; base64?: unknown };
    if (typeof base64 !== 'string') throw new InvalidArgumentError(`${what}: files[${i}].base64 must be a string (the file's contents in base64), got ${base64 === null ? 'null' : typeof base64}.`);
    const rel = kind === 'file' ? base : checkRelative(path, `${what}: files[${i}].path`, 'lib/util.js');
    return { rel, data: Buffer.from(base64, 'base64') };
  });
  const dir = uploadsDirectory(securePackagesRoot(root));
  mkdirSync(dir, { recursive: true });
  const target = join(dir, base);
  // The contents' hash, recorded beside the uploads (outside node_modules, not importable): a
  // worker of the host finding the same upload in place leaves it alone.
  const hash = createHash('sha256').update(kind);
  for (const { rel, data } of [...checked].sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0))) {
    hash.update(`\0${rel}\0${data.byteLength}\0`).update(data);
  }
  const digest = hash.digest('hex');
  const hashes = join(uploadsPrefix(root), '.hashes');
  const hashFile = join(hashes, base);
  if (existsSync(target) && readText(hashFile) === digest) return target;
  const tmp = join(dir, `.upload-${randomBytes(6).toString('hex')}`);
  const aside = join(dir, `.replaced-${randomBytes(6).toString('hex')}`);
  try {
    if (kind === 'file') {
      const [f] = checked;
      if (!f || checked.length !== 1) throw new InvalidArgumentError(`${what}: expected one file, got ${checked.length}.`);
      writeFileSync(tmp, f.data);
    } else {
      mkdirSync(tmp);
      for (const [i, { rel, data }] of checked.entries()) {
        try {
          mkdirSync(dirname(join(tmp, rel)), { recursive: true });
          writeFileSync(join(tmp, rel), data);
        } catch (err) {
          // e.g. two entries 'a' and 'a/b': one is a file and a folder at once.
          throw new InvalidArgumentError(`${what}: files[${i}] (${JSON.stringify(rel)}) cannot be written: ${(err as Error).message}; is another entry a file of the same name as this one's folder?`);
        }
      }
    }
    // The old one moves aside and the new one takes its place: a task sees one or the other whole
    // (or, for the instant between the renames, none), never a mix.
    try {
      renameSync(target, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    try {
      renameSync(tmp, target);
    } catch (err) {
      // Another worker of this host put an upload in place between the two renames.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST' && code !== 'EISDIR' && code !== 'ENOTDIR') throw err;
    }
    mkdirSync(hashes, { recursive: true });
    const hashTmp = `${hashFile}.${randomBytes(6).toString('hex')}`;
    writeFileSync(hashTmp, digest);
    renameSync(hashTmp, hashFile);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
    rmSync(aside, { recursive: true, force: true });
  }
  return target;
}

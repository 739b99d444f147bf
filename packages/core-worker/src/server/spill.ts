/**
 * The worker's local directory for spilled results: one file per spilled value, named from a hash
 * of its key (plus a counter, so a stale copy never shares a name with a fresh one). Only the
 * shell uses it; the state sees opaque file names.
 *
 * Files being read (a task input coming back, a GetData stream) are removed only after their
 * readers are done.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Encoded } from '../state/types.js';

export class SpillStore {
  private counter = 0;
  private readonly readers = new Map<string, number>();
  private readonly doomed = new Set<string>();
  private removed = false;

  private constructor(
    /** The directory holding the files (removed by close()). */
    readonly dir: string,
  ) {}

  /**
   * Creates a fresh directory `skein-worker-XXXXXX` inside `parent` (created if needed; default
   * the OS's temporary directory).
   */
  static async create(parent?: string): Promise<SpillStore> {
    const base = resolve(parent ?? tmpdir());
    await mkdir(base, { recursive: true });
    return new SpillStore(await mkdtemp(join(base, 'skein-worker-')));
  }

  /** Writes a value; resolves to its file name. */
  async write(key: string, value: Encoded): Promise<string> {
    const file = `${createHash('sha256').update(key).digest('hex').slice(0, 40)}-${++this.counter}`;
    await writeFile(join(this.dir, file), value.data, { flag: 'wx' });
    return file;
  }

  /** Reads a whole file back. */
  read(file: string): Promise<Buffer> {
    return this.reading(file, () => readFile(join(this.dir, file)));
  }

  /** Streams a file in chunks of at most `chunkBytes` (each chunk its own buffer). */
  async *chunks(file: string, chunkBytes: number): AsyncGenerator<Buffer> {
    this.addReader(file);
    try {
      const fh = await open(join(this.dir, file), 'r');
      try {
        let pos = 0;
        for (;;) {
          const buf = Buffer.allocUnsafe(chunkBytes);
          const { bytesRead } = await fh.read(buf, 0, chunkBytes, pos);
          if (bytesRead === 0) return;
          pos += bytesRead;
          yield bytesRead === chunkBytes ? buf : buf.subarray(0, bytesRead);
        }
      } finally {
        await fh.close();
      }
    } finally {
      this.dropReader(file);
    }
  }

  /** Deletes files (after their current readers finish). */
  async remove(files: readonly string[]): Promise<void> {
    const unlinks: Promise<void>[] = [];
    for (const f of files) {
      if ((this.readers.get(f) ?? 0) > 0) this.doomed.add(f);
      else unlinks.push(this.unlinkQuietly(f));
    }
    await Promise.all(unlinks);
  }

  /** Removes the directory and everything in it. Idempotent. */
  async close(): Promise<void> {
    if (this.removed) return;
    this.removed = true;
    await rm(this.dir, { recursive: true, force: true });
  }

  private async reading<T>(file: string, fn: () => Promise<T>): Promise<T> {
    this.addReader(file);
    try {
      return await fn();
    } finally {
      this.dropReader(file);
    }
  }

  private addReader(file: string): void {
    this.readers.set(file, (this.readers.get(file) ?? 0) + 1);
  }

  private dropReader(file: string): void {
    const n = (this.readers.get(file) ?? 1) - 1;
    if (n > 0) {
      this.readers.set(file, n);
      return;
    }
    this.readers.delete(file);
    if (this.doomed.delete(file)) void this.unlinkQuietly(file);
  }

  private async unlinkQuietly(file: string): Promise<void> {
    if (this.removed) return;
    await unlink(join(this.dir, file)).catch(() => undefined);
  }
}

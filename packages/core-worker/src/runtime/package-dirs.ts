/**
 * The cluster's package directories, shared by every thread of a worker process (and its resolve
 * hooks, on Node's loader threads) through one SharedArrayBuffer, so the main thread sets them
 * once and every later import sees them, without messages that could race the import.
 * Layout: Int32 [0] a sequence number (odd while writing), [1] the byte length, [2] 1 once the
 * directories are in use (see packages.ts, activatePackages), then UTF-8 JSON of the directory list.
 */
const HEADER = 16;

/** Marks the directories in use: threads register their resolve hook (at their next batch of tasks). */
export function markActive(sab: SharedArrayBuffer): void {
  Atomics.store(new Int32Array(sab, 0, 3), 2, 1);
}

/** The view isActive reads (made once per buffer: it is read before every batch of tasks). */
const views = new WeakMap<SharedArrayBuffer, Int32Array>();

export function isActive(sab: SharedArrayBuffer): boolean {
  let v = views.get(sab);
  if (!v) views.set(sab, (v = new Int32Array(sab, 0, 3)));
  return Atomics.load(v, 2) === 1;
}

export const PACKAGE_DIRS_BYTES = 16 * 1024;

export function writeDirs(sab: SharedArrayBuffer, dirs: readonly string[]): void {
  const bytes = new TextEncoder().encode(JSON.stringify(dirs));
  if (bytes.length > sab.byteLength - HEADER) throw new RangeError(`The package directories (${bytes.length} bytes of paths) do not fit in ${sab.byteLength - HEADER} bytes.`);
  const head = new Int32Array(sab, 0, 3);
  Atomics.add(head, 0, 1); // odd: being written
  new Uint8Array(sab, HEADER, bytes.length).set(bytes);
  Atomics.store(head, 1, bytes.length);
  Atomics.add(head, 0, 1); // even: done
}

export function readDirs(sab: SharedArrayBuffer): string[] {
  const head = new Int32Array(sab, 0, 3);
  for (;;) {
    const seq = Atomics.load(head, 0);
    if (seq % 2 === 1) continue;
    const n = Atomics.load(head, 1);
    if (n === 0) return [];
    const text = new TextDecoder().decode(new Uint8Array(sab, HEADER, n).slice());
    if (Atomics.load(head, 0) !== seq) continue;
    try {
      const dirs: unknown = JSON.parse(text);
      return Array.isArray(dirs) ? dirs.filter((d): d is string => typeof d === 'string') : [];
    } catch {
      return [];
    }
  }
}

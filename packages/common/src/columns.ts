/**
 * The column forms of the wire protocol (ValueColumn, TaskBatch, TasksFinished, KeysInMemory,
 * ComputeBatch): many keys in one message, a list per field, instead of one message per key.
 * Decoding a batch of N small protobuf messages costs N objects and N field walks at every hop;
 * a column costs one of each. These helpers build and read the shared pieces and check that the
 * columns agree, so a malformed batch fails with a message that names the field.
 */
import type { ValueColumn } from '@skein/protocol';
import { InvalidArgumentError } from './errors.js';

/** An encoded value as the domain code carries it (the shape of the protobuf Value). */
export interface ColumnValue {
  encoding: number;
  data: Uint8Array;
}

const EMPTY = Buffer.alloc(0);

/**
 * One ValueColumn for a list of values; a null or undefined entry is "no value" (encoding
 * unspecified, length 0). The bytes are copied once into one buffer.
 */
export function buildValueColumn(values: ArrayLike<ColumnValue | null | undefined>): ValueColumn {
  const n = values.length;
  const encodings = new Array<number>(n);
  const lengths = new Array<number>(n);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (v) {
      encodings[i] = v.encoding;
      lengths[i] = v.data.byteLength;
      total += v.data.byteLength;
    } else {
      encodings[i] = 0;
      lengths[i] = 0;
    }
  }
  const data = total ? Buffer.allocUnsafe(total) : EMPTY;
  let off = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i];
    if (!v || v.data.byteLength === 0) continue;
    data.set(v.data, off);
    off += v.data.byteLength;
  }
  return { encodings, lengths, data };
}

/**
 * The values of a ValueColumn that must hold `n` entries, as views into its data (no copies);
 * null where an entry has no value. Throws InvalidArgumentError, naming `where`, when the column
 * does not match.
 */
export function readValueColumn(col: ValueColumn | undefined, n: number, where: string): Array<{ encoding: number; data: Buffer } | null> {
  const out = new Array<{ encoding: number; data: Buffer } | null>(n);
  if (!col) {
    if (n === 0) return out;
    throw new InvalidArgumentError(`${where}: the value column is missing but ${n} keys are listed; send one value (or an unspecified encoding) per key.`);
  }
  const { encodings, lengths, data } = col;
  if (encodings.length !== n || lengths.length !== n) {
    throw new InvalidArgumentError(
      `${where}: the value column has ${encodings.length} encodings and ${lengths.length} lengths for ${n} keys; send exactly one of each per key.`,
    );
  }
  let off = 0;
  for (let i = 0; i < n; i++) {
    const len = lengths[i]!;
    const enc = encodings[i]!;
    if (enc === 0) {
      if (len !== 0) throw new InvalidArgumentError(`${where}: value ${i} has no encoding but ${len} bytes; give it an encoding or length 0.`);
      out[i] = null;
      continue;
    }
    const end = off + len;
    if (end > data.byteLength) {
      throw new InvalidArgumentError(`${where}: the value lengths add up to more than the ${data.byteLength} bytes of data (at value ${i}).`);
    }
    out[i] = { encoding: enc, data: data.subarray(off, end) };
    off = end;
  }
  if (off !== data.byteLength) {
    throw new InvalidArgumentError(`${where}: the value lengths add up to ${off} bytes but the data holds ${data.byteLength}; they must match.`);
  }
  return out;
}

/**
 * Splits a flat list into `n` lists by counts (`dependency_counts`, `worker_counts`): list i is
 * the next counts[i] items. Empty counts with no items means every list is empty.
 */
export function splitByCounts<T>(counts: readonly number[], items: readonly T[], n: number, where: string): T[][] {
  const out = new Array<T[]>(n);
  if (counts.length === 0) {
    if (items.length !== 0) throw new InvalidArgumentError(`${where}: ${items.length} items are listed without counts; send one count per key.`);
    for (let i = 0; i < n; i++) out[i] = [];
    return out;
  }
  if (counts.length !== n) throw new InvalidArgumentError(`${where}: ${counts.length} counts for ${n} keys; send one count per key.`);
  let off = 0;
  for (let i = 0; i < n; i++) {
    const c = counts[i]!;
    if (off + c > items.length) throw new InvalidArgumentError(`${where}: the counts add up to more than the ${items.length} items listed (at key ${i}).`);
    out[i] = c === 0 ? [] : items.slice(off, off + c);
    off += c;
  }
  if (off !== items.length) throw new InvalidArgumentError(`${where}: the counts add up to ${off} but ${items.length} items are listed; they must match.`);
  return out;
}

/** Checks that a per-key column has one entry per key (`n`). */
export function checkColumn(length: number, n: number, field: string, where: string): void {
  if (length !== n) throw new InvalidArgumentError(`${where}: ${field} has ${length} entries for ${n} keys; send exactly one per key.`);
}

/**
 * Builds a dictionary column: each distinct string once (`list`), and an index per entry
 * (`index`). For the columns whose values repeat across keys (type names, worker addresses).
 */
export class StringTable {
  readonly list: string[] = [];
  readonly index: number[] = [];
  private readonly ids = new Map<string, number>();
  private last = '';
  private lastId = -1;

  /** Appends one entry. */
  add(s: string): void {
    let id: number;
    if (s === this.last && this.lastId >= 0) id = this.lastId;
    else {
      id = this.ids.get(s) ?? -1;
      if (id < 0) {
        id = this.list.length;
        this.list.push(s);
        this.ids.set(s, id);
      }
      this.last = s;
      this.lastId = id;
    }
    this.index.push(id);
  }
}

/**
 * The entries of a dictionary column that must hold `n` of them: `table[index[i]]`. Throws
 * InvalidArgumentError, naming `where`, for a wrong count or an index past the table.
 */
export function readStringTable(table: readonly string[], index: readonly number[], n: number, where: string): string[] {
  if (index.length !== n) throw new InvalidArgumentError(`${where}: ${index.length} indexes for ${n} entries; send exactly one per entry.`);
  const out = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const s = table[index[i]!];
    if (s === undefined) throw new InvalidArgumentError(`${where}: index ${index[i]} at entry ${i} is past the ${table.length} names listed.`);
    out[i] = s;
  }
  return out;
}

/**
 * Walks `items` in runs of consecutive items: a run starts at any item and goes on while
 * `joins(first, next)` holds; `visit(from, to)` gets each run's bounds [from, to), in order. The
 * senders build the column forms from such runs, so only neighbours merge and order is kept.
 */
export function forEachRun<T>(items: readonly T[], joins: (first: T, next: T) => boolean, visit: (from: number, to: number) => void): void {
  for (let i = 0; i < items.length; ) {
    const first = items[i]!;
    let j = i + 1;
    while (j < items.length && joins(first, items[j]!)) j++;
    visit(i, j);
    i = j;
  }
}

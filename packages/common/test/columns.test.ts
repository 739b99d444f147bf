import { describe, expect, it } from 'vitest';
import { ValueColumn } from '@skein/protocol';
import { buildValueColumn, readValueColumn, splitByCounts, checkColumn, InvalidArgumentError, StringTable, readStringTable, forEachRun } from '../src/index.js';

const v = (enc: number, s: string) => ({ encoding: enc, data: Buffer.from(s) });
const str = (x: { data: Uint8Array } | null) => (x ? Buffer.from(x.data).toString() : null);

describe('value columns', () => {
  it('round-trip values, absent values and empty values through the protobuf encoding', () => {
    const col = buildValueColumn([v(1, '12'), null, v(2, ''), undefined, v(3, 'xyz')]);
    expect(col.encodings).toEqual([1, 0, 2, 0, 3]);
    expect(col.lengths).toEqual([2, 0, 0, 0, 3]);
    const back = readValueColumn(ValueColumn.decode(ValueColumn.encode(col).finish()), 5, 'test');
    expect(back.map(str)).toEqual(['12', null, '', null, 'xyz']);
    expect(back.map((x) => x?.encoding ?? 0)).toEqual([1, 0, 2, 0, 3]);
  });

  it('an empty column reads as no values', () => {
    expect(readValueColumn(undefined, 0, 'test')).toEqual([]);
    expect(readValueColumn(buildValueColumn([]), 0, 'test')).toEqual([]);
  });

  it('rejects columns that do not match their keys, naming the place', () => {
    const col = buildValueColumn([v(1, 'ab'), v(1, 'c')]);
    expect(() => readValueColumn(col, 3, 'TaskBatch.args')).toThrow(/TaskBatch.args: the value column has 2 encodings and 2 lengths for 3 keys/);
    expect(() => readValueColumn(undefined, 2, 'X')).toThrow(InvalidArgumentError);
    expect(() => readValueColumn({ ...col, lengths: [2, 5] }, 2, 'X')).toThrow(/add up to more than the 3 bytes/);
    expect(() => readValueColumn({ ...col, lengths: [1, 1] }, 2, 'X')).toThrow(/add up to 2 bytes but the data holds 3/);
    expect(() => readValueColumn({ encodings: [0], lengths: [4], data: Buffer.from('abcd') }, 1, 'X')).toThrow(/no encoding but 4 bytes/);
  });
});

describe('splitByCounts', () => {
  it('splits a flat list by counts, or gives empty lists without counts', () => {
    expect(splitByCounts([2, 0, 1], ['a', 'b', 'c'], 3, 'x')).toEqual([['a', 'b'], [], ['c']]);
    expect(splitByCounts([], [], 2, 'x')).toEqual([[], []]);
  });

  it('rejects counts that do not match', () => {
    expect(() => splitByCounts([1], ['a'], 2, 'deps')).toThrow(/deps: 1 counts for 2 keys/);
    expect(() => splitByCounts([2, 2], ['a', 'b', 'c'], 2, 'deps')).toThrow(/more than the 3 items/);
    expect(() => splitByCounts([1, 1], ['a', 'b', 'c'], 2, 'deps')).toThrow(/add up to 2 but 3 items/);
    expect(() => splitByCounts([], ['a'], 1, 'deps')).toThrow(/without counts/);
    expect(() => checkColumn(1, 2, 'nbytes', 'TasksFinished')).toThrow(/TasksFinished: nbytes has 1 entries for 2 keys/);
  });
});

describe('dictionary columns', () => {
  it('list each distinct string once and index every entry', () => {
    const t = new StringTable();
    for (const s of ['number', 'number', 'string', 'number', '', 'string']) t.add(s);
    expect(t.list).toEqual(['number', 'string', '']);
    expect(t.index).toEqual([0, 0, 1, 0, 2, 1]);
    expect(readStringTable(t.list, t.index, 6, 'x')).toEqual(['number', 'number', 'string', 'number', '', 'string']);
  });

  it('reject an index past the table or a wrong count, naming the place', () => {
    expect(() => readStringTable(['a'], [0, 1], 2, 'TasksFinished, type_name_index')).toThrow(/TasksFinished, type_name_index: index 1 at entry 1 is past the 1 names listed/);
    expect(() => readStringTable(['a'], [0], 2, 'K')).toThrow(/K: 1 indexes for 2 entries/);
  });
});

describe('forEachRun', () => {
  it('visits runs of consecutive items that join the first of their run, in order', () => {
    const runs: string[] = [];
    const items = [1, 1, 2, 2, 2, 1, 3];
    forEachRun(items, (a, b) => a === b, (from, to) => runs.push(items.slice(from, to).join('')));
    expect(runs).toEqual(['11', '222', '1', '3']);
    const none: string[] = [];
    forEachRun([], () => true, () => none.push('x'));
    expect(none).toEqual([]);
  });
});

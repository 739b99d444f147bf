import { describe, expect, it } from 'vitest';
import { Encoding } from '@skein/protocol';
import { collectRefs, decodeValue, encodeValue, makeRef, substituteRefs } from '../src/values.js';
import { parseAddress, formatAddress, interfaceAddress } from '../src/address.js';
import { parseBytes, parseMemoryLimit } from '../src/units.js';
import { InvalidArgumentError } from '../src/errors.js';

describe('values', () => {
  it('round-trips v8 values with typed arrays, Map, Set, BigInt and Date', () => {
    const v = { a: new Float64Array([1.5, 2]), m: new Map([[1, 'x']]), s: new Set([3]), b: 10n ** 20n, d: new Date(5) };
    const enc = encodeValue(v);
    expect(enc.encoding).toBe(Encoding.ENCODING_V8);
    expect(decodeValue(enc)).toEqual(v);
  });
  it('sends buffers raw and JSON on request', () => {
    const b = Buffer.from('hello');
    const enc = encodeValue(b);
    expect(enc.encoding).toBe(Encoding.ENCODING_RAW);
    expect(Buffer.compare(decodeValue(enc) as Buffer, b)).toBe(0);
    const j = encodeValue({ x: [1, 2] }, 'json');
    expect(Buffer.from(j.data).toString()).toBe('{"x":[1,2]}');
    expect(() => encodeValue(new Map(), 'json')).toThrow(InvalidArgumentError);
  });
  it('sends small plain values as JSON that decodes to the same value, and everything else as v8', () => {
    const asJson = [5, 'x', true, null, [1, 'a', null, makeRef('k')], makeRef('k'), Array.from({ length: 32 }, (_, i) => i)];
    for (const v of asJson) {
      const enc = encodeValue(v);
      expect(enc.encoding, JSON.stringify(v)).toBe(Encoding.ENCODING_JSON);
      expect(decodeValue(enc)).toEqual(v);
    }
    // -0, holes, nesting, long arrays, objects that could share identity: v8 keeps them exactly.
    const sparse = [1, , 3]; // eslint-disable-line no-sparse-arrays
    const shared = { a: 1 };
    const asV8 = [-0, [-0], sparse, [[1]], Array.from({ length: 33 }, (_, i) => i), { a: 1 }, [shared, shared], NaN, undefined, [undefined]];
    for (const v of asV8) expect(encodeValue(v).encoding).toBe(Encoding.ENCODING_V8);
    expect(Object.is(decodeValue(encodeValue(-0)), -0)).toBe(true);
    expect(1 in (decodeValue(encodeValue(sparse)) as unknown[])).toBe(false);
    const [x, y] = decodeValue(encodeValue([shared, shared])) as object[];
    expect(x).toBe(y);
  });
  it('substitutes references at any depth without copying reference-free parts', () => {
    const inner = { keep: [1, 2] };
    const t = [makeRef('a'), { deep: [makeRef('b'), inner] }, 7];
    expect([...collectRefs(t)].sort()).toEqual(['a', 'b']);
    const out = substituteRefs(t, (k) => k.toUpperCase()) as unknown[];
    expect(out).toEqual(['A', { deep: ['B', inner] }, 7]);
    expect((out[1] as { deep: unknown[] }).deep[1]).toBe(inner);
    expect(substituteRefs(inner, () => 0)).toBe(inner);
  });
});

describe('addresses and units', () => {
  it('parses the address forms and rejects bad ones with a clear message', () => {
    expect(parseAddress('tcp://10.0.0.5:8786')).toEqual({ host: '10.0.0.5', port: 8786 });
    expect(parseAddress('localhost', 8786)).toEqual({ host: 'localhost', port: 8786 });
    expect(parseAddress(':9000')).toEqual({ host: '0.0.0.0', port: 9000 });
    expect(formatAddress({ host: '::1', port: 1 })).toBe('tcp://[::1]:1');
    expect(() => parseAddress('udp://x:1')).toThrow(/Unsupported address scheme/);
    expect(() => parseAddress('tcp://host:99999')).toThrow(/Bad port "99999"/);
    expect(() => parseAddress('tcp://host')).toThrow(/has no port/);
  });
  it('parses sizes and memory limits', () => {
    expect(parseBytes('4GB')).toBe(4e9);
    expect(parseBytes('2GiB')).toBe(2 * 2 ** 30);
    expect(() => parseBytes('lots')).toThrow(/Bad size "lots"/);
    // the unit is looked up as user input: an Object.prototype name is no unit
    expect(() => parseBytes('1constructor')).toThrow(/Bad size "1constructor"/);
    expect(parseMemoryLimit('0.5')).toBeGreaterThan(0);
    expect(parseMemoryLimit('1GB')).toBe(1e9);
    expect(parseMemoryLimit('none')).toBe(0);
  });
});

import { compileFunction, functionSource } from '../src/functions.js';

describe('function sources', () => {
  const roundTrip = (fn: Function) => compileFunction(functionSource(fn)) as (...a: unknown[]) => unknown;
  it('sends arrows, async arrows, function expressions and methods as evaluable source', async () => {
    expect(roundTrip((x: number) => x + 1)(1)).toBe(2);
    expect(await roundTrip(async (i: number) => i * 2)(2)).toBe(4);
    expect(roundTrip(function named(x: number) { return x * 3; })(3)).toBe(9);
    const obj = { triple(x: number) { return x * 3; }, async later(x: number) { return x; } };
    expect(roundTrip(obj.triple)(2)).toBe(6);
    expect(await roundTrip(obj.later)(5)).toBe(5);
  });
  it('refuses native functions with a message that says what to do', () => {
    expect(() => functionSource(Math.sqrt)).toThrow(/Wrap it/);
  });
});


describe('network interfaces by name', () => {
  it('refuses a name like an Object.prototype member as an unknown interface', () => {
    for (const name of ['constructor', '__proto__', 'toString']) expect(() => interfaceAddress(name)).toThrow(new RegExp(`No network interface named "${name}"`));
  });
});

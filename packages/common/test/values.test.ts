import { describe, expect, it } from 'vitest';
import { Encoding } from '@skein/protocol';
import { QUOTE_KEY, REF_KEY, collectRefs, decodeValue, encodeValue, jsonProblem, makeRef, substituteRefs } from '../src/values.js';
import { errorTypeName, toRemoteError } from '../src/errors.js';
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

describe('templates: cycles, depth and quotes', () => {
  it('substitutes references inside cyclic templates and keeps the cycles and shared objects', () => {
    const t: Record<string, unknown> = { r: makeRef('a'), n: 1 };
    t['self'] = t;
    const shared = { r: makeRef('b') };
    const args = [t, shared, shared];
    const out = substituteRefs(args, (k) => k.toUpperCase()) as [Record<string, unknown>, object, object];
    expect(out[0]['r']).toBe('A');
    expect(out[0]['self']).toBe(out[0]);
    expect(out[1]).toEqual({ r: 'B' });
    expect(out[1]).toBe(out[2]);
    expect([...collectRefs(args)].sort()).toEqual(['a', 'b']);
    // Without references a cyclic template is returned as it is.
    const c: unknown[] = [1];
    c.push(c);
    expect(substituteRefs(c, () => 0)).toBe(c);
  });
  it('says so when a value is nested too deeply for the V8 serializer', () => {
    let t: unknown = 1;
    for (let i = 0; i < 100_000; i++) t = [t];
    expect(() => encodeValue(t)).toThrow(/nested too deeply for V8's serializer/);
  });
  it('walks templates nested 100,000 deep without recursion', () => {
    let t: unknown = makeRef('x');
    for (let i = 0; i < 100_000; i++) t = [t];
    let out = substituteRefs(t, () => 42);
    for (let i = 0; i < 100_000; i++) out = (out as unknown[])[0];
    expect(out).toBe(42);
  });
  it('unwraps quotes: the quoted object is data, its values are templates again', () => {
    const t = [{ [QUOTE_KEY]: { [REF_KEY]: 'abc', x: makeRef('k') } }, { [QUOTE_KEY]: { [QUOTE_KEY]: { a: 1 } } }];
    expect(substituteRefs(t, () => 'K')).toEqual([{ [REF_KEY]: 'abc', x: 'K' }, { [QUOTE_KEY]: { a: 1 } }]);
    // Objects that only resemble markers are walked as data.
    const notMarkers = [{ [REF_KEY]: 5 }, { [REF_KEY]: 'a', other: 1 }, { [QUOTE_KEY]: [1] }, { [QUOTE_KEY]: null }];
    expect(substituteRefs(notMarkers, () => 'X')).toBe(notMarkers);
  });
  it('keeps an own __proto__ property a property', () => {
    const t = JSON.parse('[{"__proto__": {"__skein_ref__": "a"}, "b": 1}]') as unknown[];
    const out = substituteRefs(t, () => 7) as Array<Record<string, unknown>>;
    expect(Object.getPrototypeOf(out[0])).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(out[0], '__proto__')?.value).toBe(7);
  });
});

describe('encodings: bytes and JSON', () => {
  it('decodes a Uint8Array as a Uint8Array and a Buffer as a Buffer, both raw', () => {
    const u = new Uint8Array([1, 2, 3]);
    const eu = encodeValue(u);
    expect(eu.encoding).toBe(Encoding.ENCODING_RAW_UINT8ARRAY);
    const du = decodeValue(eu) as Uint8Array;
    expect(Buffer.isBuffer(du)).toBe(false);
    expect(du.constructor).toBe(Uint8Array);
    expect([...du]).toEqual([1, 2, 3]);
    // Out of a larger buffer (an inline value inside a message) it gets its own memory.
    const inMessage = Buffer.concat([Buffer.from([9, 9]), Buffer.from(u), Buffer.from([9])]).subarray(2, 5);
    const own = decodeValue({ encoding: Encoding.ENCODING_RAW_UINT8ARRAY, data: inMessage }) as Uint8Array;
    expect([own.byteOffset, own.buffer.byteLength, ...own]).toEqual([0, 3, 1, 2, 3]);
    const b = Buffer.from([4, 5]);
    expect(encodeValue(b).encoding).toBe(Encoding.ENCODING_RAW);
    expect(Buffer.isBuffer(decodeValue(encodeValue(b)))).toBe(true);
    // Nested bytes go through v8, which keeps both types.
    const nested = decodeValue(encodeValue({ u, b })) as { u: Uint8Array; b: Buffer };
    expect(Buffer.isBuffer(nested.u)).toBe(false);
    expect(Buffer.isBuffer(nested.b)).toBe(true);
  });
  it('names the first value JSON cannot carry, with its path', () => {
    expect(jsonProblem({ a: [1, { b: 'x' }], n: null })).toBeUndefined();
    expect(jsonProblem(undefined)).toBeUndefined();
    expect(jsonProblem([{ x: 1, y: NaN }])).toBe('NaN at [0].y');
    expect(jsonProblem({ a: [1, undefined] })).toBe('undefined at a[1]');
    expect(jsonProblem([1, , 3])).toBe('an empty array slot at [1]'); // eslint-disable-line no-sparse-arrays
    expect(jsonProblem({ 'odd key': { m: new Map() } })).toBe('a Map at ["odd key"].m');
    expect(jsonProblem(10n)).toBe('a bigint (10n) at the top level');
    expect(jsonProblem(new Uint8Array(2))).toBe('a Uint8Array at the top level');
    const c: Record<string, unknown> = { a: { b: 1 } };
    (c['a'] as Record<string, unknown>)['back'] = c;
    expect(jsonProblem(c)).toBe('a cycle (a reference back to the top level) at a.back');
    let deep: unknown = Infinity;
    for (let i = 0; i < 200; i++) deep = [deep];
    expect(jsonProblem(deep)).toMatch(/^Infinity at (\[0\]){200}$/);
    expect(() => encodeValue({ y: -Infinity }, 'json')).toThrow(/-Infinity at y/);
  });
});

describe('error type names', () => {
  it('names an Error subclass without its own name by its class, as inspect does', () => {
    class ParseFailure extends Error {}
    class Bad extends TypeError {}
    class Named extends Error {
      override name = 'Custom';
    }
    class ProtoNamed extends Error {}
    ProtoNamed.prototype.name = 'FromProto';
    expect(errorTypeName(new ParseFailure('x'))).toBe('ParseFailure');
    expect(errorTypeName(new Bad('x'))).toBe('Bad');
    expect(errorTypeName(new Named('x'))).toBe('Custom');
    expect(errorTypeName(new ProtoNamed('x'))).toBe('FromProto');
    expect(errorTypeName(new Error('x'))).toBe('Error');
    expect(errorTypeName(new RangeError('x'))).toBe('RangeError');
    expect(toRemoteError(new ParseFailure('bad input')).type).toBe('ParseFailure');
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
  it('accepts every valid form', () => {
    expect(parseAddress('127.0.0.1:8786')).toEqual({ host: '127.0.0.1', port: 8786 });
    expect(parseAddress(' tcp://my-host.example.com:1 ')).toEqual({ host: 'my-host.example.com', port: 1 });
    expect(parseAddress('TCP://node_7:2')).toEqual({ host: 'node_7', port: 2 });
    expect(parseAddress('tls://10.0.0.5:8786')).toEqual({ host: '10.0.0.5', port: 8786, tls: true });
    expect(formatAddress(parseAddress('tls://[::1]:1'))).toBe('tls://[::1]:1');
    expect(formatAddress({ host: 'h', port: 1 }, true)).toBe('tls://h:1');
    expect(parseAddress('[::1]:8786')).toEqual({ host: '::1', port: 8786 });
    expect(parseAddress('tcp://[fe80::1]', 9)).toEqual({ host: 'fe80::1', port: 9 });
    expect(parseAddress('::1', 8786)).toEqual({ host: '::1', port: 8786 });
    expect(parseAddress('host.', 5)).toEqual({ host: 'host.', port: 5 });
  });
  it('refuses malformed addresses at once, saying what is wrong', () => {
    const cases: Array<[string, RegExp]> = [
      ['127.0.0.1:8786:', /more than one ":"/],
      ['host:8786:9', /more than one ":"/],
      ['tcp://[127.0.0.1:8786:]:8786', /not an IPv6 address/],
      ['[::1', /not closed/],
      ['[::1]x', /"x" follows the "]"/],
      ['[::1]:', /no port after it/],
      ['host:', /no port after it/],
      ['host:abc', /Bad port "abc"/],
      ['host:-1', /Bad port "-1"/],
      ['host:65536', /Bad port "65536"/],
      ['host:1e3', /Bad port "1e3"/],
      ['host:080000', /Bad port "080000"/],
      ['', /it is empty/],
      ['   ', /it is empty/],
      ['tcp://', /nothing follows "tcp:\/\/"/],
      ['http://host:1', /Unsupported address scheme/],
      ['://host:1', /is not a scheme/],
      ['host:1/path', /no user, path or query/],
      ['user@host:1', /no user, path or query/],
      ['ho st:1', /white space/],
      ['1.2.3.456:1', /not a valid IPv4 address/],
      ['127.0.0:1', /not a valid IPv4 address/],
      ['a..b:1', /empty part between dots/],
      ['-host:1', /character a host name cannot have/],
      ['ho$t:1', /character a host name cannot have/],
      ['[not-v6]:1', /not an IPv6 address/],
    ];
    for (const [text, re] of cases) {
      expect(() => parseAddress(text, 8786), text).toThrow(InvalidArgumentError);
      expect(() => parseAddress(text, 8786), text).toThrow(re);
    }
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

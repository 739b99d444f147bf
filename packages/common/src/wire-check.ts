/**
 * A validating pre-scan of incoming protobuf requests. ts-proto's decoders skip a field whose wire
 * type does not match the schema and leave it empty, so a mangled message would be acted on with
 * fields missing. Each service method's request deserializer is wrapped (strictService): the bytes
 * are walked once against the generated table of field number -> wire type (MESSAGE_WIRE_TYPES,
 * from the proto descriptors), nested messages included, before decoding. A field with the wrong
 * wire type, a truncated field or a group is refused as a RefusedMessage (INVALID_ARGUMENT naming
 * the message type and the field number). Unknown field numbers are skipped, as protobuf requires
 * (a newer peer may send fields this version does not know).
 */
import type { ServiceDefinition } from '@grpc/grpc-js';
import { MESSAGE_WIRE_TYPES, METHOD_REQUEST_TYPES } from '@skein/protocol';
import { RefusedMessage } from './grpc.js';

const WIRE_NAMES = ['varint', '64-bit', 'length-delimited', 'group start', 'group end', '32-bit', 'wire type 6', 'wire type 7'];
/** Protobuf's default recursion limit. */
const MAX_DEPTH = 100;

interface Table {
  name: string;
  /** By field number: the expected wire type, or -1 for a number the schema does not have. */
  wire: Int8Array;
  /** By field number: 1 when a length-delimited (packed) form is accepted too. */
  packed: Uint8Array;
  /** By field number: the table of a message field. */
  nested: Array<Table | undefined>;
}

let tables: Map<string, Table> | undefined;

function allTables(): Map<string, Table> {
  if (tables) return tables;
  tables = new Map();
  for (const [name, fields] of MESSAGE_WIRE_TYPES) {
    const size = fields.length === 0 ? 1 : fields[fields.length - 1]![0] + 1;
    tables.set(name, { name, wire: new Int8Array(size).fill(-1), packed: new Uint8Array(size), nested: new Array(size) });
  }
  for (const [name, fields] of MESSAGE_WIRE_TYPES) {
    const t = tables.get(name)!;
    for (const [no, wire, packed, type] of fields) {
      t.wire[no] = wire;
      t.packed[no] = packed;
      if (type) t.nested[no] = tables.get(type);
    }
  }
  return tables;
}

/** Where a scan stopped: the position, or -1 after writing the problem to `problem`. */
let problem = '';

function fail(t: Table, field: number, text: string): number {
  problem = `${t.name} field ${field}: ${text}`;
  return -1;
}

/** Scans buf[pos, end) as message `t`; returns end, or -1 with `problem` set. */
function scan(buf: Uint8Array, pos: number, end: number, t: Table, depth: number): number {
  if (depth > MAX_DEPTH) return fail(t, 0, `messages nested more than ${MAX_DEPTH} deep`);
  while (pos < end) {
    // The tag: a varint of at most 5 bytes (field numbers are below 2^29).
    let tag = 0;
    let shift = 0;
    let b: number;
    do {
      if (pos >= end || shift > 28) return fail(t, 0, 'a truncated or overlong field tag');
      b = buf[pos++]!;
      tag += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (field === 0) return fail(t, 0, 'field number 0 is not allowed');
    const expected = field < t.wire.length ? t.wire[field]! : -1;
    if (expected !== -1 && wt !== expected && !(wt === 2 && t.packed[field] === 1)) {
      return fail(t, field, `wire type ${wt} (${WIRE_NAMES[wt]}), the schema says ${expected} (${WIRE_NAMES[expected]})`);
    }
    switch (wt) {
      case 0: {
        let n = 0;
        while (pos < end && buf[pos]! & 0x80) {
          pos++;
          if (++n >= 10) return fail(t, field, 'a varint longer than 10 bytes');
        }
        if (pos >= end) return fail(t, field, 'a truncated varint');
        pos++;
        break;
      }
      case 1:
        pos += 8;
        if (pos > end) return fail(t, field, 'a truncated 64-bit value');
        break;
      case 5:
        pos += 4;
        if (pos > end) return fail(t, field, 'a truncated 32-bit value');
        break;
      case 2: {
        let len = 0;
        shift = 0;
        do {
          if (pos >= end || shift > 28) return fail(t, field, 'a truncated or overlong length');
          b = buf[pos++]!;
          len += (b & 0x7f) * 2 ** shift;
          shift += 7;
        } while (b & 0x80);
        const stop = pos + len;
        if (stop > end) return fail(t, field, `a length of ${len} bytes past the end of the message`);
        const inner = expected === 2 ? t.nested[field] : undefined;
        if (inner !== undefined && scan(buf, pos, stop, inner, depth + 1) < 0) return -1;
        pos = stop;
        break;
      }
      default:
        return fail(t, field, `wire type ${wt} (${WIRE_NAMES[wt]}), which Skein's protocol never uses`);
    }
  }
  return pos;
}

/**
 * What is wrong with `buf` as an encoding of message `type` (a full name such as
 * 'skein.v1.GetStoryRequest'), or '' when every known field has its schema's wire type.
 */
export function wireProblem(buf: Uint8Array, type: string): string {
  const t = allTables().get(type);
  if (!t) throw new Error(`no wire table for message type ${type}`);
  if (scan(buf, 0, buf.length, t, 0) >= 0) return '';
  const p = problem;
  problem = '';
  return p;
}

/**
 * The service definition with every request deserializer checking the wire types first: a
 * malformed request becomes a RefusedMessage, which newServer's interceptor answers with
 * INVALID_ARGUMENT before the handler sees it.
 */
export function strictService<S extends ServiceDefinition>(service: S): S {
  const requestTypes = new Map(METHOD_REQUEST_TYPES);
  const out: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(service)) {
    const type = requestTypes.get(method.path);
    if (!type) throw new Error(`no request type known for ${method.path} (run pnpm gen)`);
    const decode = method.requestDeserialize;
    out[name] = {
      ...method,
      requestDeserialize: (buf: Buffer) => {
        const p = wireProblem(buf, type);
        return p ? new RefusedMessage(`${method.path}: the request is malformed: ${p}. Send messages encoded with the skein.v1 schema.`) : decode(buf);
      },
    };
  }
  return out as S;
}

/**
 * Fuzzing every gRPC service of a real cluster (issue 14, "Fuzzing in CI"): a scheduler process
 * (`skein scheduler`) and two workers under their nannies (`skein worker`), attacked with raw
 * grpc-js calls that carry mutated messages as bytes (a passthrough serializer), then checked:
 *
 *   - no process crashed: the scheduler, both nannies and both worker processes are the ones that
 *     started (no nanny restarted its worker), and no state machine hit an internal error;
 *   - nothing hung: every call answered or failed well within its deadline (a call that runs into
 *     its deadline counts as a hang);
 *   - a legitimate client still gets correct results (a map and a small graph);
 *   - the scheduler's memory stayed bounded (its RSS, sampled from /proc during the run).
 *
 * Mutations are at the byte level (bit flips, truncation, splices, duplicated fields, wrong wire
 * types, huge varints and lengths, unknown fields) and at the structure level (valid encodings with
 * hostile values: empty, huge and odd strings, negative and out-of-range numbers, NaN, keys and
 * addresses that do not exist, duplicate keys, dependency cycles, columns that disagree). The
 * assertions do not depend on whether a message is refused or accepted: they must hold either way.
 *
 * The calls that change the cluster on purpose (RetireWorkers, RestartWorkers, ReportWorkerDeath
 * of a live worker, NannyService.Restart/Kill) run last, in their own phase: after it the scheduler
 * must still be alive and answering, every exit must be a clean one, and a fresh worker must give
 * a legitimate client correct results again.
 *
 *   SKEIN_FUZZ_SEED=123   replay a run (the seed is printed at the start and in every failure)
 *   SKEIN_FUZZ_COUNT=2000 mutated messages per service (default 2000; the CI budget)
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialize as v8serialize } from 'node:v8';
import { Client as GrpcClient, Metadata, credentials, status as Status, type ClientDuplexStream, type ClientReadableStream } from '@grpc/grpc-js';
import { Client, delayed } from '@skein/client';
import {
  ClientSessionRequest,
  GetAdaptiveTargetRequest,
  GetDataRequest,
  GetStoryRequest,
  GetWhoHasRequest,
  KillRequest,
  NannyServiceClient,
  ReportWorkerDeathRequest,
  RestartRequest,
  RestartWorkersRequest,
  RetireWorkersRequest,
  RunRequest,
  WorkerServiceGetStoryRequest,
  WorkerSessionRequest,
  type ClientMessage,
  type Encoding,
  type TaskBatch,
  type TaskSpec,
  type Value,
  type WhoHas,
  type WorkerMessage,
} from '@skein/protocol';
import { CHANNEL_OPTIONS, PROTOCOL_VERSION, grpcTarget } from '@skein/common';
import { SKEIN_BIN, readyOf, startProcess, until, within, type Proc } from './helpers.js';
import { Rng, countFrom, seedFrom } from './rng.js';

const SEED = seedFrom('SKEIN_FUZZ_SEED');
const COUNT = countFrom('SKEIN_FUZZ_COUNT', 2000);
/** Every fuzz call must answer within this; one that takes longer counts as a hang. */
const DEADLINE_MS = 10_000;
/** Calls in flight at once. */
const PARALLEL = 12;
/** The scheduler's RSS may grow by this much over its size before the fuzzing (a generous bound: it
 * settles around 100-150 MB; without bounds on what it keeps, thousands of hostile messages take it
 * far past this). */
const RSS_GROWTH_BOUND = 384 * 1024 * 1024;

const tag = `(SKEIN_FUZZ_SEED=${SEED} SKEIN_FUZZ_COUNT=${COUNT})`;

// ------------------------------------------------------------------------------------ raw calls

const same = (b: Buffer): Buffer => b;

/** How one fuzz call ended: a gRPC status code, or 'hang' when it did not end within the deadline. */
type Ending = number | 'hang';

interface CallLog {
  what: string;
  ending: Ending;
  ms: number;
  deadlineMs: number;
  /** The request messages, kept for the report of a failed call. */
  sent: Buffer[];
}

class Calls {
  readonly log: CallLog[] = [];
  readonly codes = new Map<string, number>();

  record(what: string, ending: Ending, started: number, sent: Buffer[], deadlineMs = DEADLINE_MS): void {
    const ms = Date.now() - started;
    this.log.push({ what, ending, ms, deadlineMs, sent: ending === Status.OK ? [] : sent });
    const name = ending === 'hang' ? 'hang' : (Status[ending] ?? String(ending));
    this.codes.set(name, (this.codes.get(name) ?? 0) + 1);
  }

  get hangs(): CallLog[] {
    // Running into the call's own deadline counts: the server left it unanswered. (A server may
    // answer DEADLINE_EXCEEDED early, for a deadline of its own: that is an answer.)
    return this.log.filter((c) => c.ending === 'hang' || (c.ending === Status.DEADLINE_EXCEEDED && c.ms >= c.deadlineMs - 250));
  }

  /**
   * The calls that hung, one line each; their requests are written to a file (base64, in order)
   * so that they can be replayed by hand.
   */
  reportHangs(): string[] {
    const hangs = this.hangs;
    if (hangs.length === 0) return [];
    const file = join(tmpdir(), `skein-fuzz-${SEED}-${process.pid}-hangs.json`);
    writeFileSync(file, JSON.stringify(hangs.map((h) => ({ what: h.what, ending: h.ending, ms: h.ms, sent: h.sent.map((b) => b.toString('base64')) })), null, 1));
    return hangs.map((h) => `${h.what.slice(0, 2000)} (${h.ending}, ${h.ms} ms; requests in ${file})`);
  }

  summary(): string {
    return [...this.codes].map(([k, n]) => `${k}: ${n}`).join(', ');
  }
}

/** Ends a call by itself if grpc-js never reports its end (a guard on the guard). */
function guard(ms: number, onTimeout: () => void): NodeJS.Timeout {
  return setTimeout(onTimeout, ms + 5_000);
}

function unary(c: GrpcClient, path: string, body: Buffer, calls: Calls, what: string, deadlineMs = DEADLINE_MS): Promise<void> {
  const started = Date.now();
  return new Promise((resolve) => {
    let done = false;
    const finish = (e: Ending) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      calls.record(what, e, started, [body], deadlineMs);
      resolve();
    };
    const call = c.makeUnaryRequest(path, same, same, body, new Metadata(), { deadline: Date.now() + deadlineMs }, (err) => finish(err ? err.code : Status.OK));
    const timer = guard(deadlineMs, () => {
      finish('hang');
      call.cancel();
    });
  });
}

/** A bidirectional session: writes every message, half-closes, and waits for the server to end it. */
function session(c: GrpcClient, path: string, msgs: Buffer[], calls: Calls, what: string): Promise<void> {
  const started = Date.now();
  return new Promise((resolve) => {
    let done = false;
    const call: ClientDuplexStream<Buffer, Buffer> = c.makeBidiStreamRequest(path, same, same, new Metadata(), { deadline: Date.now() + DEADLINE_MS });
    const finish = (e: Ending) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      calls.record(what, e, started, msgs);
      resolve();
    };
    call.on('data', () => undefined);
    call.on('error', () => undefined);
    call.on('status', (s) => finish(s.code));
    const timer = guard(DEADLINE_MS, () => {
      finish('hang');
      call.cancel();
    });
    for (const m of msgs) call.write(m);
    call.end();
  });
}

/** A server stream: reads to its end, or only to its first message (`first`) and then cancels. */
function serverStream(c: GrpcClient, path: string, body: Buffer, calls: Calls, what: string, first: boolean): Promise<void> {
  const started = Date.now();
  return new Promise((resolve) => {
    let done = false;
    const call: ClientReadableStream<Buffer> = c.makeServerStreamRequest(path, same, same, body, new Metadata(), { deadline: Date.now() + DEADLINE_MS });
    const finish = (e: Ending) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      calls.record(what, e, started, [body]);
      resolve();
    };
    call.on('data', () => {
      if (!first) return;
      finish(Status.OK);
      call.cancel();
    });
    call.on('error', () => undefined);
    call.on('status', (s) => finish(s.code));
    const timer = guard(DEADLINE_MS, () => {
      finish('hang');
      call.cancel();
    });
  });
}

/** Runs `jobs` with at most `n` in flight. */
async function inParallel(n: number, jobs: Array<() => Promise<void>>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, jobs.length) }, async () => {
      while (next < jobs.length) await jobs[next++]!();
    }),
  );
}

// ------------------------------------------------------------------------------ byte mutations

function varint(n: bigint): Buffer {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}

const fieldTag = (field: number, wireType: number): Buffer => varint(BigInt((field << 3) | wireType));

/** One byte-level mutation of an encoded message (`others`: encodings to splice from). */
function mutate(r: Rng, b: Buffer, others: readonly Buffer[]): Buffer {
  const at = (len: number) => r.int(len + 1);
  switch (r.int(11)) {
    case 0: {
      // Flip one to four bits.
      const c = Buffer.from(b);
      if (c.length === 0) return r.bytes(1);
      for (let i = r.int(4); i >= 0; i--) c[r.int(c.length)]! ^= 1 << r.int(8);
      return c;
    }
    case 1:
      return b.subarray(0, r.int(Math.max(1, b.length)));
    case 2: {
      // Splice in random bytes.
      const i = at(b.length);
      return Buffer.concat([b.subarray(0, i), r.bytes(1 + r.int(16)), b.subarray(i)]);
    }
    case 3: {
      // Splice in a piece of another message.
      const o = others.length > 0 ? r.pick(others) : r.bytes(16);
      const from = r.int(o.length + 1);
      const i = at(b.length);
      return Buffer.concat([b.subarray(0, i), o.subarray(from, from + 1 + r.int(64)), b.subarray(i)]);
    }
    case 4:
      // Every field twice (proto3 merges: repeated fields doubled, the last singular one wins).
      return Buffer.concat([b, b]);
    case 5: {
      // A wrong wire type on the first field (or on a byte that may be a tag).
      const c = Buffer.from(b);
      if (c.length === 0) return fieldTag(1, r.int(8));
      const i = r.chance(0.5) ? 0 : r.int(c.length);
      c[i] = (c[i]! & ~7) | r.int(8);
      return c;
    }
    case 6: {
      // A huge varint: the largest 64-bit one, or an overlong one (11 bytes).
      const huge = r.chance(0.5) ? varint((1n << 64n) - 1n) : Buffer.from([...Array(10).fill(0xff), 0x01]);
      return Buffer.concat([b, fieldTag(1 + r.int(12), 0), huge]);
    }
    case 7: {
      // A length-delimited field that claims far more bytes than follow.
      const len = r.pick([1n << 31n, (1n << 32n) - 1n, (1n << 63n) - 1n, (1n << 64n) - 1n, 1_000_000n]);
      return Buffer.concat([b, fieldTag(1 + r.int(12), 2), varint(len), r.bytes(r.int(8))]);
    }
    case 8: {
      // An unknown field, of any wire type.
      const field = r.pick([1000, 2 ** 29 - 1, 99, 15, 16]);
      const wt = r.pick([0, 1, 2, 5]);
      const payload = wt === 0 ? varint(BigInt(r.int(2 ** 31))) : wt === 1 ? r.bytes(8) : wt === 5 ? r.bytes(4) : Buffer.concat([varint(3n), r.bytes(3)]);
      const i = r.chance(0.5) ? 0 : b.length;
      return Buffer.concat([b.subarray(0, i), fieldTag(field, wt), payload, b.subarray(i)]);
    }
    case 9: {
      // Cut a range out.
      const i = r.int(b.length + 1);
      return Buffer.concat([b.subarray(0, i), b.subarray(i + 1 + r.int(32))]);
    }
    default:
      return r.bytes(r.int(64));
  }
}

/** `b` as it is (a structure-level message) or with one to three byte-level mutations. */
function maybeMutated(r: Rng, b: Buffer, others: readonly Buffer[]): Buffer {
  if (r.chance(0.4)) return b;
  let m = b;
  for (let i = r.int(3); i >= 0; i--) m = mutate(r, m, others);
  return m;
}

// ------------------------------------------------------------------------ hostile values

const BIG = 'x'.repeat(64 * 1024);
const HOSTILE_STRINGS = [
  '', ' ', '\u0000', '\ud800', '__proto__', 'constructor', 'toString', 'hasOwnProperty', '💥', 'ünï-cødé',
  'k'.repeat(4096), 'tcp://127.0.0.1:9', 'tcp://', 'tcp://[::1', '-', 'null', '%s%n', '../../etc/passwd', '\n\r\t',
];
/** Keys fuzz clients and fuzz workers share, so their messages meet in the scheduler. */
const KEY_POOL = Array.from({ length: 24 }, (_, i) => `fz-${i}`);
const FAKE_WORKERS = ['tcp://127.0.0.1:9', 'tcp://127.0.0.1:1', 'tcp://fuzz.invalid:4000', 'tcp://127.0.0.1:65535'];
/** Harmless function sources (nothing the fuzzer sends may loop or touch the machine). */
const FUNCTIONS: Array<[hash: string, source: string]> = [
  ['fz-h-inc', '(x) => x + 1'],
  ['fz-h-id', '(...a) => a.length'],
  ['fz-h-throw', '() => { throw new Error("fuzz") }'],
  ['fz-h-syntax', '(x) => {'],
  ['fz-h-notfn', '42'],
  ['fz-h-async', 'async (x) => [x]'],
  ['fz-h-big', `(${Array.from({ length: 500 }, (_, i) => `a${i}`).join(', ')}) => 1`],
];
const INT32 = [0, 1, -1, 7, 2 ** 31 - 1, -(2 ** 31), 1000];
const INT64 = [0, 1, -1, 2 ** 53 - 1, -(2 ** 53), 1e15, 123];
const DOUBLES = [0, -0, 1, -1, NaN, Infinity, -Infinity, 1e308, 5e-324, Date.now()];

function str(r: Rng): string {
  if (r.chance(0.02)) return BIG;
  return r.chance(0.3) ? r.pick(HOSTILE_STRINGS) : r.bytes(1 + r.int(12)).toString('latin1');
}
const key = (r: Rng): string => (r.chance(0.75) ? r.pick(KEY_POOL) : str(r));
const int32 = (r: Rng): number => (r.chance(0.5) ? r.int(10) : r.pick(INT32));
const int64 = (r: Rng): number => (r.chance(0.5) ? r.int(1000) : r.pick(INT64));
const dbl = (r: Rng): number => (r.chance(0.5) ? r.next() * 1000 : r.pick(DOUBLES));
const names = (r: Rng): Map<string, number> => new Map(r.some(['GPU', 'mem', '', '__proto__', str(r)], 2).map((n) => [n, dbl(r)]));

function value(r: Rng): Value {
  switch (r.int(7)) {
    case 0:
      return { encoding: 1, data: Buffer.from(JSON.stringify([r.int(100)])) };
    case 1:
      return { encoding: 1, data: Buffer.from(r.pick(['[', '[1e999]', 'null', '{}', '[{"__skein_ref__":"fz-3"}]', '[{"__skein_ref__":5}]', '"'])) };
    case 2:
      return { encoding: 2, data: v8serialize([1, 'a', new Map([[1, 2]])]) };
    case 3:
      return { encoding: 2, data: mutate(r, v8serialize({ a: [1, 2, 3], b: 'x' }), []) };
    case 4:
      return { encoding: r.int(8), data: r.bytes(r.int(40)) };
    case 5:
      return { encoding: 3, data: r.bytes(r.int(100)) };
    default:
      return { encoding: 4, data: Buffer.alloc(0) };
  }
}

function fnRef(r: Rng): TaskSpec['function'] {
  if (r.chance(0.1)) return undefined;
  if (r.chance(0.2)) return { kind: { $case: 'registered', value: r.pick(['inc', 'nosuch', str(r)]) } };
  return { kind: { $case: 'inlineHash', value: r.chance(0.85) ? r.pick(FUNCTIONS)[0] : str(r) } };
}

function taskSpec(r: Rng): TaskSpec {
  const k = key(r);
  return {
    key: k,
    function: fnRef(r),
    args: r.chance(0.9) ? value(r) : undefined,
    // Keys that exist, keys that do not, the task itself, and cycles (fz-1 -> fz-2 -> fz-1).
    dependencies: r.chance(0.5) ? [] : r.some([...KEY_POOL, k, str(r)], 3),
    priority: int32(r),
    retries: r.chance(0.8) ? r.int(2) : int32(r),
    resources: r.chance(0.8) ? new Map() : names(r),
    workers: r.chance(0.8) ? [] : r.some([...FAKE_WORKERS, str(r)], 2),
    allowOtherWorkers: r.chance(0.5),
    resultEncoding: r.chance(0.8) ? 0 : r.int(8),
    pure: r.chance(0.5),
  };
}

function taskBatch(r: Rng): TaskBatch {
  const keys = r.some(KEY_POOL, 6);
  const n = r.chance(0.7) ? keys.length : r.int(8);
  const lengths = Array.from({ length: n }, () => r.int(4));
  return {
    function: fnRef(r),
    keys,
    args: r.chance(0.2)
      ? undefined
      : {
          encodings: Array.from({ length: r.chance(0.8) ? n : r.int(8) }, () => r.pick([1, 1, 2, 0, 9]) as Encoding),
          lengths: r.chance(0.8) ? lengths : lengths.map(() => r.pick([0, 2 ** 32 - 1, 1000])),
          data: r.bytes(lengths.reduce((a, b) => a + b, 0) + (r.chance(0.8) ? 0 : r.int(5))),
        },
    dependencyCounts: r.chance(0.7) ? [] : Array.from({ length: r.int(8) }, () => r.pick([0, 1, 2, 2 ** 32 - 1])),
    dependencies: r.chance(0.7) ? [] : r.some(KEY_POOL, 4),
    priority: int32(r),
    retries: r.chance(0.8) ? 0 : int32(r),
    resources: r.chance(0.9) ? new Map() : names(r),
    workers: r.chance(0.9) ? [] : r.some(FAKE_WORKERS, 2),
    allowOtherWorkers: r.chance(0.5),
    resultEncoding: r.chance(0.8) ? 0 : r.int(8),
    pure: r.chance(0.5),
  };
}

function clientMessage(r: Rng): ClientMessage {
  const keys = () => r.some([...KEY_POOL, str(r)], 5);
  switch (r.int(9)) {
    case 0:
    case 1:
    case 2: {
      const fns = r.some(FUNCTIONS, 3).map(([hash, source]) => ({ hash, source, name: r.chance(0.8) ? 'fz' : str(r) }));
      if (r.chance(0.1)) fns.push({ hash: str(r), source: r.chance(0.5) ? '' : str(r), name: str(r) });
      return {
        kind: {
          $case: 'updateGraph',
          value: {
            tasks: Array.from({ length: r.int(5) }, () => taskSpec(r)),
            wantedKeys: keys(),
            functions: fns,
            broadcastKeys: r.chance(0.8) ? [] : keys(),
            stimulusId: r.chance(0.5) ? '' : str(r),
            batches: r.chance(0.7) ? [] : [taskBatch(r)],
          },
        },
      };
    }
    case 3:
      return { kind: { $case: 'releaseKeys', value: { keys: keys(), stimulusId: str(r) } } };
    case 4:
      return { kind: { $case: 'cancelKeys', value: { keys: keys(), stimulusId: str(r) } } };
    case 5:
      return { kind: { $case: 'wantKeys', value: { keys: keys(), stimulusId: str(r) } } };
    case 6:
      return { kind: { $case: 'hello', value: { protocolVersion: PROTOCOL_VERSION, clientId: str(r), batches: r.chance(0.5) } } };
    case 7:
      return { kind: undefined };
    default:
      return { kind: { $case: 'updateGraph', value: { tasks: [taskSpec(r), taskSpec(r)], wantedKeys: [], functions: [], broadcastKeys: [], stimulusId: '', batches: [] } } };
  }
}

function clientHello(r: Rng, n: number): ClientMessage {
  const version = r.chance(0.9) ? PROTOCOL_VERSION : r.pick(['', '999.0', '1', str(r)]);
  // Mostly a fresh id; sometimes a shared one (a second session with it is refused) or a hostile one.
  const clientId = r.chance(0.8) ? `fz-client-${SEED}-${n}` : r.chance(0.5) ? 'fz-client-shared' : str(r);
  return { kind: { $case: 'hello', value: { protocolVersion: version, clientId, batches: r.chance(0.7) } } };
}

function whoHas(r: Rng): WhoHas {
  return { key: key(r), workers: r.some([...FAKE_WORKERS, str(r)], 2), nbytes: int64(r) };
}

function workerMessage(r: Rng, fakeAddress: string): WorkerMessage {
  switch (r.int(12)) {
    case 0:
    case 1:
      return {
        kind: {
          $case: 'taskFinished',
          value: { key: key(r), value: r.chance(0.7) ? value(r) : undefined, nbytes: int64(r), typeName: str(r), startMs: dbl(r), stopMs: dbl(r), stimulusId: str(r) },
        },
      };
    case 2: {
      const keys = r.some(KEY_POOL, 5);
      const n = r.chance(0.7) ? keys.length : r.int(7);
      const lengths = Array.from({ length: n }, () => r.int(3));
      return {
        kind: {
          $case: 'tasksFinished',
          value: {
            keys,
            values: r.chance(0.3) ? undefined : { encodings: lengths.map(() => 1), lengths, data: r.bytes(lengths.reduce((a, b) => a + b, 0)) },
            nbytes: Array.from({ length: n }, () => int64(r)),
            typeNames: r.some(['number', str(r)], 2),
            startMs: Array.from({ length: r.chance(0.8) ? n : r.int(7) }, () => dbl(r)),
            stopMs: Array.from({ length: n }, () => dbl(r)),
            stimulusId: str(r),
            typeNameIndex: Array.from({ length: r.chance(0.8) ? n : r.int(7) }, () => r.pick([0, 1, 5, 2 ** 32 - 1])),
          },
        },
      };
    }
    case 3:
      return {
        kind: {
          $case: 'taskErred',
          value: {
            key: key(r),
            error: r.chance(0.2) ? undefined : { type: str(r), message: str(r), stack: str(r), code: r.pick(['', 'internal', 'cancelled', str(r)]), key: key(r), detailsJson: r.pick(['', '{', '{"a":1}', str(r)]) },
            startMs: dbl(r),
            stopMs: dbl(r),
            stimulusId: str(r),
          },
        },
      };
    case 4:
      return {
        kind: {
          $case: 'heartbeat',
          value: { executing: int32(r), ready: int32(r), memoryRss: int64(r), managedBytes: int64(r), cpuPercent: dbl(r), nowMs: dbl(r), spilledBytes: int64(r), paused: r.chance(0.3) },
        },
      };
    case 5:
      return { kind: { $case: 'addKeys', value: { keys: Array.from({ length: r.int(4) }, () => whoHas(r)), stimulusId: str(r) } } };
    case 6:
      return { kind: { $case: 'keysReleased', value: { keys: r.some(KEY_POOL, 4), stimulusId: str(r) } } };
    case 7:
      return { kind: { $case: 'missingData', value: { key: key(r), worker: r.pick([...FAKE_WORKERS, fakeAddress, str(r)]), stimulusId: str(r) } } };
    case 8:
      return { kind: { $case: 'stealResponse', value: { key: key(r), state: r.pick(['ready', 'executing', 'memory', 'waiting', 'fetch', 'released', str(r)]), stimulusId: str(r) } } };
    case 9:
      return { kind: { $case: 'reschedule', value: { key: key(r), stimulusId: str(r) } } };
    case 10:
      return { kind: { $case: 'transferDone', value: { keys: r.some(KEY_POOL, 3), source: r.pick([...FAKE_WORKERS, str(r)]), nbytes: int64(r), startMs: dbl(r), stopMs: dbl(r) } } };
    default:
      return r.chance(0.5) ? { kind: { $case: 'closing', value: { reason: str(r), stimulusId: str(r) } } } : { kind: undefined };
  }
}

function workerHello(r: Rng, address: string): WorkerMessage {
  return {
    kind: {
      $case: 'hello',
      value: {
        protocolVersion: r.chance(0.9) ? PROTOCOL_VERSION : r.pick(['', '0.1', str(r)]),
        address: r.chance(0.95) ? address : r.pick(['', str(r)]),
        name: str(r),
        nthreads: r.chance(0.7) ? 1 + r.int(4) : int32(r),
        memoryLimit: int64(r),
        resources: r.chance(0.7) ? new Map() : names(r),
        held: r.chance(0.7) ? [] : Array.from({ length: r.int(4) }, () => whoHas(r)),
        registeredFunctions: r.chance(0.7) ? [] : r.some(['inc', str(r)], 2),
        pid: int32(r),
        nannyAddress: r.chance(0.8) ? '' : r.pick([...FAKE_WORKERS, str(r)]),
        batches: r.chance(0.5),
        versions: undefined,
      },
    },
  };
}

// ------------------------------------------------------------------------------------ the cluster

interface Node {
  proc: Proc;
  nanny: string;
  worker: string;
  workerPid: number;
}

function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

const alive = (p: Proc) => p.child.exitCode === null && p.child.signalCode === null;
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Lines a process printed that say a state machine hit an internal error (a bug, recovered or not). */
const INTERNAL = /This is a bug in Skein|hit an internal error|could not recover|Uncaught|UnhandledPromiseRejection|FATAL ERROR/;
const internalErrors = (procs: readonly Proc[]) => procs.flatMap((p) => p.stderr.filter((l) => INTERNAL.test(l)).map((l) => l.slice(0, 1000)));

async function legitimateClientWorks(address: string): Promise<void> {
  await using client = await Client.connect(address);
  const xs = Array.from({ length: 50 }, (_, i) => i);
  const squares = await within(client.gather(client.map((x: number) => x * x, xs)), 20_000, 'timed out' as const);
  expect(squares, `a legitimate map ${tag}`).toEqual(xs.map((x) => x * x));
  const inc = delayed((x: number) => x + 1);
  const add = delayed((a: number, b: number) => a + b);
  const total = add(inc(1), add(inc(10), inc(100)));
  const f = client.compute(total);
  expect(await within(f.result(), 20_000, 'timed out' as const), `a legitimate graph ${tag}`).toBe(2 + 11 + 101);
}

describe(`fuzzing every gRPC service of a real cluster ${tag}`, () => {
  const procs: Proc[] = [];
  let scheduler: Proc;
  let address = '';
  let schedulerPid = 0;
  const nodes: Node[] = [];
  const channels: GrpcClient[] = [];
  let peak = 0;
  let baseline = 0;
  let sampler: NodeJS.Timeout | undefined;

  const channel = (addr: string) => {
    const c = new GrpcClient(grpcTarget(addr), credentials.createInsecure(), CHANNEL_OPTIONS);
    channels.push(c);
    return c;
  };

  async function startNode(name: string): Promise<Node> {
    const proc = startProcess([SKEIN_BIN, 'worker', address, '--host', '127.0.0.1', '--name', name, '--nthreads', '1', '--memory-limit', '1GB'], { SKEIN_READY_JSON: '1' });
    procs.push(proc);
    const ready = await readyOf(proc, 30_000);
    if (ready.role !== 'worker' || !ready.nanny) throw new Error(`not a worker under a nanny: ${JSON.stringify(ready)}`);
    return { proc, nanny: ready.nanny, worker: ready.address, workerPid: ready.pid };
  }

  beforeAll(async () => {
    console.log(`fuzz: ${tag}`);
    scheduler = startProcess([SKEIN_BIN, 'scheduler', '--host', '127.0.0.1', '--port', '0', '--no-dashboard', '--ready-json']);
    procs.push(scheduler);
    const ready = await readyOf(scheduler, 30_000);
    if (ready.role !== 'scheduler') throw new Error(`not a scheduler: ${JSON.stringify(ready)}`);
    address = ready.address;
    schedulerPid = ready.pid;
    nodes.push(...(await Promise.all([startNode('fz-a'), startNode('fz-b')])));
    await legitimateClientWorks(address); // warm: the baseline is the size of a scheduler that has worked
    baseline = rssOf(schedulerPid);
    peak = baseline;
    sampler = setInterval(() => {
      try {
        if (alive(scheduler)) peak = Math.max(peak, rssOf(schedulerPid));
      } catch {
        // It exited between the check and the read (the crash is reported by the test).
      }
    }, 100);
  }, 60_000);

  afterAll(async () => {
    clearInterval(sampler);
    for (const c of channels) c.close();
    for (const p of procs) p.kill('SIGKILL');
    await Promise.all(procs.map((p) => p.exited));
    for (const n of nodes) if (pidAlive(n.workerPid)) process.kill(n.workerPid, 'SIGKILL');
  });

  it('survives thousands of mutated messages on every service, and a legitimate client still gets correct results', async () => {
    const r = new Rng(SEED);
    const calls = new Calls();
    const sched = [channel(address), channel(address), channel(address)];
    const workers = nodes.map((n) => channel(n.worker));
    const nannies = nodes.map((n) => channel(n.nanny));
    const jobs: Array<() => Promise<void>> = [];

    // SchedulerService: COUNT messages over the two sessions and the harmless unary calls.
    const S = '/skein.v1.SchedulerService/';
    const samples: Buffer[] = [];
    let budget = COUNT;
    for (let n = 0; budget > 0; n++) {
      const rr = r.fork();
      const c = rr.pick(sched);
      const kind = rr.int(10);
      if (kind < 4) {
        const msgs = [clientHello(rr, n), ...Array.from({ length: 1 + rr.int(6) }, () => clientMessage(rr))];
        budget -= msgs.length;
        // Sometimes the whole batch in one request, mostly one request per message (so one bad one
        // does not hide the rest).
        const bufs = rr.chance(0.3)
          ? [Buffer.from(ClientSessionRequest.encode(ClientSessionRequest.fromPartial({ messages: msgs })).finish())]
          : msgs.map((m) => Buffer.from(ClientSessionRequest.encode(ClientSessionRequest.fromPartial({ messages: [m] })).finish()));
        samples.push(...bufs);
        const sent = bufs.map((b, i) => (i === 0 && rr.chance(0.7) ? b : maybeMutated(rr, b, samples)));
        jobs.push(() => session(c, `${S}ClientSession`, sent, calls, `ClientSession [${sent.map(describeClientRequest).join('; ')}]`));
      } else if (kind < 7) {
        const fake = `tcp://127.0.0.1:${2 + n}`; // nobody listens there: a fetch from it fails fast
        const msgs = [workerHello(rr, fake), ...Array.from({ length: 1 + rr.int(8) }, () => workerMessage(rr, fake))];
        budget -= msgs.length;
        const bufs = msgs.map((m) => Buffer.from(WorkerSessionRequest.encode(WorkerSessionRequest.fromPartial({ messages: [m] })).finish()));
        samples.push(...bufs);
        const sent = bufs.map((b, i) => (i === 0 && rr.chance(0.7) ? b : maybeMutated(rr, b, samples)));
        jobs.push(() => session(c, `${S}WorkerSession`, sent, calls, `WorkerSession [${sent.map(describeWorkerRequest).join('; ')}]`));
      } else {
        budget -= 1;
        const pick = rr.int(6);
        const body =
          pick === 0
            ? Buffer.from(GetStoryRequest.encode({ keys: rr.some([...KEY_POOL, str(rr)], 4) }).finish())
            : pick === 1
              ? Buffer.from(GetWhoHasRequest.encode({ keys: rr.some([...KEY_POOL, str(rr)], 4) }).finish())
              : pick === 2
                ? Buffer.from(GetAdaptiveTargetRequest.encode({ targetDurationMs: dbl(rr) }).finish())
                : pick === 3
                  ? // A death report for a worker that does not exist (a live one: the last phase).
                    Buffer.from(ReportWorkerDeathRequest.encode({ workerAddress: rr.pick([...FAKE_WORKERS, str(rr)]), reason: str(rr), expected: false }).finish())
                  : Buffer.alloc(0);
        const method = ['GetStory', 'GetWhoHas', 'GetAdaptiveTarget', 'ReportWorkerDeath', 'GetInfo', 'GetWorkerMetrics'][pick]!;
        let sent = maybeMutated(rr, body, samples);
        // A mutated death report may name a live worker: keep those to the last phase.
        if (method === 'ReportWorkerDeath' && nodes.some((w) => sent.includes(Buffer.from(w.worker)))) sent = body;
        if (rr.chance(0.1)) jobs.push(() => serverStream(c, `${S}WatchWorkers`, maybeMutated(rr, Buffer.alloc(0), samples), calls, 'WatchWorkers', true));
        else jobs.push(() => unary(c, `${S}${method}`, sent, calls, method));
      }
    }

    // WorkerService of both workers: COUNT calls.
    const W = '/skein.v1.WorkerService/';
    for (let n = 0; n < COUNT; n++) {
      const rr = r.fork();
      const c = rr.pick(workers);
      const pick = rr.int(10);
      if (pick < 4) {
        const body = Buffer.from(GetDataRequest.encode({ keys: rr.some([...KEY_POOL, str(rr)], 4), requester: str(rr), acceptBulk: rr.chance(0.5) }).finish());
        jobs.push(() => serverStream(c, `${W}GetData`, maybeMutated(rr, body, samples), calls, 'GetData', false));
      } else if (pick < 7) {
        const [hash, source] = rr.pick(FUNCTIONS);
        const fn = rr.chance(0.9) ? { hash: rr.chance(0.8) ? hash : str(rr), source: rr.chance(0.9) ? source : '', name: str(rr) } : undefined;
        const body = Buffer.from(RunRequest.encode({ function: fn, args: rr.chance(0.8) ? value(rr) : undefined, resultEncoding: rr.chance(0.8) ? 0 : rr.int(8) }).finish());
        jobs.push(() => unary(c, `${W}Run`, maybeMutated(rr, body, samples), calls, 'Run'));
      } else if (pick < 9) {
        const body = Buffer.from(WorkerServiceGetStoryRequest.encode({ keys: rr.some([...KEY_POOL, str(rr)], 4) }).finish());
        jobs.push(() => unary(c, `${W}GetStory`, maybeMutated(rr, body, samples), calls, 'worker GetStory'));
      } else {
        jobs.push(() => unary(c, `${W}GetStatus`, maybeMutated(rr, Buffer.alloc(0), samples), calls, 'worker GetStatus'));
      }
    }

    // NannyService of both nannies: COUNT calls of GetStatus (Restart and Kill: the last phase).
    for (let n = 0; n < COUNT; n++) {
      const rr = r.fork();
      const body = rr.chance(0.2) ? Buffer.from(KillRequest.encode({ reason: str(rr) }).finish()) : Buffer.alloc(0);
      jobs.push(() => unary(rr.pick(nannies), '/skein.v1.NannyService/GetStatus', maybeMutated(rr, body, samples), calls, 'nanny GetStatus'));
    }

    // Interleave the services, in an order the seed fixes.
    for (let i = jobs.length - 1; i > 0; i--) {
      const j = r.int(i + 1);
      [jobs[i], jobs[j]] = [jobs[j]!, jobs[i]!];
    }
    const started = Date.now();
    await inParallel(PARALLEL, jobs);
    console.log(`fuzz: ${jobs.length} calls in ${Date.now() - started} ms; endings: ${calls.summary()}; scheduler RSS ${(baseline / 2 ** 20).toFixed(0)} MB → peak ${(peak / 2 ** 20).toFixed(0)} MB ${tag}`);

    // Each property is checked (softly: one run reports every one that failed). Nothing hung.
    expect.soft(calls.reportHangs(), `calls that did not answer within ${DEADLINE_MS} ms ${tag}`).toEqual([]);
    // No process crashed: the same scheduler, nannies and worker processes as at the start.
    expect.soft(alive(scheduler), `the scheduler process is alive ${tag}\n${scheduler.stderr.slice(-20).join('\n')}`).toBe(true);
    for (const n of nodes) {
      expect.soft(alive(n.proc), `the nanny of ${n.worker} is alive ${tag}\n${n.proc.stderr.slice(-20).join('\n')}`).toBe(true);
      expect.soft(pidAlive(n.workerPid), `worker process ${n.workerPid} (${n.worker}) is alive ${tag}`).toBe(true);
      const status = await nannyStatus(n.nanny);
      expect.soft({ pid: status.workerPid, restarts: status.restarts, lastDeath: status.lastDeathReason }, `nanny of ${n.worker} ${tag}`).toEqual({ pid: n.workerPid, restarts: 0, lastDeath: '' });
    }
    const internal = internalErrors(procs);
    expect.soft(internal, `internal errors logged ${tag}`).toEqual([]);
    // A legitimate client still gets correct results, from both original workers.
    await legitimateClientWorks(address);
    await using client = await Client.connect(address);
    expect.soft((await client.schedulerInfo()).workers.map((w) => w.pid).sort(), `the registered workers ${tag}`).toEqual(nodes.map((n) => n.workerPid).sort());
    // The scheduler's memory stayed bounded.
    expect.soft(peak - baseline, `scheduler RSS grew from ${baseline} to ${peak} bytes ${tag}`).toBeLessThan(RSS_GROWTH_BOUND);
  });

  it('survives hostile admin calls (retire, restart, death reports, nanny restart and kill), and a fresh worker serves a legitimate client', async () => {
    const r = new Rng(SEED ^ 0x5eed);
    const calls = new Calls();
    const c = channel(address);
    const samples: Buffer[] = [];
    const S = '/skein.v1.SchedulerService/';
    const jobs: Array<() => Promise<void>> = [];
    const live = nodes.map((n) => n.worker);
    for (let n = 0; n < 60; n++) {
      const body = Buffer.from(RetireWorkersRequest.encode({ workers: r.some([...live, ...FAKE_WORKERS, str(r)], 3), n: int32(r) }).finish());
      samples.push(body);
      jobs.push(() => unary(c, `${S}RetireWorkers`, maybeMutated(r, body, samples), calls, 'RetireWorkers', 40_000));
      const death = Buffer.from(ReportWorkerDeathRequest.encode({ workerAddress: r.pick([...live, ...FAKE_WORKERS, str(r)]), reason: str(r), expected: false }).finish());
      jobs.push(() => unary(c, `${S}ReportWorkerDeath`, maybeMutated(r, death, samples), calls, 'ReportWorkerDeath'));
    }
    for (const timeoutMs of [-1, 0, 1, NaN, Infinity, -Infinity, 1e300, 5e-324, 2 ** 31]) {
      const body = Buffer.from(RestartWorkersRequest.encode({ timeoutMs }).finish());
      jobs.push(() => unary(c, `${S}RestartWorkers`, body, calls, `RestartWorkers(${timeoutMs})`, 70_000));
    }
    for (const node of nodes) {
      const nc = channel(node.nanny);
      for (const timeoutMs of [-1, NaN, 1]) {
        const body = Buffer.from(RestartRequest.encode({ reason: str(r), timeoutMs }).finish());
        jobs.push(() => unary(nc, '/skein.v1.NannyService/Restart', maybeMutated(r, body, samples), calls, 'nanny Restart', 40_000));
      }
      jobs.push(() => unary(nc, '/skein.v1.NannyService/Kill', maybeMutated(r, Buffer.from(KillRequest.encode({ reason: str(r) }).finish()), samples), calls, 'nanny Kill'));
    }
    for (let i = jobs.length - 1; i > 0; i--) {
      const j = r.int(i + 1);
      [jobs[i], jobs[j]] = [jobs[j]!, jobs[i]!];
    }
    await inParallel(PARALLEL, jobs);
    console.log(`fuzz (admin): ${jobs.length} calls; endings: ${calls.summary()} ${tag}`);

    expect.soft(calls.reportHangs(), `admin calls that did not answer in time ${tag}`).toEqual([]);
    expect.soft(alive(scheduler), `the scheduler process is alive ${tag}\n${scheduler.stderr.slice(-20).join('\n')}`).toBe(true);
    // The nannies may have been told to stop; whatever they did, they did it cleanly.
    for (const n of nodes) {
      if (!alive(n.proc)) expect.soft(n.proc.child.exitCode, `exit of the nanny of ${n.worker} ${tag}\n${n.proc.stderr.slice(-20).join('\n')}`).toBe(0);
    }
    const internal = internalErrors(procs);
    expect.soft(internal, `internal errors logged ${tag}`).toEqual([]);
    // A fresh worker joins, and a legitimate client gets correct results.
    const fresh = await startNode('fz-fresh');
    nodes.push(fresh);
    await until(async () => {
      await using probe = await Client.connect(address);
      return (await probe.schedulerInfo()).workers.some((w) => w.address === fresh.worker);
    }, 20_000, 'the fresh worker to register');
    await legitimateClientWorks(address);
    expect.soft(peak - baseline, `scheduler RSS grew from ${baseline} to ${peak} bytes ${tag}`).toBeLessThan(RSS_GROWTH_BOUND);
  });
});

/** What a fuzz request decodes to, briefly (for the report of a call that failed an assertion). */
function describeWorkerRequest(b: Buffer): string {
  try {
    return WorkerSessionRequest.decode(b).messages.map((m) => m.kind ? `${m.kind.$case} ${JSON.stringify(m.kind.value).slice(0, 300)}` : '(empty)').join(', ');
  } catch (err) {
    return `undecodable (${(err as Error).message})`;
  }
}

function describeClientRequest(b: Buffer): string {
  try {
    return ClientSessionRequest.decode(b).messages.map((m) => m.kind ? `${m.kind.$case} ${JSON.stringify(m.kind.value).slice(0, 300)}` : '(empty)').join(', ');
  } catch (err) {
    return `undecodable (${(err as Error).message})`;
  }
}

function nannyStatus(nanny: string): Promise<{ workerPid: number; restarts: number; lastDeathReason: string }> {
  const c = new NannyServiceClient(grpcTarget(nanny), credentials.createInsecure(), CHANNEL_OPTIONS);
  return new Promise((resolve, reject) => {
    c.getStatus({}, new Metadata(), { deadline: Date.now() + DEADLINE_MS }, (err, res) => {
      c.close();
      if (err) reject(err);
      else resolve(res!);
    });
  });
}

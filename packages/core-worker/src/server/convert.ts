/**
 * Wire ↔ domain for the worker session: scheduler commands become state events, the state's
 * scheduler messages become protobuf WorkerMessages. The only module that knows both.
 */
import type { ComputeBatch, ComputeTask, FunctionRef, InlineFunction, WorkerMessage, WhoHas } from '@skein/protocol';
import { Encoding } from '@skein/protocol';
import { InvalidArgumentError, StringTable, buildValueColumn, checkColumn, forEachRun, readValueColumn } from '@skein/common';
import type { ComputeTaskEvent, Encoded, FunctionSpec, SchedulerMessage, TaskCall, WorkerEvent } from '../state/types.js';

const EMPTY_ARGS = { encoding: Encoding.ENCODING_JSON, data: Buffer.from('[]') };
// Shared by every task of a ComputeBatch (its tasks have no inputs); the state only reads them.
const NO_DEPENDENCIES: readonly string[] = Object.freeze([]);
const NO_RECORDS: ReadonlyMap<string, never> = new Map<string, never>();

// Keyed by task keys, which are user data: Maps, never plain objects (a key `constructor` or
// `__proto__` would read an Object.prototype member or set the prototype).
function whoHasRecords(list: readonly WhoHas[]): { whoHas: Map<string, string[]>; nbytes: Map<string, number> } {
  const whoHas = new Map<string, string[]>();
  const nbytes = new Map<string, number>();
  for (const w of list) {
    whoHas.set(w.key, w.workers);
    if (w.nbytes) nbytes.set(w.key, Number(w.nbytes));
  }
  return { whoHas, nbytes };
}

/** The function name of a key `<name>-<token>`: everything before the last dash. */
function keyPrefix(key: string): string {
  const dash = key.lastIndexOf('-');
  return (dash < 0 ? key : key.slice(0, dash)) || 'lambda';
}

/** keyPrefix(key) === name, without cutting the prefix out (no string per key). */
function hasKeyPrefix(key: string, name: string): boolean {
  const dash = key.lastIndexOf('-');
  const end = dash < 0 ? key.length : dash;
  return end === 0 ? name === 'lambda' : end === name.length && key.startsWith(name);
}

/**
 * The function a task calls, as the state's domain type. An inline function is named by its
 * InlineFunction when one came along, else after the key's prefix. `prev` (the previous task's,
 * in a batch) is returned when it is the same function, so the tasks of a batch share one object
 * instead of allocating one each.
 */
export function functionSpec(ref: FunctionRef | undefined, inline: InlineFunction | undefined, key: string, prev?: FunctionSpec): FunctionSpec {
  const kind = ref?.kind;
  if (kind?.$case === 'inlineHash') {
    const hash = kind.value;
    const given = inline?.name;
    if (prev?.kind === 'inline' && prev.hash === hash && (given ? prev.name === given : hasKeyPrefix(key, prev.name))) return prev;
    return { kind: 'inline', hash, name: given || keyPrefix(key) };
  }
  const name = kind?.$case === 'registered' ? kind.value : '';
  return prev?.kind === 'registered' && prev.name === name ? prev : { kind: 'registered', name };
}

/** The task's function as the state's domain type. */
export function taskCall(cmd: ComputeTask): TaskCall {
  const spec = cmd.spec;
  if (!spec) throw new InvalidArgumentError('ComputeTask without a spec');
  return { fn: functionSpec(spec.function, cmd.function, spec.key), args: spec.args ?? EMPTY_ARGS, resultEncoding: spec.resultEncoding };
}

export function computeTaskEvent(cmd: ComputeTask): ComputeTaskEvent {
  const spec = cmd.spec;
  if (!spec) throw new InvalidArgumentError('ComputeTask without a spec');
  const { whoHas, nbytes } = whoHasRecords(cmd.whoHas);
  return {
    type: 'ComputeTask',
    key: spec.key,
    call: taskCall(cmd),
    dependencies: spec.dependencies,
    priority: spec.priority,
    sequence: Number(cmd.sequence),
    resources: spec.resources,
    whoHas,
    nbytes,
    inlineInputs: cmd.inlineInputs,
    stimulusId: cmd.stimulusId,
  };
}

/**
 * Appends to `out` one ComputeTask event per task of a ComputeBatch, each equal to what
 * computeTaskEvent makes of the ComputeTask the batch stands for ({spec: task i, sequence:
 * sequences[i], function, stimulus_id}). The columns are checked first, so a malformed batch
 * adds nothing and throws an InvalidArgumentError naming the field. This is the hot path of
 * `client.map`: per task it allocates the event and its call, and shares everything else (the
 * function spec, the resources, the empty input records; the argument bytes stay views into the
 * received message).
 */
export function computeBatchEvents(cmd: ComputeBatch, out: WorkerEvent[]): void {
  const b = cmd.tasks;
  if (!b) throw new InvalidArgumentError('ComputeBatch without tasks; send a TaskBatch in `tasks`.');
  const { keys, resources, priority, resultEncoding } = b;
  const n = keys.length;
  const where = `ComputeBatch of ${n} tasks`;
  // A task with inputs needs their holders or values (who_has, inline_inputs), which only a
  // ComputeTask carries: a batch with dependencies would run its tasks without their inputs.
  if (b.dependencyCounts.length > 0) {
    throw new InvalidArgumentError(`${where}: tasks.dependency_counts has ${b.dependencyCounts.length} entries but a ComputeBatch carries only tasks without dependencies; send tasks with dependencies as ComputeTask.`);
  }
  if (b.dependencies.length > 0) {
    throw new InvalidArgumentError(`${where}: tasks.dependencies has ${b.dependencies.length} entries but a ComputeBatch carries only tasks without dependencies; send tasks with dependencies as ComputeTask.`);
  }
  checkColumn(cmd.sequences.length, n, 'sequences', where);
  const args = readValueColumn(b.args, n, `${where}, tasks.args`);
  const sequences = cmd.sequences;
  const stimulusId = cmd.stimulusId;
  let fn: FunctionSpec | undefined;
  for (let i = 0; i < n; i++) {
    const key = keys[i]!;
    fn = functionSpec(b.function, cmd.function, key, fn);
    // The column's entry is already an {encoding, data} view: used as it is, no copy.
    const a = args[i];
    out.push({
      type: 'ComputeTask',
      key,
      call: { fn, args: a ? (a as Encoded) : EMPTY_ARGS, resultEncoding },
      dependencies: NO_DEPENDENCIES,
      priority,
      sequence: Number(sequences[i]),
      resources,
      whoHas: NO_RECORDS,
      nbytes: NO_RECORDS,
      inlineInputs: NO_RECORDS,
      stimulusId,
    });
  }
}

export function acquireReplicasEvent(list: readonly WhoHas[], stimulusId: string): WorkerEvent {
  return { type: 'AcquireReplicas', ...whoHasRecords(list), stimulusId };
}

/** A state message as the protobuf WorkerMessage. */
export function toWire(m: SchedulerMessage): WorkerMessage {
  switch (m.type) {
    case 'TaskFinished':
      return {
        kind: {
          $case: 'taskFinished',
          value: {
            key: m.key,
            value: m.value ? { encoding: m.value.encoding, data: m.value.data } : undefined,
            nbytes: m.nbytes,
            typeName: m.typeName,
            startMs: m.startMs,
            stopMs: m.stopMs,
            stimulusId: m.stimulusId,
          },
        },
      };
    case 'TaskErred':
      return { kind: { $case: 'taskErred', value: { key: m.key, error: m.error, startMs: m.startMs, stopMs: m.stopMs, stimulusId: m.stimulusId } } };
    case 'AddKeys':
      return { kind: { $case: 'addKeys', value: { keys: m.keys, stimulusId: m.stimulusId } } };
    case 'KeysReleased':
      return { kind: { $case: 'keysReleased', value: { keys: m.keys, stimulusId: m.stimulusId } } };
    case 'MissingData':
      return { kind: { $case: 'missingData', value: { key: m.key, worker: m.worker, stimulusId: m.stimulusId } } };
    case 'StealResponse':
      return { kind: { $case: 'stealResponse', value: { key: m.key, state: m.state, stimulusId: m.stimulusId } } };
    case 'Reschedule':
      return { kind: { $case: 'reschedule', value: { key: m.key, stimulusId: m.stimulusId } } };
    default: {
      const never: never = m;
      throw new Error(`unknown message ${JSON.stringify(never)}`);
    }
  }
}

/**
 * What the session queues for the scheduler: a state message still in its domain form (converted
 * when its batch leaves, by toWireBatch) or a WorkerMessage the shell built itself (heartbeat,
 * transfer_done). Converting late lets a run of TaskFinished become one column message without
 * first allocating a protobuf message per task.
 */
export type Outgoing = SchedulerMessage | WorkerMessage;

type TaskFinishedMessage = Extract<SchedulerMessage, { type: 'TaskFinished' }>;

/** Messages per batch to the scheduler, and the inline value bytes one message unit stands for. */
export const MAX_BATCH = 2000;
const VALUE_BYTES_PER_UNIT = 512;

/**
 * A message's weight for the session's Batcher: 1, or for a result that travels inline its bytes
 * in units of 512, so a batch carries at most about 1 MiB of values (2,000 results of 64 KiB
 * would be 125 MiB, past the scheduler's receive limit).
 */
export function outgoingWeight(m: Outgoing): number {
  if (!isDomain(m) || m.type !== 'TaskFinished' || m.value === undefined) return 1;
  return 1 + m.value.data.length / VALUE_BYTES_PER_UNIT;
}

function isDomain(m: Outgoing): m is SchedulerMessage {
  return (m as SchedulerMessage).type !== undefined;
}

/**
 * One outgoing batch as WorkerMessages, in the same order. When the scheduler reads the column
 * forms (its Welcome has `batches`), each run of consecutive TaskFinished messages travels as one
 * TasksFinished; a lone one, and everything else, goes as before (only consecutive messages are
 * merged, so the scheduler sees every message in the order the state produced it).
 */
export function toWireBatch(queue: readonly Outgoing[], columns: boolean): WorkerMessage[] {
  const out: WorkerMessage[] = [];
  const finished = (m: Outgoing) => isDomain(m) && m.type === 'TaskFinished';
  forEachRun(
    queue,
    (first, next) => columns && finished(first) && finished(next),
    (from, to) => {
      const m = queue[from]!;
      out.push(to - from > 1 ? tasksFinished(queue as readonly TaskFinishedMessage[], from, to) : isDomain(m) ? toWire(m) : m);
    },
  );
  return out;
}

/** queue[from, to) (all TaskFinished) as one TasksFinished; its stimulus is the first one's. */
function tasksFinished(queue: readonly TaskFinishedMessage[], from: number, to: number): WorkerMessage {
  const n = to - from;
  const keys = new Array<string>(n);
  const values = new Array<Encoded | undefined>(n);
  const nbytes = new Array<number>(n);
  const typeNames = new StringTable();
  const startMs = new Array<number>(n);
  const stopMs = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const m = queue[from + i]!;
    keys[i] = m.key;
    values[i] = m.value;
    nbytes[i] = m.nbytes;
    typeNames.add(m.typeName);
    startMs[i] = m.startMs;
    stopMs[i] = m.stopMs;
  }
  return {
    kind: {
      $case: 'tasksFinished',
      value: {
        keys,
        values: buildValueColumn(values),
        nbytes,
        typeNames: typeNames.list,
        typeNameIndex: typeNames.index,
        startMs,
        stopMs,
        stimulusId: queue[from]!.stimulusId,
      },
    },
  };
}

import type { Value } from '@skein/protocol';
import type { ErrorInfo, Security, Versions } from '@skein/common';

/** Where a future's key is in its life, as seen by this client. */
export type FutureStatus = 'pending' | 'no-worker' | 'finished' | 'error' | 'cancelled' | 'lost';

/** The client's connection state. */
export type ClientStatus = 'connecting' | 'running' | 'closing' | 'closed';

/** Per-task options of `submitWith`, `mapWith` and `delayed(fn, options)`. */
export interface TaskOptions {
  /**
   * An explicit key. For `mapWith`, a string is a key prefix (`<prefix>-<token>`) and an array
   * gives one key per element.
   */
  key?: string | readonly string[];
  /**
   * True (the default, like Dask): the key is a hash of the function and its arguments, so the same
   * call gives the same key and is computed once. False: a random key, computed each time
   * (for functions with side effects or randomness).
   */
  pure?: boolean;
  /** Higher runs first. Default 0. */
  priority?: number;
  /** How many times a failed task runs again before its error is reported. Default 0. */
  retries?: number;
  /** Abstract resources one run holds, e.g. `{ GPU: 1 }`. */
  resources?: Readonly<Record<string, number>>;
  /** Worker addresses or names the task may run on. */
  workers?: string | readonly string[];
  /** With `workers`: others may be used when none of the named ones can. */
  allowOtherWorkers?: boolean;
  /** How arguments travel: 'v8' (default, any structured-clone value) or 'json' (any language). */
  encoding?: 'v8' | 'json';
}

/** Options of `Client.connect`. */
export interface ClientOptions {
  /** How long to wait for the scheduler to answer. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /** The id this client announces; a random `client-<uuid>` by default. */
  clientId?: string;
  /** Prefix for the keys of `scatter`ed data; the data's type name by default. */
  name?: string;
  /**
   * When no holder of a finished key can hand over its value (its worker died), how long to wait
   * for the scheduler to report the key again (recomputed elsewhere) before failing. Default 60 000 ms.
   */
  refetchTimeoutMs?: number;
  /**
   * TLS credentials and/or the token to present. Default: the cluster's own (`Client.connect(cluster)`
   * with a LocalCluster started with `security`), else from the environment (SKEIN_TLS_CA_FILE,
   * SKEIN_TLS_CERT, SKEIN_TLS_KEY, SKEIN_AUTH_TOKEN, SKEIN_AUTH_TOKEN_FILE), else none.
   */
  security?: Security;
  /**
   * With a cluster whose scheduler runs in this process (`Client.connect(localCluster)`), hold the
   * session with it in-process, without a socket: messages pass as objects, with no encoding and
   * no HTTP/2 (lower latency, less CPU in the process both share). Default true; false uses gRPC
   * over the cluster's address as any other client does. Other calls (GetInfo, who_has, ...) and
   * the data path to workers use gRPC either way.
   */
  inProcess?: boolean;
}

/** ClientOptions with defaults applied. */
export interface CompiledClientOptions {
  connectTimeoutMs: number;
  clientId: string;
  refetchTimeoutMs: number;
  security: Security;
  inProcess: boolean;
}

/** A worker as reported by `schedulerInfo()`. */
export interface WorkerInfo {
  address: string;
  name: string;
  nthreads: number;
  memoryLimit: number;
  resources: Record<string, number>;
  processing: number;
  inMemory: number;
  managedBytes: number;
  memoryRss: number;
  lastSeenMs: number;
  status: string;
  registeredFunctions: string[];
  pid: number;
  nannyAddress: string;
  /** What the worker runs, as it reported at registration (undefined: a worker that reported none). */
  versions: Versions | undefined;
}

/** What `client.schedulerInfo()` returns. */
export interface SchedulerInfo {
  id: string;
  address: string;
  protocolVersion: string;
  /** The connected workers. */
  workers: WorkerInfo[];
  tasksByState: Record<string, number>;
  clients: number;
  /** The dashboard's address; empty when the scheduler runs none. */
  dashboardAddress: string;
  /** What the scheduler runs (undefined: a scheduler that reports none). */
  versions: Versions | undefined;
}

/** What `client.getVersions()` returns: what the client, the scheduler and each worker run. */
export interface ClusterVersions {
  client: Versions;
  scheduler: Versions;
  /** By worker address. */
  workers: Map<string, Versions>;
}

/** Options of `client.getVersions`. */
export interface GetVersionsOptions {
  /** Throw VersionMismatchError when anything differs. Default false. */
  check?: boolean;
  /** npm package names whose versions to report too (a process without one reports null). */
  packages?: readonly string[];
}

/** One recorded transition of a key (`client.story`). */
export interface Transition {
  key: string;
  start: string;
  finish: string;
  stimulusId: string;
  /** When, in ms since the epoch, on the wall clock of the process that recorded it (`where`). */
  timeMs: number;
  /** Scheduler records: the worker the task ran on or was held by ('' for none). Worker records: that worker. */
  worker: string;
  /** Where it was recorded: 'scheduler', or the address of the worker whose state machine it is. */
  where: string;
}

/** A worker whose transitions are missing from a story, and why. */
export interface StorySkip {
  worker: string;
  reason: string;
}

/**
 * What `client.story` returns: the transitions of the scheduler and the workers, merged by time,
 * oldest first; `skipped` lists the workers that did not answer (their transitions are missing).
 */
export type Story = Transition[] & { skipped: StorySkip[] };

/** Which function a task calls, in domain form. */
export type FunctionSpec = { kind: 'inline'; hash: string } | { kind: 'registered'; name: string };

/**
 * An encoded value. `Value` (bytes plus encoding) is the currency of @skein/common's
 * encodeValue/decodeValue, so the domain types share it with the wire.
 */
export type EncodedValue = Value;

/** A task ready to send, in domain form. */
export interface TaskDef {
  key: string;
  fn: FunctionSpec;
  args: EncodedValue;
  dependencies: string[];
  priority: number;
  retries: number;
  resources: Record<string, number>;
  workers: string[];
  allowOtherWorkers: boolean;
  /** Encoding asked for the result (the protocol's Encoding value). */
  resultEncoding: number;
  /** The key is pure: derived from the function and arguments (TaskSpec.pure). */
  pure: boolean;
}

/** Source of a JS function sent once per session. */
export interface FunctionSource {
  hash: string;
  source: string;
  name: string;
}


/** Messages the client sends to the scheduler (converted to protobuf in wire.ts). */
export type Outgoing =
  | {
      type: 'UpdateGraph';
      tasks: TaskDef[];
      wantedKeys: string[];
      functions: FunctionSource[];
      broadcastKeys: string[];
      stimulusId: string;
      /** The tasks' argument and key bytes so far (not sent): updates are split to stay small. */
      bytes: number;
    }
  | { type: 'ReleaseKeys'; keys: string[]; stimulusId: string }
  | { type: 'CancelKeys'; keys: string[]; stimulusId: string }
  | { type: 'WantKeys'; keys: string[]; stimulusId: string };

/** Messages the scheduler sends to the client (converted from protobuf in wire.ts). */
export type Incoming =
  | {
      type: 'Welcome';
      protocolVersion: string;
      schedulerId: string;
      schedulerAddress: string;
      /** reads TaskBatch */
      batches: boolean;
      /** The largest message the scheduler accepts (0: not said). */
      maxMessageBytes: number;
      /** The most tasks or wanted keys per graph update (0: not said). */
      maxKeysPerUpdate: number;
    }
  | {
      type: 'KeyInMemory';
      key: string;
      value: EncodedValue | undefined;
      workers: string[];
      nbytes: number;
      typeName: string;
    }
  | { type: 'KeyErred'; key: string; error: ErrorInfo }
  | { type: 'KeyCancelled'; key: string; reason: string }
  | { type: 'KeyLost'; key: string }
  | { type: 'KeyNoWorker'; key: string; reason: string; resolved: boolean };

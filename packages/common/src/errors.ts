import type { ServiceError } from '@grpc/grpc-js';
import type { RemoteError as RemoteErrorMessage } from '@skein/protocol';

/** Closed set of error codes, aligned with gRPC status codes where one fits. */
export type ErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'failed_precondition'
  | 'unavailable'
  | 'unauthenticated'
  | 'permission_denied'
  | 'cancelled'
  | 'deadline_exceeded'
  | 'internal'
  | 'unimplemented'
  | 'resource_exhausted'
  | 'task_failed'
  | 'killed_worker'
  | 'version_mismatch'
  | 'install_failed';

/** gRPC status codes (numeric, so this module loads without grpc-js). */
const GrpcStatus = {
  CANCELLED: 1,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
  PERMISSION_DENIED: 7,
} as const;

export const CODE_TO_GRPC: Record<ErrorCode, number> = {
  invalid_argument: GrpcStatus.INVALID_ARGUMENT,
  not_found: GrpcStatus.NOT_FOUND,
  already_exists: GrpcStatus.ALREADY_EXISTS,
  failed_precondition: GrpcStatus.FAILED_PRECONDITION,
  unavailable: GrpcStatus.UNAVAILABLE,
  unauthenticated: GrpcStatus.UNAUTHENTICATED,
  permission_denied: GrpcStatus.PERMISSION_DENIED,
  cancelled: GrpcStatus.CANCELLED,
  deadline_exceeded: GrpcStatus.DEADLINE_EXCEEDED,
  internal: GrpcStatus.INTERNAL,
  unimplemented: GrpcStatus.UNIMPLEMENTED,
  resource_exhausted: GrpcStatus.RESOURCE_EXHAUSTED,
  task_failed: GrpcStatus.ABORTED,
  killed_worker: GrpcStatus.ABORTED,
  version_mismatch: GrpcStatus.FAILED_PRECONDITION,
  install_failed: GrpcStatus.FAILED_PRECONDITION,
};

export interface SkeinErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown>;
}

/** Base of every error Skein raises. `message` says what happened and what to do. */
export class SkeinError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;
  constructor(code: ErrorCode, message: string, options: SkeinErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.details = options.details ?? {};
  }
}

/** Bad input from the user: an option, an address, an argument. */
export class InvalidArgumentError extends SkeinError {
  constructor(message: string, options?: SkeinErrorOptions) {
    super('invalid_argument', message, options);
  }
}

/** A peer could not be reached or the connection broke. */
export class CommClosedError extends SkeinError {
  readonly address: string;
  constructor(address: string, message: string, options?: SkeinErrorOptions) {
    super('unavailable', message, options);
    this.address = address;
  }
}

/** The two ends speak incompatible protocol versions. */
export class ProtocolVersionError extends SkeinError {
  readonly local: string;
  readonly remote: string;
  constructor(local: string, remote: string, who: string) {
    super(
      'failed_precondition',
      `Protocol version mismatch: this ${who} speaks skein protocol ${local} but the other end speaks ${remote}. ` +
        'Install matching Skein major versions on every machine.',
      { details: { local, remote } },
    );
    this.local = local;
    this.remote = remote;
  }
}

/** The caller did not prove who it is: no or a wrong token, no or an untrusted certificate. */
export class UnauthenticatedError extends SkeinError {
  constructor(message: string, options?: SkeinErrorOptions) {
    super('unauthenticated', message, options);
  }
}

/** The caller is known but its role may not do this (e.g. a client reporting a worker's death). */
export class PermissionDeniedError extends SkeinError {
  constructor(message: string, options?: SkeinErrorOptions) {
    super('permission_denied', message, options);
  }
}

/** A task raised an error in user code; message and stack are the remote ones. */
export class TaskError extends SkeinError {
  readonly key: string;
  readonly remoteType: string;
  readonly remoteStack: string;
  constructor(key: string, remoteType: string, message: string, remoteStack: string) {
    super('task_failed', message, { details: { key, remoteType } });
    this.key = key;
    this.remoteType = remoteType;
    this.remoteStack = remoteStack;
    this.stack = `${remoteType}: ${message}\n    [remote stack of task ${key}]\n${remoteStack}`;
  }
}

/** A task's workers died while running it more often than allowed. */
export class KilledWorkerError extends SkeinError {
  readonly key: string;
  readonly deaths: number;
  constructor(key: string, deaths: number, reason: string) {
    super(
      'killed_worker',
      `Task ${key} was running on ${deaths} workers that died (${reason}); it is not retried again. ` +
        'Check the task for crashes or memory use, or raise allowed-failures.',
      { details: { key, deaths, reason } },
    );
    this.key = key;
    this.deaths = deaths;
  }
}

/** The computation of a key was cancelled. */
export class CancelledError extends SkeinError {
  readonly key: string;
  constructor(key: string, reason = 'cancelled') {
    super('cancelled', `Task ${key} was cancelled: ${reason}`, { details: { key, reason } });
    this.key = key;
  }
}

/** A time limit passed. */
export class TimeoutError extends SkeinError {
  constructor(message: string, options?: SkeinErrorOptions) {
    super('deadline_exceeded', message, options);
  }
}

/** One process's outcome of a plugin's setup or teardown (client.registerPlugin). */
export interface PluginOutcome {
  name: string;
  kind: 'worker' | 'scheduler' | 'nanny';
  /** The process's address. */
  target: string;
  /** The worker's name ('' where none). */
  targetName: string;
  ok: boolean;
  /**
   * Set when ok is false. `code` and `details`: a Skein error's (e.g. NpmInstallError: code
   * 'install_failed', details { packages, directory, output }); `pluginErrorOf` rebuilds it.
   */
  error?: { type: string; message: string; stack: string; code?: string; details?: Record<string, unknown> };
  /** Where it failed, when it did and this process knows: 'load' (import or instantiation) or 'setup' (the hook threw). */
  stage?: 'load' | 'setup';
}

/**
 * A plugin's setup failed on some processes (client.registerPlugin), or its teardown
 * (client.unregisterPlugin; `phase` 'teardown'). The message names each one and its error;
 * `results` holds every process's outcome. After a failed setup the plugin stays registered, as
 * in Dask; after a failed teardown it is unregistered all the same.
 */
export class PluginSetupError extends SkeinError {
  readonly plugin: string;
  readonly results: readonly PluginOutcome[];
  readonly phase: 'setup' | 'teardown';
  constructor(plugin: string, results: readonly PluginOutcome[], phase: 'setup' | 'teardown' = 'setup') {
    const failed = results.filter((r) => !r.ok);
    super(
      'failed_precondition',
      `Plugin ${JSON.stringify(plugin)} failed its ${phase} on ${failed.length} of ${results.length} ${results[0]?.kind ?? 'worker'}(s): ` +
        failed
          .map((r) => `${r.kind} ${r.target}${r.targetName && r.targetName !== r.target ? ` (${r.targetName})` : ''}: ${r.error?.type ?? 'Error'}: ${r.error?.message ?? ''}`)
          .join('; ') +
        (phase === 'setup'
          ? '. The plugin stays registered (processes that join later get it too); fix it and register it again under the same name, or unregisterPlugin it.'
          : '. The plugin is unregistered all the same (nothing will set it up again).'),
      { details: { plugin, phase, failed: failed.map((r) => r.target) } },
    );
    this.plugin = plugin;
    this.results = results;
    this.phase = phase;
  }
}

/**
 * A bug in Skein: an impossible state transition, or a throw inside a state machine's `handle`.
 * `details` carry what is known: the task `key`, the `stimulusId` of the event that failed, the
 * task's `story` (its transitions, oldest first).
 */
export class InternalError extends SkeinError {
  constructor(message: string, options?: SkeinErrorOptions) {
    super('internal', message, options);
  }
  /** The stimulus id of the event that failed, if known ('' otherwise). */
  get stimulusId(): string {
    const s = this.details['stimulusId'];
    return typeof s === 'string' ? s : '';
  }
  /** The key of the task this error failed, if any ('' otherwise). */
  get taskKey(): string {
    const k = this.details['key'];
    return typeof k === 'string' ? k : '';
  }
}

/** A transition the table does not have, in the scheduler or a worker: a bug; carries the task's story. */
export class InvalidTransitionError extends InternalError {
  readonly key: string;
  readonly start: string;
  readonly finish: string;
  readonly story: readonly { start: string; finish: string; stimulusId: string }[];
  constructor(who: 'scheduler' | 'worker', key: string, start: string, finish: string, story: readonly { start: string; finish: string; stimulusId: string }[]) {
    super(
      `Impossible transition ${start}->${finish} of task ${key} in the ${who} state. This is a bug in Skein; please report it ` +
        `with this story:\n${story.slice(-20).map((r) => `  ${r.start}->${r.finish} (${r.stimulusId})`).join('\n')}`,
      { details: { key, start, finish, story } },
    );
    this.key = key;
    this.start = start;
    this.finish = finish;
    this.story = story;
  }
}

/** One thing that differs: `what` ('node', a Skein package, or a named package) and who has which version. */
export interface VersionDifference {
  what: string;
  /** version (null: not found) -> the processes that have it ('client', 'scheduler', 'worker <address>'). */
  versions: Map<string | null, string[]>;
}

function listWho(who: readonly string[]): string {
  const shown = who.slice(0, 4).join(', ');
  return who.length > 4 ? `${shown} and ${who.length - 4} more` : shown;
}

/** A line per difference: `@skein/common: 0.1.0 on client, scheduler; 9.9.9 on worker tcp://…`. */
export function describeDifferences(diffs: readonly VersionDifference[]): string {
  return diffs
    .map((d) => {
      // The most common version first: the others are the ones that differ.
      const sorted = [...d.versions].sort((a, b) => b[1].length - a[1].length);
      return `${d.what}: ${sorted.map(([version, who]) => `${version ?? '(not installed)'} on ${listWho(who)}`).join('; ')}`;
    })
    .join('\n');
}

/**
 * The client, the scheduler and the workers run different versions (`client.getVersions({ check:
 * true })`): `differences` names each thing that differs (Node, a Skein package, a named package)
 * and who runs which version.
 */
export class VersionMismatchError extends SkeinError {
  readonly differences: readonly VersionDifference[];
  constructor(differences: readonly VersionDifference[]) {
    super(
      'version_mismatch',
      `The cluster runs different versions:\n${describeDifferences(differences)}\n` +
        'Install the same versions everywhere (the same lockfile, a shared file system or one container image; see "Managing environments" in the README).',
      { details: { differences: differences.map((d) => ({ what: d.what, versions: [...d.versions] })) } },
    );
    this.differences = differences;
  }
}

/**
 * `npm install` failed on a worker (NpmInstall): `output` is npm's own error output, `packages` what
 * was asked for, `directory` where it was installed.
 */
export class NpmInstallError extends SkeinError {
  readonly output: string;
  readonly packages: readonly string[];
  readonly directory: string;
  constructor(packages: readonly string[], directory: string, output: string, how: string) {
    super(
      'install_failed',
      `npm install ${packages.join(' ')} into ${directory} failed (${how}). npm said:\n${output.trim() || '(nothing)'}`,
      { details: { packages, directory, output } },
    );
    this.output = output;
    this.packages = packages;
    this.directory = directory;
  }
}

// ------------------------------------------------------------------------------------------
// Errors on the wire: the one definition of their shape, and the one converter each way.

/** The type names of Skein's own errors as they travel in `RemoteError.type`. */
export type SkeinErrorType =
  | 'SkeinError'
  | 'InvalidArgumentError'
  | 'CommClosedError'
  | 'ProtocolVersionError'
  | 'TaskError'
  | 'KilledWorkerError'
  | 'CancelledError'
  | 'TimeoutError'
  | 'InternalError'
  | 'InvalidTransitionError'
  | 'UnauthenticatedError'
  | 'PermissionDeniedError'
  | 'NoWorkerError'
  | 'NoValidWorkerError'
  | 'VersionMismatchError'
  | 'NpmInstallError';

/** `RemoteError.type`: a Skein error type, or the class name of the error a user's function threw. */
export type ErrorType = SkeinErrorType | (string & Record<never, never>);

/**
 * An error as it crosses the wire between worker, scheduler and client: field for field the
 * protocol's `RemoteError`, so it converts by copying. The one definition of that shape; build
 * one with `toRemoteError` (a thrown value) or `taskError` (an error a state machine decides).
 */
export interface ErrorInfo {
  type: ErrorType;
  message: string;
  /** The remote stack ('' when the error was decided by a state machine, not thrown). */
  stack: string;
  /** The code of a Skein error; '' for an error thrown by user code. */
  code: ErrorCode | '';
  key: string;
  /** JSON of the error's details (a SkeinError's `details`), or ''. */
  detailsJson: string;
}

/** The error type a state machine's error of each code travels under, unless it names another. */
const TYPE_OF_CODE: Partial<Record<ErrorCode, SkeinErrorType>> = {
  invalid_argument: 'InvalidArgumentError',
  unauthenticated: 'UnauthenticatedError',
  permission_denied: 'PermissionDeniedError',
  killed_worker: 'KilledWorkerError',
  cancelled: 'CancelledError',
  deadline_exceeded: 'TimeoutError',
  internal: 'InternalError',
};

/**
 * An error of task `key` decided by a state machine (no exception, no stack): what the state
 * machines use instead of assembling a wire record by hand.
 *
 * @example
 * ts.exception = taskError(ts.key, 'killed_worker', `Task ${ts.key} was running on ...`, { key: ts.key, deaths, reason });
 */
export function taskError(
  key: string,
  code: ErrorCode,
  message: string,
  details?: Record<string, unknown>,
  type: SkeinErrorType = TYPE_OF_CODE[code] ?? 'SkeinError',
): ErrorInfo {
  return { type, message, stack: '', code, key, detailsJson: details ? JSON.stringify(details) : '' };
}

const ERROR_CODES: ReadonlySet<string> = new Set<ErrorCode>([
  'invalid_argument', 'not_found', 'already_exists', 'failed_precondition', 'unavailable', 'unauthenticated', 'permission_denied', 'cancelled',
  'deadline_exceeded', 'internal', 'unimplemented', 'resource_exhausted', 'task_failed', 'killed_worker',
]);

/**
 * A `RemoteError` message received from a peer, as an ErrorInfo: a missing message becomes an
 * internal error saying so (`missing`), an empty key is the `key` the message was about, and a
 * code Skein does not know is dropped (the error is then a user's error, as the client reads it).
 */
export function errorInfoFromWire(e: RemoteErrorMessage | undefined, key: string, missing = `task ${key} failed without an error message`): ErrorInfo {
  if (!e) return taskError(key, 'internal', missing);
  return {
    type: e.type,
    message: e.message,
    stack: e.stack,
    code: ERROR_CODES.has(e.code) ? (e.code as ErrorCode) : '',
    key: e.key || key,
    detailsJson: e.detailsJson,
  };
}

/** Turns anything thrown into a SkeinError (an existing one passes through). */
export function toSkeinError(err: unknown, context?: string): SkeinError {
  if (err instanceof SkeinError) return err;
  const grpc = err as Partial<ServiceError> | undefined;
  if (grpc && typeof grpc.code === 'number' && typeof grpc.details === 'string') {
    return fromGrpcStatus(grpc as ServiceError, context);
  }
  const node = err as NodeJS.ErrnoException | undefined;
  if (node && typeof node.code === 'string') {
    switch (node.code) {
      case 'ECONNREFUSED':
      case 'ECONNRESET':
      case 'EHOSTUNREACH':
      case 'ENETUNREACH':
      case 'ETIMEDOUT':
      case 'EPIPE':
        return new SkeinError('unavailable', `${context ? context + ': ' : ''}${node.message}`, { cause: err });
      case 'EADDRINUSE':
        return new SkeinError('already_exists', `${context ? context + ': ' : ''}${node.message}`, { cause: err });
      case 'ENOENT':
        return new SkeinError('not_found', `${context ? context + ': ' : ''}${node.message}`, { cause: err });
    }
  }
  const message = err instanceof Error ? err.message : String(err);
  return new SkeinError('internal', context ? `${context}: ${message}` : message, { cause: err });
}

const GRPC_TO_CODE = new Map<number, ErrorCode>();
for (const [code, grpc] of Object.entries(CODE_TO_GRPC) as [ErrorCode, number][]) {
  if (!GRPC_TO_CODE.has(grpc)) GRPC_TO_CODE.set(grpc, code);
}

/** A gRPC error received by a client, as a SkeinError. */
export function fromGrpcStatus(err: ServiceError, context?: string): SkeinError {
  const meta = err.metadata?.get('skein-error-code')?.[0];
  const code: ErrorCode =
    typeof meta === 'string' && meta in CODE_TO_GRPC ? (meta as ErrorCode) : (GRPC_TO_CODE.get(err.code) ?? 'internal');
  const prefix = context ? `${context}: ` : '';
  if (err.code === GrpcStatus.UNAVAILABLE) {
    return new CommClosedError(context ?? '', `${prefix}${err.details || 'connection unavailable'}`, { cause: err });
  }
  if (code === 'unauthenticated') return new UnauthenticatedError(`${prefix}${err.details}`, { cause: err });
  if (code === 'permission_denied') return new PermissionDeniedError(`${prefix}${err.details}`, { cause: err });
  return new SkeinError(code, `${prefix}${err.details}`, { cause: err });
}

const BUILTIN_ERROR_PROTOTYPES = new Set<object>(
  [Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError, AggregateError].map((c) => c.prototype),
);

/**
 * The type name of an error as Node's inspect shows it: its `name`, except that a subclass which
 * only inherits a built-in's name (`class ParseFailure extends Error {}`) is named by its class.
 */
export function errorTypeName(err: Error): string {
  let name: unknown;
  try {
    name = err.name;
  } catch {
    name = undefined;
  }
  const ctor = (err as { constructor?: { name?: unknown } }).constructor?.name;
  if (typeof ctor === 'string' && ctor !== '' && ctor !== name && !Object.prototype.hasOwnProperty.call(err, 'name')) {
    // Where does `name` come from? A built-in prototype means the class did not set its own.
    let p: object | null = Object.getPrototypeOf(err);
    while (p !== null && !Object.prototype.hasOwnProperty.call(p, 'name')) p = Object.getPrototypeOf(p);
    if (p === null || BUILTIN_ERROR_PROTOTYPES.has(p)) return ctor;
  }
  return typeof name === 'string' && name !== '' ? name : typeof ctor === 'string' && ctor !== '' ? ctor : 'Error';
}

/** A thrown value as the error that crosses the wire (the protocol's RemoteError, field for field). */
export function toRemoteError(err: unknown, key = ''): ErrorInfo {
  if (err instanceof Error) {
    const skein = isSkeinError(err);
    return {
      type: skein ? err.name : errorTypeName(err),
      message: err.message,
      stack: err.stack ?? '',
      code: skein ? err.code : '',
      key,
      detailsJson: skein ? JSON.stringify(err.details) : '',
    };
  }
  let message: string;
  try {
    message = typeof err === 'string' ? err : JSON.stringify(err);
  } catch {
    message = String(err);
  }
  return { type: 'Error', message: `non-Error value thrown: ${message}`, stack: '', code: '', key, detailsJson: '' };
}

/**
 * A SkeinError, also one of another copy of this module (the worker bundle's own, and the one a
 * built-in plugin imports from the package's dist/): a Skein error code and a details object.
 */
function isSkeinError(err: Error): err is SkeinError {
  if (err instanceof SkeinError) return true;
  const { code, details } = err as Partial<SkeinError>;
  return typeof code === 'string' && Object.hasOwn(CODE_TO_GRPC, code) && details !== null && typeof details === 'object';
}

/**
 * An error received from the scheduler, as the error a future rejects with: KilledWorkerError,
 * CancelledError, InternalError (code `internal` with type InternalError: a bug in Skein, with the
 * stimulus id and story in its details), else TaskError (the task's function threw, or Skein refused it: `remoteType` and `details` say).
 */
export function fromRemoteError(e: ErrorInfo): SkeinError {
  switch (e.code) {
    case 'killed_worker': {
      const d = parseDetails(e.detailsJson);
      return new KilledWorkerError(e.key, Number(d['deaths'] ?? 0), String(d['reason'] ?? 'unknown'));
    }
    case 'cancelled':
      return new CancelledError(e.key, e.message);
    case 'internal': {
      // Only a bug in Skein is an InternalError; other internal failures of a task (its thread
      // died) stay TaskErrors with their remote type.
      if (e.type !== 'InternalError' && e.type !== 'InvalidTransitionError') return new TaskError(e.key, e.type, e.message, e.stack);
      const err = new InternalError(e.message, { details: { ...parseDetails(e.detailsJson), key: e.key, remoteType: e.type } });
      if (e.stack) err.stack = `${e.type}: ${e.message}\n    [remote stack of task ${e.key}]\n${e.stack}`;
      return err;
    }
    // The task's function threw (no code), or Skein refused or failed it for a reason its type
    // and message say: the future rejects with a TaskError carrying them.
    case '':
    case 'task_failed':
    case 'invalid_argument':
    case 'not_found':
    case 'already_exists':
    case 'failed_precondition':
    case 'unavailable':
    case 'unauthenticated':
    case 'permission_denied':
    case 'deadline_exceeded':
    case 'unimplemented':
    case 'resource_exhausted':
      return new TaskError(e.key, e.type, e.message, e.stack);
    case 'version_mismatch': {
      const d = parseDetails(e.detailsJson);
      // On the wire each difference's versions is a list of [version, who] entries (its details).
      const raw = Array.isArray(d['differences']) ? (d['differences'] as Array<{ what?: unknown; versions?: unknown }>) : [];
      const diffs: VersionDifference[] = raw.map((x) => ({ what: String(x?.what ?? ''), versions: new Map(Array.isArray(x?.versions) ? (x.versions as Array<[string | null, string[]]>) : []) }));
      return remote(new VersionMismatchError(diffs), e);
    }
    case 'install_failed': {
      const d = parseDetails(e.detailsJson);
      const packages = Array.isArray(d['packages']) ? d['packages'].map(String) : [];
      return remote(new NpmInstallError(packages, String(d['directory'] ?? ''), String(d['output'] ?? ''), 'on a remote process'), e);
    }
  }
}

/** `err` with the message and stack it had where it was thrown. */
function remote<E extends Error>(err: E, e: ErrorInfo): E {
  err.message = e.message;
  if (e.stack) err.stack = e.stack;
  return err;
}

/** The error of a failed plugin result, rebuilt (NpmInstallError, VersionMismatchError, ...; else a TaskError-like SkeinError). */
export function pluginErrorOf(o: PluginOutcome): SkeinError | undefined {
  if (!o.error) return undefined;
  const e = o.error;
  return fromRemoteError({ type: e.type, message: e.message, stack: e.stack, code: (e.code ?? '') as ErrorInfo['code'], key: '', detailsJson: e.details ? JSON.stringify(e.details) : '' });
}

function parseDetails(json: string): Record<string, unknown> {
  if (!json) return {};
  try {
    const v: unknown = JSON.parse(json);
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

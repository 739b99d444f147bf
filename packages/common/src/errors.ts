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
  | 'cancelled'
  | 'deadline_exceeded'
  | 'internal'
  | 'unimplemented'
  | 'resource_exhausted'
  | 'task_failed'
  | 'killed_worker';

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
  cancelled: GrpcStatus.CANCELLED,
  deadline_exceeded: GrpcStatus.DEADLINE_EXCEEDED,
  internal: GrpcStatus.INTERNAL,
  unimplemented: GrpcStatus.UNIMPLEMENTED,
  resource_exhausted: GrpcStatus.RESOURCE_EXHAUSTED,
  task_failed: GrpcStatus.ABORTED,
  killed_worker: GrpcStatus.ABORTED,
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

/** A thrown value as the protocol's RemoteError message. */
export function toRemoteError(err: unknown, key = ''): RemoteErrorMessage {
  if (err instanceof Error) {
    return {
      type: err instanceof SkeinError ? err.name : errorTypeName(err),
      message: err.message,
      stack: err.stack ?? '',
      code: err instanceof SkeinError ? err.code : '',
      key,
      detailsJson: err instanceof SkeinError ? JSON.stringify(err.details) : '',
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

/** A RemoteError received from the scheduler, as the error a future rejects with. */
export function fromRemoteError(e: RemoteErrorMessage): SkeinError {
  switch (e.code) {
    case 'killed_worker': {
      const d = parseDetails(e.detailsJson);
      return new KilledWorkerError(e.key, Number(d['deaths'] ?? 0), String(d['reason'] ?? 'unknown'));
    }
    case 'cancelled':
      return new CancelledError(e.key, e.message);
    default:
      return new TaskError(e.key, e.type, e.message, e.stack);
  }
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

import {
  Metadata,
  Server,
  ServerCredentials,
  ServerInterceptingCall,
  credentials,
  logVerbosity,
  setLogVerbosity,
  status as GrpcStatus,
  type ChannelOptions,
  type ServerInterceptor,
  type ServiceError,
} from '@grpc/grpc-js';
import { CODE_TO_GRPC, InvalidArgumentError, SkeinError, toSkeinError } from './errors.js';

/**
 * Channel options every outgoing Skein link uses: a large window, no limit on what the peer's
 * replies may hold (the servers limit what they receive: see newServer).
 */
export const CHANNEL_OPTIONS: ChannelOptions = {
  'grpc.max_receive_message_length': -1,
  'grpc.max_send_message_length': -1,
  'grpc-node.flow_control_window': 16 * 1024 * 1024,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.http2.max_pings_without_data': 0,
  'grpc.enable_retries': 0,
};

export const SERVER_OPTIONS: ChannelOptions = {
  ...CHANNEL_OPTIONS,
  'grpc.http2.min_ping_interval_without_data_ms': 5_000,
  'grpc.http2.min_time_between_pings_ms': 5_000,
};

export function insecureChannel() {
  return credentials.createInsecure();
}

/** Default receive limits of Skein's servers (bytes per gRPC message); each is an option and a CLI flag. */
export const DEFAULT_MAX_MESSAGE_BYTES = {
  /** Graph updates with embedded arguments, worker results batched inline, registrations. */
  scheduler: 64 * 1024 * 1024,
  /** Requests to a worker: GetData key lists, Run with its arguments (values leave in replies). */
  worker: 64 * 1024 * 1024,
  /** Requests to a nanny: a reason and a timeout. */
  nanny: 1024 * 1024,
} as const;

/**
 * What a service's request deserializer returns instead of a message it refuses (see
 * strictDeserializers in @skein/common's wire-check): the server answers the call with `code`
 * and `details` and the handler never sees it.
 */
export class RefusedMessage {
  constructor(
    readonly details: string,
    readonly code: GrpcStatus = GrpcStatus.INVALID_ARGUMENT,
  ) {}
}

/** Answers a RefusedMessage with its status instead of passing it to the handler. */
const refuseMessages: ServerInterceptor = (_method, call) =>
  new ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMessage: (message, pass) => {
          if (message instanceof RefusedMessage) call.sendStatus({ code: message.code, details: message.details });
          else pass(message);
        },
      }),
  });

/**
 * A gRPC server with Skein's options. `maxReceiveBytes` limits one incoming message: a bigger one
 * ends its call with RESOURCE_EXHAUSTED before it is read (the peer's other calls are not affected).
 */
export function newServer(maxReceiveBytes: number = -1): Server {
  if (maxReceiveBytes !== -1 && !(Number.isInteger(maxReceiveBytes) && maxReceiveBytes > 0)) {
    throw new InvalidArgumentError(`A message size limit must be a whole number of bytes above 0, got ${maxReceiveBytes}.`);
  }
  return new Server({ ...SERVER_OPTIONS, 'grpc.max_receive_message_length': maxReceiveBytes, interceptors: [refuseMessages] });
}

/**
 * Refuses a number outside [min, max] with an InvalidArgumentError naming the field and the range
 * (for RPC requests, before anything is done with them).
 */
export function checkRange(value: number, field: string, min: number, max: number, hint = ''): number {
  if (Number.isFinite(value) && value >= min && value <= max) return value;
  throw new InvalidArgumentError(`${field} is ${value}: it must be from ${min} to ${max}${hint ? ` (${hint})` : ''}.`, { details: { field, value: String(value), min, max } });
}

/**
 * Binds a gRPC server (plaintext unless `creds` say otherwise, e.g. `security.serverCredentials(role)`)
 * and returns the port. A port in use gets an error that says so and what to do.
 */
export function bindServer(server: Server, host: string, port: number, what: string, creds: ServerCredentials = ServerCredentials.createInsecure()): Promise<number> {
  const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  return new Promise((resolve, reject) => {
    server.bindAsync(target, creds, (err, bound) => {
      if (err) {
        const inUse = /EADDRINUSE|address already in use|No address added/i.test(err.message);
        reject(
          new SkeinError(
            inUse ? 'already_exists' : 'unavailable',
            inUse
              ? `Cannot start the ${what} on ${host}:${port}: the port is already in use. Stop the process using it or choose another port (--port 0 picks a free one).`
              : `Cannot start the ${what} on ${host}:${port}: ${err.message}`,
            { cause: err },
          ),
        );
        return;
      }
      resolve(bound);
    });
  });
}

/** Shuts a server down, forcing it after `graceMs`. */
export function shutdownServer(server: Server, graceMs = 2_000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      server.forceShutdown();
      resolve();
    }, graceMs);
    timer.unref();
    server.tryShutdown(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/**
 * Collects outgoing messages and sends them as one batch on the next turn of the event loop.
 * Idle, a message leaves at once; under load, batches grow by themselves.
 */
export class Batcher<T> {
  private queue: T[] = [];
  private scheduled = false;
  private closed = false;
  /**
   * @param maxBatch the most one batch carries, in units of `weight` (default: messages); the rest
   * leave on the next turn, so a huge burst streams to the receiver in slices it can start working
   * on at once, and no single gRPC message grows without bound. A batch holds at least one item.
   * @param weight the size of one item (e.g. the tasks a graph update carries); default 1.
   */
  constructor(
    private readonly send: (batch: T[]) => void,
    private readonly maxBatch = 2000,
    private readonly weight?: (item: T) => number,
  ) {}

  push(item: T): void {
    if (this.closed) return;
    this.queue.push(item);
    if (!this.scheduled) {
      this.scheduled = true;
      // Idle (nothing sent for a while): leave as soon as the current synchronous work is done,
      // which still gathers a loop of pushes into one batch. Busy: wait for the end of this turn
      // of the event loop, so messages from many incoming events share one batch.
      if (performance.now() - this.lastFlush > Batcher.idleMs) queueMicrotask(this.flush);
      else setImmediate(this.flush);
    }
  }

  /** A stream that sent nothing for this long counts as idle (ms). */
  static idleMs = Number(process.env['SKEIN_BATCH_IDLE_MS'] ?? 1);
  private lastFlush = -Infinity;

  readonly flush = (): void => {
    this.scheduled = false;
    this.lastFlush = performance.now();
    if (this.queue.length === 0) return;
    const n = this.closed ? this.queue.length : this.batchLength();
    let batch = this.queue;
    if (n < batch.length) {
      this.queue = batch.slice(n);
      batch = batch.slice(0, n);
      this.scheduled = true;
      setImmediate(this.flush);
    } else {
      this.queue = [];
    }
    this.send(batch);
  };

  /** How many queued items the next batch takes. */
  private batchLength(): number {
    const q = this.queue;
    if (!this.weight) return Math.min(q.length, this.maxBatch);
    let total = 0;
    for (let i = 0; i < q.length; i++) {
      total += this.weight(q[i]!);
      if (total >= this.maxBatch) return i + 1;
    }
    return q.length;
  }

  get pending(): number {
    return this.queue.length;
  }

  close(): void {
    this.closed = true;
    while (this.queue.length) this.flush();
  }
}

/**
 * Silences grpc-js's own log lines (for CLIs, which report errors themselves in one line).
 * GRPC_VERBOSITY=DEBUG/INFO/ERROR still wins when set.
 */
export function quietGrpcLogs(): void {
  if (!process.env['GRPC_VERBOSITY']) setLogVerbosity(logVerbosity.NONE);
}

/** A SkeinError as a gRPC service error (for server handlers). The code travels in metadata. */
export function toGrpcStatus(err: unknown): Partial<ServiceError> {
  const e = toSkeinError(err);
  const metadata = new Metadata();
  metadata.set('skein-error-code', e.code);
  metadata.set('skein-error-name', e.name);
  return { code: CODE_TO_GRPC[e.code], details: e.message, metadata };
}


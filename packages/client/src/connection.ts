/**
 * The client's connection to the scheduler: the channel and SchedulerService stub, the
 * ClientSession stream (Hello, the Welcome with the scheduler's protocol version and what it
 * reads, updates in, message batches out), the refusal and loss of the session, its close, and
 * unary calls with deadlines. The futures API on top of it is the Client (client.ts).
 */
import { Metadata, status as GrpcStatus, type ServiceError, type StatusObject } from '@grpc/grpc-js';
import {
  CommClosedError,
  InvalidArgumentError,
  PROTOCOL_VERSION,
  ProtocolVersionError,
  SkeinError,
  checkProtocolVersion,
  diagnoseTls,
  fromGrpcStatus,
  parseAddress,
  Security,
  protocolMinorAtLeast,
} from '@skein/common';
import { ClientSessionRequest, SchedulerServiceClient, type ClientSessionResponse } from '@skein/protocol';
import type { Incoming, Outgoing, SchedulerInfo } from './types.js';
import { fromClientUpdate, fromGetInfo, helloRequest, toSessionRequest } from './wire.js';

/** What the connection tells the client that owns it. */
export interface ConnectionEvents {
  /** An update from the scheduler, after its Welcome. */
  update(ev: Incoming): void;
  /** The session broke while the client was not closing; `error` names why (pending futures fail with it). */
  lost(error: CommClosedError): void;
  /** True once the client is closing: a session that ends then is not lost. */
  closing(): boolean;
}

/** A deadline `ms` from now. */
export function deadlineIn(ms: number): Date {
  return new Date(Date.now() + ms);
}

/** One unary gRPC call with a deadline; a gRPC error becomes a SkeinError whose message starts with `context`. */
export function unary<Req, Res>(
  method: (req: Req, meta: Metadata, opts: { deadline: Date }, cb: (err: ServiceError | null, res?: Res) => void) => unknown,
  req: Req,
  context: string,
  timeoutMs: number,
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    method(req, new Metadata(), { deadline: deadlineIn(timeoutMs) }, (err, res) => {
      if (err) reject(fromGrpcStatus(err, context));
      else resolve(res as Res);
    });
  });
}

/** The session stream as the connection uses it: a gRPC ClientSession call, or an in-process one. */
interface SessionCall {
  write(message: ClientSessionRequest): unknown;
  end(): unknown;
  cancel(): void;
  // 'data' (ClientSessionResponse), 'error' (ServiceError), 'status' (StatusObject)
  on(event: string, listener: (...args: any[]) => void): unknown;
}

/** Opens an in-process session with the scheduler (LOCAL_CLIENT_SESSION of a LocalCluster). */
export type LocalSessionOpener = () => SessionCall;

export class SchedulerConnection {
  /** The SchedulerService stub (for unary calls). */
  readonly stub: SchedulerServiceClient;
  /** The scheduler's id, from its Welcome. */
  schedulerId = '';
  /** The scheduler answers every key of a CancelKeys (protocol 1.2); from its Welcome. */
  cancelAcked = false;
  /** The largest message the scheduler accepts (0: it did not say); from its Welcome. */
  maxMessageBytes = 0;
  /** The most tasks or wanted keys per graph update (MAX_UPDATE_TASKS when the scheduler did not say); from its Welcome. */
  maxKeysPerUpdate = 0;
  readonly #address: string;
  readonly #clientId: string;
  readonly #events: ConnectionEvents;
  #session: SessionCall | undefined;
  readonly #local: LocalSessionOpener | undefined;
  #sessionEnded: Promise<void> | undefined;
  #lost = false;
  /** The scheduler reads column batches (TaskBatch); from its Welcome. */
  #batches = false;
  readonly #security: Security;

  /**
   * Creates the channel (nothing is sent before `open`). With `local`, the session is in-process
   * (the channel then serves only unary calls such as GetInfo).
   */
  constructor(address: string, clientId: string, security: Security, events: ConnectionEvents, local?: LocalSessionOpener) {
    this.#address = address;
    this.#local = local;
    this.#clientId = clientId;
    this.#events = events;
    this.#security = security;
    const dial = security.dial(address, 'client', 'scheduler');
    this.stub = new SchedulerServiceClient(dial.target, dial.credentials, dial.options);
  }

  /** The session is held in-process (a LocalCluster's scheduler in this process), not over gRPC. */
  get inProcess(): boolean {
    return this.#local !== undefined;
  }

  /** The session broke without close(). */
  get lost(): boolean {
    return this.#lost;
  }

  /**
   * Waits for the channel, opens the session and says Hello; resolves at the scheduler's Welcome.
   * Rejects with CommClosedError when nothing answers by `deadline` (`timeoutMs` from the start),
   * ProtocolVersionError when the scheduler speaks another protocol, or the scheduler's refusal.
   */
  async open(deadline: Date, timeoutMs: number): Promise<void> {
    const addr = this.#address;
    const unreachable = (detail: string, cause?: unknown) =>
      new CommClosedError(
        addr,
        `Cannot reach the scheduler at ${addr} (${detail}). Check that the scheduler is running and that the ` +
          'address and port are right; start one with `skein scheduler`.',
        cause === undefined ? undefined : { cause },
      );
    const ready = this.#local ? undefined : await new Promise<Error | undefined>((resolve) => this.stub.waitForReady(deadline, (err) => resolve(err)));
    if (ready) {
      // grpc-js cannot say that TLS is what failed: one handshake with the scheduler can.
      const a = parseAddress(addr);
      const tls = await diagnoseTls(a.host, a.port, this.#security, 'scheduler');
      if (tls) throw new CommClosedError(addr, `Cannot reach the scheduler at ${addr}: ${tls}.`, { cause: ready });
      throw unreachable(`no connection within ${timeoutMs / 1000} s: ${ready.message}`, ready);
    }

    const call = this.#local ? this.#local() : this.stub.clientSession(new Metadata());
    this.#session = call;
    let welcomed = false;
    let streamError: ServiceError | undefined;
    let onWelcome: (() => void) | undefined;
    let onRefused: ((err: unknown) => void) | undefined;
    const welcome = new Promise<void>((resolve, reject) => {
      onWelcome = resolve;
      onRefused = reject;
    });
    const events = this.#events;
    const onUpdate = (ev: Incoming): void => {
      if (ev.type === 'Welcome') {
        if (welcomed) return;
        try {
          if (ev.protocolVersion) checkProtocolVersion(ev.protocolVersion, 'client');
        } catch (err) {
          onRefused?.(err);
          call.cancel();
          return;
        }
        welcomed = true;
        this.schedulerId = ev.schedulerId;
        this.#batches = ev.batches;
        this.maxMessageBytes = ev.maxMessageBytes;
        this.maxKeysPerUpdate = ev.maxKeysPerUpdate;
        // A 1.1 scheduler answers only the cancelled keys it knows: no acknowledgement to wait for.
        this.cancelAcked = protocolMinorAtLeast(ev.protocolVersion, 2);
        onWelcome?.();
        return;
      }
      if (welcomed) events.update(ev);
    };
    call.on('data', (resp: ClientSessionResponse) => {
      try {
        for (const u of resp.updates) fromClientUpdate(u, onUpdate);
      } catch (err) {
        // A malformed column batch: the futures it was for would wait forever, so end the session
        // (every pending future fails with CommClosedError naming the cause). Other errors are bugs.
        if (!(err instanceof InvalidArgumentError)) throw err;
        this.#sessionLost({ code: GrpcStatus.INTERNAL, details: `malformed update from the scheduler: ${err.message}` });
      }
    });
    call.on('error', (err: ServiceError) => {
      streamError = err;
    });
    this.#sessionEnded = new Promise<void>((resolve) => {
      call.on('status', (st: StatusObject) => {
        resolve();
        if (!welcomed) {
          const refusal = streamError
            ? this.#refusal(streamError)
            : Promise.resolve(unreachable('the scheduler closed the session before welcoming the client'));
          void refusal.then((e) => onRefused?.(e));
        } else {
          this.#sessionLost(st.code === GrpcStatus.OK ? undefined : (streamError ?? st));
        }
      });
    });
    call.write(helloRequest(PROTOCOL_VERSION, this.#clientId));

    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(unreachable(`no Welcome within ${timeoutMs / 1000} s`)), Math.max(1, deadline.getTime() - Date.now()));
    });
    try {
      await Promise.race([welcome, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Writes one batch of messages to the session (dropped once it is lost or before it opened). */
  send(batch: Outgoing[]): void {
    const call = this.#session;
    if (!call || this.#lost) return;
    call.write(toSessionRequest(batch, this.#batches));
  }

  /** The encoded size of a batch of messages as send() would write it (bytes). */
  encodedSize(batch: readonly Outgoing[]): number {
    return ClientSessionRequest.encode(toSessionRequest(batch, this.#batches)).finish().length;
  }

  /** The scheduler's GetInfo. */
  async getInfo(timeoutMs = 30_000): Promise<SchedulerInfo> {
    const s = this.stub;
    const res = await unary(s.getInfo.bind(s), {}, `GetInfo from the scheduler at ${this.#address}`, timeoutMs);
    return fromGetInfo(res);
  }

  /**
   * Ends the session: half-closes it (unless lost) and waits for the scheduler to end its side,
   * cancelling it after 2 s.
   */
  async end(): Promise<void> {
    const call = this.#session;
    const ended = this.#sessionEnded;
    if (!call || !ended) return;
    if (!this.#lost) call.end();
    let timer: NodeJS.Timeout | undefined;
    const gone = await Promise.race([
      ended.then(() => true),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), 2_000);
      }),
    ]);
    clearTimeout(timer);
    if (!gone) {
      call.cancel();
      await ended;
    }
  }

  /** Closes the channel. */
  close(): void {
    this.stub.close();
  }

  /** The error for a session the scheduler ended before its Welcome. */
  async #refusal(err: ServiceError): Promise<SkeinError> {
    const addr = this.#address;
    const context = `The scheduler at ${addr} refused the client session`;
    if (err.code === GrpcStatus.UNAVAILABLE) {
      return new CommClosedError(addr, `Cannot reach the scheduler at ${addr}: ${err.details}`, { cause: err });
    }
    if (err.code !== GrpcStatus.FAILED_PRECONDITION) return fromGrpcStatus(err, context);
    // The scheduler names both versions; pick the one that is not ours, or ask GetInfo.
    const versions = (err.details ?? '').match(/\b\d+\.\d+(?:\.\d+)?\b/g) ?? [];
    let remote = versions.find((v) => v !== PROTOCOL_VERSION);
    if (!remote) {
      try {
        remote = (await this.getInfo(2000)).protocolVersion || undefined;
      } catch {
        remote = undefined;
      }
    }
    if (remote && remote.split('.')[0] !== PROTOCOL_VERSION.split('.')[0]) {
      const e = new ProtocolVersionError(PROTOCOL_VERSION, remote, 'client');
      e.message += ` (scheduler at ${addr}: ${err.details})`;
      return e;
    }
    if (/version/i.test(err.details ?? '')) {
      const e = new ProtocolVersionError(PROTOCOL_VERSION, remote ?? 'unknown', 'client');
      e.message += ` (scheduler at ${addr}: ${err.details})`;
      return e;
    }
    return fromGrpcStatus(err, context);
  }

  /** The session broke without close(): the client hears it with the CommClosedError for its futures. */
  #sessionLost(err: Partial<ServiceError> | StatusObject | undefined): void {
    if (this.#events.closing()) return;
    this.#lost = true;
    const addr = this.#address;
    const detail = err ? `: ${err.details || err.code}` : ' (the scheduler ended the session)';
    const error = new CommClosedError(
      addr,
      `Lost the connection to the scheduler at ${addr}${detail}. Futures without a result fail; ` +
        'connect a new client once the scheduler is back.',
      err ? { cause: err } : undefined,
    );
    this.#events.lost(error);
  }
}

/**
 * A bidirectional stream between two ends in one process, with the surface of a grpc-js duplex
 * call on each side (write / end / cancel and the 'data', 'end', 'error', 'status', 'cancelled'
 * and 'close' events), so a session handler written for gRPC serves it unchanged. Messages are
 * handed over as objects, each on a microtask (in order, never inside the sender's call): no
 * encoding, no HTTP/2, no socket. A LocalCluster's scheduler offers its clients such a session
 * (LOCAL_CLIENT_SESSION) because client and scheduler share the process: on a socket, every
 * message paid for protobuf encoding and decoding and two turns of the event loop.
 *
 * The ends share the objects they pass: a sender must not change a message after writing it.
 */
import { EventEmitter } from 'node:events';
import { Metadata, status as GrpcStatus } from '@grpc/grpc-js';

/**
 * Where an in-process scheduler offers client sessions without a socket: a method under this
 * symbol, on the object given to Client.connect (a LocalCluster), returns the client's end of a
 * new session. Only code holding that object can call it, so it is as trusted as the process.
 */
export const LOCAL_CLIENT_SESSION: unique symbol = Symbol.for('skein.localClientSession');

/** The final status of a local stream, as grpc-js reports a call's. */
export interface LocalStatus {
  code: GrpcStatus;
  details: string;
  metadata: Metadata;
}

/** The calling end (as a grpc-js ClientDuplexStream). */
export class LocalClientStream<Req, Res> extends EventEmitter {
  /** @internal */ server!: LocalServerStream<Res, Req>;
  #halfClosed = false;
  #finished = false;

  write(message: Req): boolean {
    if (this.#halfClosed || this.#finished) return false;
    queueMicrotask(() => this.server.receive(message));
    return true;
  }

  /** Half-closes: the serving end sees 'end' after what was written. */
  end(): this {
    if (this.#halfClosed || this.#finished) return this;
    this.#halfClosed = true;
    queueMicrotask(() => this.server.receiveEnd());
    return this;
  }

  /** Cancels the call: the serving end sees 'cancelled', this end a CANCELLED status. */
  cancel(): void {
    if (this.#finished) return;
    queueMicrotask(() => {
      this.server.receiveCancel();
      this.finish(GrpcStatus.CANCELLED, 'Cancelled on client');
    });
  }

  /** @internal A message from the serving end. */
  receive(message: Res): void {
    if (!this.#finished) this.emit('data', message);
  }

  /** @internal The call's end: a non-OK status first as an 'error' (as grpc-js), then 'status'. */
  finish(code: GrpcStatus, details: string): void {
    if (this.#finished) return;
    this.#finished = true;
    const st: LocalStatus = { code, details, metadata: new Metadata() };
    if (code !== GrpcStatus.OK) this.emit('error', Object.assign(new Error(`${code} ${GrpcStatus[code]}: ${details}`), st));
    this.emit('status', st);
  }
}

/** The serving end (as a grpc-js ServerDuplexStream). */
export class LocalServerStream<Res, Req> extends EventEmitter {
  /** @internal */ client!: LocalClientStream<Req, Res>;
  writableEnded = false;
  destroyed = false;
  #readEnded = false;

  write(message: Res): boolean {
    if (this.writableEnded || this.destroyed) return false;
    queueMicrotask(() => this.client.receive(message));
    return true;
  }

  /** Ends the call with an OK status (after what was written). */
  end(): this {
    this.#close(GrpcStatus.OK, 'OK');
    return this;
  }

  /**
   * As on a grpc-js server call, emitting 'error' with `{ code, details }` ends the call with that
   * status (the handler's own 'error' listeners hear it too).
   */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'error') return super.emit(event, ...args);
    const e = args[0] as { code?: GrpcStatus; details?: string; message?: string } | undefined;
    this.#close(e?.code ?? GrpcStatus.UNKNOWN, e?.details ?? e?.message ?? '');
    return this.listenerCount('error') > 0 ? super.emit(event, ...args) : false;
  }

  /** @internal A message from the calling end. */
  receive(message: Req): void {
    if (!this.destroyed && !this.#readEnded) super.emit('data', message);
  }

  /** @internal The calling end half-closed. */
  receiveEnd(): void {
    if (this.destroyed || this.#readEnded) return;
    this.#readEnded = true;
    super.emit('end');
  }

  /** @internal The calling end cancelled. */
  receiveCancel(): void {
    if (this.destroyed) return;
    this.writableEnded = true;
    this.destroyed = true;
    super.emit('cancelled');
    super.emit('close');
  }

  #close(code: GrpcStatus, details: string): void {
    if (this.writableEnded || this.destroyed) return;
    this.writableEnded = true;
    queueMicrotask(() => {
      this.client.finish(code, details);
      if (this.destroyed) return;
      this.destroyed = true;
      super.emit('close');
    });
  }
}

/** A new local stream: the client's end and the server's end. */
export function localStreamPair<Req, Res>(): { client: LocalClientStream<Req, Res>; server: LocalServerStream<Res, Req> } {
  const client = new LocalClientStream<Req, Res>();
  const server = new LocalServerStream<Res, Req>();
  client.server = server;
  server.client = client;
  return { client, server };
}

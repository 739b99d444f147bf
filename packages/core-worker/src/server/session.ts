/**
 * The worker's session with the scheduler: connects, opens the WorkerSession stream, says Hello
 * and waits for the Welcome, sends heartbeats and the batched outgoing messages, and, when the
 * stream breaks, reconnects for up to the death timeout (or, when the scheduler removed this
 * worker with NOT_FOUND, asks the worker to close). Commands from the scheduler go to the host
 * (the Worker) as they arrive; the session does not interpret them beyond the Welcome.
 */
import { cpuUsage, memoryUsage, pid } from 'node:process';
import type { ClientDuplexStream, ServiceError } from '@grpc/grpc-js';
import { Metadata, status as GrpcStatus } from '@grpc/grpc-js';
import { SchedulerServiceClient, type Welcome, type WorkerCommand, type WorkerSessionRequest, type WorkerSessionResponse } from '@skein/protocol';
import {
  Batcher,
  CommClosedError,
  PROTOCOL_VERSION,
  SkeinError,
  checkProtocolVersion,
  diagnoseTls,
  fromGrpcStatus,
  localVersions,
  toVersionsMessage,
  parseAddress,
  toSkeinError,
  type Logger,
} from '@skein/common';
import type { CompiledWorkerOptions } from '../options.js';
import type { WorkerState } from '../state/worker-state.js';
import { MAX_BATCH, outgoingWeight, toWireBatch, type Outgoing } from './convert.js';

/** What the session needs from the worker that owns it. */
export interface SessionHost {
  /**
   * Commands from the scheduler, in order (a Welcome among them is already handled). A throw
   * before the Welcome fails the connect; after it, the session reports it with `fail`.
   */
  commands(commands: readonly WorkerCommand[], welcomed: boolean): void;
  /** An internal error while handling commands (the worker fails hard). */
  fail(err: unknown, context: string): void;
  /** The stream broke after the Welcome and the session reconnects (the state hears SchedulerLost). */
  lost(): void;
  /** The session cannot go on (the scheduler removed this worker, or no reconnect in time): close with `error`. */
  close(error: SkeinError): void;
  /** True once the worker is closing. */
  closing(): boolean;
  /** True once an internal error closes the worker: a broken session is then not reconnected. */
  failed(): boolean;
  /** Keeps the worker's close waiting for `p`. */
  track(p: Promise<unknown>): void;
}

/** Who this worker is, as its Hello tells the scheduler. */
export interface SessionIdentity {
  address: string;
  name: string;
  registeredFunctions: string[];
}

/** One WorkerSession stream (a reconnect opens a new one). */
interface Stream {
  client: SchedulerServiceClient;
  call: ClientDuplexStream<WorkerSessionRequest, WorkerSessionResponse>;
  /** State messages stay in their domain form until their batch leaves (see toWireBatch). */
  batcher: Batcher<Outgoing>;
  welcomed: boolean;
  /** The scheduler's Welcome says it reads TasksFinished (protocol 1.1 column forms). */
  batches: boolean;
  ended: boolean;
}

export class SchedulerSession {
  /** The heartbeat interval: the worker's option until the scheduler's Welcome names one. */
  heartbeatIntervalMs: number;
  private stream: Stream | undefined;
  private reconnectingNow = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private lastCpu = cpuUsage();
  private lastCpuAt = Date.now();

  constructor(
    private readonly options: CompiledWorkerOptions,
    private readonly identity: SessionIdentity,
    private readonly state: WorkerState,
    private readonly host: SessionHost,
    /** Aborted when the worker closes: ends the waits between reconnects. */
    private readonly signal: AbortSignal,
    private readonly log: Logger,
  ) {
    this.heartbeatIntervalMs = options.heartbeatMs;
  }

  /** The stream broke and the session is trying to reconnect. */
  get reconnecting(): boolean {
    return this.reconnectingNow;
  }

  /** The scheduler has welcomed the current stream and it has not ended. */
  get open(): boolean {
    const s = this.stream;
    return s !== undefined && s.welcomed && !s.ended;
  }

  /**
   * Connects and registers within the worker's connect timeout; rejects with CommClosedError
   * when the scheduler cannot be reached, or the scheduler's error when it refuses the worker.
   */
  start(): Promise<void> {
    return this.connect(this.options.connectTimeoutMs, true);
  }

  /** Queues a message for the scheduler (dropped while no session is open). */
  send(m: Outgoing): void {
    const s = this.stream;
    if (s && s.welcomed && !s.ended) s.batcher.push(m);
  }

  /** Sends a heartbeat now (also the timer's; the memory manager calls it after a pause change). */
  sendHeartbeat(): void {
    const now = Date.now();
    const cpu = cpuUsage(this.lastCpu);
    const elapsed = Math.max(1, now - this.lastCpuAt);
    this.lastCpu = cpuUsage();
    this.lastCpuAt = now;
    const state = this.state;
    this.send({
      kind: {
        $case: 'heartbeat',
        value: {
          executing: state.executing.size,
          ready: state.readyLength,
          memoryRss: memoryUsage.rss(),
          managedBytes: state.managedBytes,
          cpuPercent: ((cpu.user + cpu.system) / 1000 / elapsed) * 100,
          nowMs: now,
          spilledBytes: state.spilledBytes,
          paused: state.paused,
        },
      },
    });
  }

  stopHeartbeat(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }

  /**
   * Asks the scheduler to retire this worker (RetireWorkers, before `deadline`); false when there
   * is no open session or the call failed (logged).
   */
  retire(deadline: number): Promise<boolean> {
    const s = this.stream;
    if (!s || !s.welcomed || s.ended) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      s.client.retireWorkers({ workers: [this.identity.address], n: 0 }, new Metadata(), { deadline }, (err) => {
        if (err) this.log.warn(`retiring through the scheduler failed (${err.details}); closing anyway`);
        resolve(!err);
      });
    });
  }

  /**
   * The last word of a worker that fails hard: sends what is queued for the scheduler and
   * WorkerClosing last, and half-closes the session; resolves once the scheduler has ended its
   * side (it removed this worker) or after 2 s. Resolves at once without an open session.
   */
  sayClosing(reason: string, stimulusId: string): Promise<void> {
    const s = this.stream;
    if (!s || !s.welcomed || s.ended) return Promise.resolve();
    s.batcher.push({ kind: { $case: 'closing', value: { reason, stimulusId } } });
    s.batcher.close();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, 2_000);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      s.call.once('end', done);
      s.call.once('error', done);
      s.call.once('close', done);
      try {
        s.call.end();
      } catch {
        done();
      }
    });
  }

  /** Ends the current stream (flushing what is queued) and closes its channel. */
  close(): void {
    if (this.stream) this.endStream(this.stream);
  }

  private connect(timeoutMs: number, first: boolean): Promise<void> {
    const o = this.options;
    const dial = o.security.dial(o.scheduler, 'worker', 'scheduler');
    const client = new SchedulerServiceClient(dial.target, dial.credentials, dial.options);
    return new Promise<void>((resolve, reject) => {
      const unreachable = (detail: string, cause?: unknown) =>
        new CommClosedError(
          o.scheduler,
          `Cannot reach the scheduler at ${o.scheduler}: ${detail}. Is \`skein scheduler\` running there?`,
          { cause },
        );
      client.waitForReady(Date.now() + Math.max(1, timeoutMs), (err) => {
        if (err) {
          client.close();
          if (!first) {
            reject(unreachable(`no connection within ${Math.round(timeoutMs / 1000)}s`, err));
            return;
          }
          // At the first contact, say when TLS is what keeps it out (grpc-js cannot tell).
          const a = parseAddress(o.scheduler);
          void diagnoseTls(a.host, a.port, o.security, 'scheduler').then((tls) =>
            reject(tls ? new CommClosedError(o.scheduler, `Cannot reach the scheduler at ${o.scheduler}: ${tls}.`, { cause: err }) : unreachable(`no connection within ${Math.round(timeoutMs / 1000)}s`, err)),
          );
          return;
        }
        if (this.host.closing()) {
          client.close();
          reject(new SkeinError('cancelled', 'The worker is closing.'));
          return;
        }
        const call = client.workerSession();
        const stream: Stream = {
          client,
          call,
          welcomed: false,
          batches: false,
          ended: false,
          batcher: new Batcher<Outgoing>(
            (queued) => {
              if (!stream.ended) call.write({ messages: toWireBatch(queued, stream.batches) });
            },
            MAX_BATCH,
            outgoingWeight,
          ),
        };
        this.stream = stream;
        call.on('data', (res: WorkerSessionResponse) => {
          try {
            const commands = res.commands;
            for (const cmd of commands) {
              if (cmd.kind?.$case === 'welcome') {
                this.onWelcome(stream, cmd.kind.value);
                resolve();
              }
            }
            this.host.commands(commands, stream.welcomed);
          } catch (e) {
            if (!stream.welcomed) {
              this.endStream(stream);
              reject(e);
            } else {
              this.host.fail(e, 'while handling commands from the scheduler');
            }
          }
        });
        const onBroken = (err?: ServiceError) => {
          if (stream.ended) return;
          const welcomed = stream.welcomed;
          this.endStream(stream);
          if (!welcomed) {
            if (err?.code === GrpcStatus.FAILED_PRECONDITION) reject(fromGrpcStatus(err));
            else if (err && err.code !== GrpcStatus.UNAVAILABLE) reject(fromGrpcStatus(err, `The scheduler at ${o.scheduler} refused this worker`));
            else reject(unreachable(err?.details || 'the session ended before the scheduler answered', err));
            return;
          }
          if (err?.code === GrpcStatus.NOT_FOUND) this.onRemoved(err.details);
          else this.onLost(err ? toSkeinError(err).message : 'the scheduler ended the session');
        };
        call.on('error', (err: ServiceError) => onBroken(err));
        call.on('end', () => onBroken());
        const id = this.identity;
        call.write({
          messages: [
            {
              kind: {
                $case: 'hello',
                value: {
                  protocolVersion: PROTOCOL_VERSION,
                  address: id.address,
                  name: id.name,
                  nthreads: o.nthreads,
                  memoryLimit: o.memoryLimit,
                  resources: new Map(Object.entries(o.resources)),
                  held: first ? [] : this.state.held(),
                  registeredFunctions: id.registeredFunctions,
                  pid,
                  nannyAddress: o.nannyAddress,
                  batches: true,
                  versions: toVersionsMessage(localVersions(import.meta.url, '@skein/core-worker')),
                },
              },
            },
          ],
        });
      });
    });
  }

  private endStream(s: Stream): void {
    if (s.ended) return;
    s.batcher.close();
    s.ended = true;
    try {
      s.call.end();
    } catch {
      // already broken
    }
    s.call.cancel();
    s.client.close();
    if (this.stream === s) this.stream = undefined;
  }

  private onWelcome(s: Stream, w: Welcome): void {
    checkProtocolVersion(w.protocolVersion, 'worker');
    s.welcomed = true;
    s.batches = w.batches;
    if (w.heartbeatIntervalMs > 0) this.heartbeatIntervalMs = w.heartbeatIntervalMs;
    this.reconnectingNow = false;
    this.startHeartbeat();
  }

  /**
   * The scheduler dropped this worker (a reported death, another registration under its address,
   * a missed heartbeat TTL) and ended the session with NOT_FOUND: it has already rescheduled the
   * tasks and forgotten the results this worker holds. As a Dask worker the scheduler removed,
   * it closes rather than run on unregistered; its nanny starts a fresh one (skein-worker exits
   * with EXIT_REMOVED, 4).
   */
  private onRemoved(details: string): void {
    if (this.host.closing() || this.host.failed()) return;
    const error = new SkeinError(
      'not_found',
      `The scheduler at ${this.options.scheduler} removed this worker: ${details} Closing; a nanny starts a fresh worker.`,
    );
    this.log.warn(error.message);
    this.host.close(error);
  }

  private onLost(reason: string): void {
    if (this.host.closing() || this.reconnectingNow || this.host.failed()) return;
    this.reconnectingNow = true;
    this.stopHeartbeat();
    this.log.warn(`lost the scheduler at ${this.options.scheduler} (${reason}); reconnecting for up to ${this.options.deathTimeoutMs / 1000}s`);
    this.host.lost();
    this.host.track(this.reconnectLoop(reason));
  }

  private async reconnectLoop(reason: string): Promise<void> {
    const deadline = Date.now() + this.options.deathTimeoutMs;
    let delay = 100;
    let lastError: unknown;
    while (!this.host.closing() && Date.now() < deadline) {
      try {
        await this.connect(Math.max(1, Math.min(deadline - Date.now(), 1_000)), false);
        this.log.info(`reconnected to the scheduler at ${this.options.scheduler}`);
        return;
      } catch (err) {
        lastError = err;
        if (err instanceof SkeinError && err.code === 'failed_precondition') break;
      }
      await sleep(Math.min(delay, Math.max(0, deadline - Date.now())), this.signal);
      delay = Math.min(delay * 2, 2_000);
    }
    if (this.host.closing()) return;
    this.host.close(
      new CommClosedError(
        this.options.scheduler,
        `Lost the scheduler at ${this.options.scheduler} (${reason}) and could not reconnect within ${this.options.deathTimeoutMs / 1000}s` +
          (lastError ? `: ${(lastError as Error).message}` : '.'),
      ),
    );
  }

  private startHeartbeat(): void {
    this.stopHeartbeat();
    this.heartbeat = setInterval(() => this.sendHeartbeat(), this.heartbeatIntervalMs);
    this.heartbeat.unref();
  }
}

/** Waits `ms`, or less once `signal` aborts (the abort listener is removed either way). */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  // Closing already (CloseWorker can beat the reply to retire's RetireWorkers): no timer left behind.
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

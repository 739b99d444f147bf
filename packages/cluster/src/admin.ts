import { Metadata, status as GrpcStatus, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { SchedulerServiceClient, WorkerEventKind, type WatchWorkersResponse, type WorkerEvent } from '@skein/protocol';
import { Security, SkeinError, fromGrpcStatus } from '@skein/common';

/** A registered worker as the scheduler reports it. */
export interface AdminWorkerInfo {
  name: string;
  address: string;
  status: string;
  processing: number;
  managedBytes: number;
  nannyAddress: string;
  pid: number;
}

/** One change seen by `watchWorkers`. */
export interface WorkerChange {
  kind: 'added' | 'removed' | 'status';
  address: string;
  /** The name the worker registered with (the deployer's name for it). */
  name: string;
  /** running | paused | retiring (a removed worker's last status). */
  status: string;
  /** Why a removed worker was removed ('' otherwise). */
  reason: string;
  /** A removal on purpose (retired, closed) rather than a loss. */
  expected: boolean;
  nannyAddress: string;
  pid: number;
  timeMs: number;
}

/** What `watchWorkers` calls. */
export interface WorkerWatchHandlers {
  /** The registered workers when the watch opened (called once, first). */
  onSnapshot?(workers: WorkerChange[]): void;
  /** Each change after the snapshot. */
  onChange(change: WorkerChange): void;
  /** The stream ended: `error` unless `close()` ended it (the scheduler closed or cannot be reached). */
  onEnd?(error: SkeinError | undefined): void;
}

/** A running `watchWorkers` stream. */
export interface WorkerWatchSubscription {
  /** Resolves once the snapshot has arrived; rejects when the stream fails before it. */
  readonly ready: Promise<void>;
  /** Ends the stream. Idempotent. */
  close(): void;
}

export interface SchedulerAdminOptions {
  /** Deadline of the short calls (workers, adaptive target), ms (default 10 s). */
  callTimeoutMs?: number;
  /** Deadline of a retire, which waits for the workers' results to move (default 60 s). */
  retireTimeoutMs?: number;
  /** TLS credentials and/or a token (default: none; a deployer passes its cluster's). */
  security?: Security;
}

const KINDS = new Map<WorkerEventKind, WorkerChange['kind']>([
  [WorkerEventKind.WORKER_EVENT_KIND_ADDED, 'added'],
  [WorkerEventKind.WORKER_EVENT_KIND_REMOVED, 'removed'],
  [WorkerEventKind.WORKER_EVENT_KIND_STATUS, 'status'],
]);

function change(e: WorkerEvent): WorkerChange | undefined {
  const kind = KINDS.get(e.kind);
  if (!kind) return undefined; // a kind this version does not know: skipped, as the protocol allows additions
  return { kind, address: e.address, name: e.name, status: e.status, reason: e.reason, expected: e.expected, nannyAddress: e.nannyAddress, pid: e.pid, timeMs: e.timeMs };
}

/**
 * The scheduler's administrative calls, for deployers and tools: retire workers, the adaptive
 * target, the worker list, and a stream of workers as they come and go (WatchWorkers). One gRPC
 * channel, no client session: the scheduler does not count it as a client, and it holds no
 * futures.
 *
 * @example
 * const admin = new SchedulerAdmin('tcp://10.0.0.5:8786');
 * const watch = admin.watchWorkers({ onChange: (c) => console.log(c.kind, c.name) });
 * await watch.ready;
 * await admin.retireWorkers(['worker-3']);
 * admin.close();
 */
export class SchedulerAdmin {
  readonly #client: SchedulerServiceClient;
  readonly #opts: Required<Omit<SchedulerAdminOptions, 'security'>>;
  readonly #watches = new Set<WorkerWatchSubscription>();

  constructor(
    readonly schedulerAddress: string,
    options: SchedulerAdminOptions = {},
  ) {
    const dial = (options.security ?? Security.insecure()).dial(schedulerAddress, 'client', 'scheduler');
    this.#client = new SchedulerServiceClient(dial.target, dial.credentials, dial.options);
    this.#opts = { callTimeoutMs: options.callTimeoutMs ?? 10_000, retireTimeoutMs: options.retireTimeoutMs ?? 60_000 };
  }

  #unary<Req, Res>(
    what: string,
    call: (req: Req, md: Metadata, opts: { deadline: number }, cb: (err: ServiceError | null, res?: Res) => void) => unknown,
    req: Req,
    timeoutMs = this.#opts.callTimeoutMs,
  ): Promise<Res> {
    return new Promise((resolve, reject) => {
      call.call(this.#client, req, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
        if (err) reject(fromGrpcStatus(err, `${what} at the scheduler ${this.schedulerAddress}`));
        else resolve(res!);
      });
    });
  }

  /** Retires these workers (names or addresses) gracefully; resolves with the addresses retired. */
  async retireWorkers(workers: string[], n = 0): Promise<string[]> {
    const res = await this.#unary('Retiring workers', this.#client.retireWorkers, { workers, n }, this.#opts.retireTimeoutMs);
    return res.retired;
  }

  /** How many workers the load calls for, and which idle workers (addresses) could go. */
  async adaptiveTarget(targetDurationMs: number): Promise<{ target: number; workersToClose: string[]; current: number; reason: string }> {
    const r = await this.#unary('Asking for the adaptive target', this.#client.getAdaptiveTarget, { targetDurationMs });
    return { target: r.target, workersToClose: r.workersToClose, current: r.current, reason: r.reason };
  }

  /** The registered workers. */
  async workers(): Promise<AdminWorkerInfo[]> {
    const info = await this.#unary('Listing the workers', this.#client.getInfo, {});
    return info.workers.map((w) => ({
      name: w.name,
      address: w.address,
      status: w.status,
      processing: w.processing,
      managedBytes: w.managedBytes,
      nannyAddress: w.nannyAddress,
      pid: w.pid,
    }));
  }

  /** Follows the workers: the snapshot first, then every change, until `close()` or the stream fails. */
  watchWorkers(handlers: WorkerWatchHandlers): WorkerWatchSubscription {
    const stream: ClientReadableStream<WatchWorkersResponse> = this.#client.watchWorkers({});
    let closed = false;
    let ended = false;
    let snapshot = false;
    let resolveReady!: () => void;
    let rejectReady!: (err: SkeinError) => void;
    const ready = new Promise<void>((res, rej) => {
      resolveReady = res;
      rejectReady = rej;
    });
    ready.catch(() => undefined);
    const end = (error: SkeinError | undefined) => {
      if (ended) return;
      ended = true;
      this.#watches.delete(sub);
      if (!snapshot) rejectReady(error ?? new SkeinError('cancelled', `The watch of the scheduler ${this.schedulerAddress}'s workers was closed before its snapshot.`));
      handlers.onEnd?.(closed ? undefined : error);
    };
    stream.on('data', (msg: WatchWorkersResponse) => {
      const changes = msg.events.map(change).filter((c): c is WorkerChange => c !== undefined);
      if (msg.snapshot) {
        snapshot = true;
        handlers.onSnapshot?.(changes);
        resolveReady();
      } else for (const c of changes) handlers.onChange(c);
    });
    stream.on('error', (err: ServiceError) => {
      if (closed && err.code === GrpcStatus.CANCELLED) return end(undefined);
      end(fromGrpcStatus(err, `Watching the workers of the scheduler ${this.schedulerAddress}`));
    });
    stream.on('end', () => end(closed ? undefined : new SkeinError('unavailable', `The scheduler ${this.schedulerAddress} ended the watch of its workers (it closed).`)));
    const sub: WorkerWatchSubscription = {
      ready,
      close: () => {
        if (closed) return;
        closed = true;
        stream.cancel();
        end(undefined);
      },
    };
    this.#watches.add(sub);
    return sub;
  }

  /** Ends the watches and the channel. Idempotent. */
  close(): void {
    for (const w of [...this.#watches]) w.close();
    this.#client.close();
  }
}

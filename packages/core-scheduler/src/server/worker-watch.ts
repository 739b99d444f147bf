import type { ServerWritableStream } from '@grpc/grpc-js';
import { WorkerEventKind, type WatchWorkersRequest, type WatchWorkersResponse, type WorkerEvent } from '@skein/protocol';
import type { WorkerRecord } from '../state/records.js';

type Watcher = ServerWritableStream<WatchWorkersRequest, WatchWorkersResponse>;

interface Seen {
  name: string;
  status: string;
  nannyAddress: string;
  pid: number;
}

/**
 * The WatchWorkers streams of one scheduler: a snapshot of the registered workers when a stream
 * opens, then one message per worker added, removed, or whose status changed. The scheduler's
 * shell calls `added`/`removed`/`statusMaybeChanged` after the state handled the event; with no
 * watcher each call is one Map operation, so it costs nothing on the hot path.
 */
export class WorkerWatch {
  readonly #watchers = new Set<Watcher>();
  /** What the watchers were last told about each worker, by address. */
  readonly #seen = new Map<string, Seen>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Opens a stream: sends the snapshot of `workers`, then follows the changes until the call ends. */
  watch(call: Watcher, workers: Iterable<WorkerRecord>): void {
    const events: WorkerEvent[] = [];
    for (const ws of workers) events.push(this.#event(WorkerEventKind.WORKER_EVENT_KIND_ADDED, ws.address, this.#remember(ws), '', false));
    call.write({ snapshot: true, events });
    this.#watchers.add(call);
    const drop = () => this.#watchers.delete(call);
    call.on('cancelled', drop);
    call.on('close', drop);
    call.on('error', drop);
  }

  /** A worker registered. */
  added(ws: WorkerRecord): void {
    const seen = this.#remember(ws);
    this.#send(this.#event(WorkerEventKind.WORKER_EVENT_KIND_ADDED, ws.address, seen, '', false));
  }

  /** A worker is gone (`expected`: it retired or closed on purpose). */
  removed(address: string, reason: string, expected: boolean): void {
    const seen = this.#seen.get(address);
    if (!seen) return;
    this.#seen.delete(address);
    this.#send(this.#event(WorkerEventKind.WORKER_EVENT_KIND_REMOVED, address, seen, reason, expected));
  }

  /** Tells the watchers when the worker's status differs from what they were last told. */
  statusMaybeChanged(ws: WorkerRecord | undefined): void {
    if (!ws) return;
    const seen = this.#seen.get(ws.address);
    if (!seen || seen.status === ws.status) return;
    seen.status = ws.status;
    this.#send(this.#event(WorkerEventKind.WORKER_EVENT_KIND_STATUS, ws.address, seen, '', false));
  }

  /** Ends every stream (the scheduler closes). */
  close(): void {
    for (const call of this.#watchers) if (!call.writableEnded) call.end();
    this.#watchers.clear();
  }

  #remember(ws: WorkerRecord): Seen {
    const seen = { name: ws.name, status: ws.status, nannyAddress: ws.nannyAddress, pid: ws.pid };
    this.#seen.set(ws.address, seen);
    return seen;
  }

  #event(kind: WorkerEventKind, address: string, seen: Seen, reason: string, expected: boolean): WorkerEvent {
    return { kind, address, name: seen.name, status: seen.status, reason, expected, nannyAddress: seen.nannyAddress, pid: seen.pid, timeMs: this.now() };
  }

  #send(event: WorkerEvent): void {
    for (const call of this.#watchers) {
      if (!call.writableEnded && !call.destroyed) call.write({ snapshot: false, events: [event] });
    }
  }
}

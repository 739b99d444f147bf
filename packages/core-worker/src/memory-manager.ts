/**
 * The worker's memory manager (as Dask's WorkerMemoryManager): reads the process memory on a
 * timer, spills least recently used results to disk past the spill threshold (and right after
 * new results pass the target), pauses and resumes task starts, reads spilled values back for
 * tasks, and runs a full GC after large frees. The decisions are the pure `memoryDecision`; this
 * class performs them and feeds their outcome to the state machine as events through its host.
 */
import { formatBytes, type Logger } from '@skein/common';
import type { CompiledWorkerOptions } from './options.js';
import type { WorkerState } from './state/worker-state.js';
import type { Encoded, WorkerEvent } from './state/types.js';
import { memoryDecision } from './state/memory.js';
import { SpillStore } from './server/spill.js';
import { ReleasedMemory, fullGcFunction } from './runtime/gc.js';

/** What the memory manager needs from the worker that owns it. */
export interface MemoryHost {
  /** Handles events now (a pause must be in the state before the next action). */
  handle(events: WorkerEvent[]): void;
  /** Queues an event from async work (spilled, read back). */
  enqueue(ev: WorkerEvent): void;
  /** A stimulus id unique to this worker. */
  stimulus(prefix: string): string;
  /** Tells the scheduler the worker's memory and pause state now (a heartbeat). */
  report(): void;
  /** True once the worker is closing: no new spill round starts and a running one stops. */
  closing(): boolean;
  /** Keeps the worker's close waiting for `p`. */
  track(p: Promise<unknown>): void;
  /** Runs a full collection in every task thread. */
  collectThreadGarbage(): void;
}

export class MemoryManager {
  /** Runs full GCs after large frees, so released values leave RSS at once (runtime/gc.ts). */
  readonly released = new ReleasedMemory(() => {
    (this.mainGc ??= fullGcFunction() ?? (() => undefined))();
    this.host.collectThreadGarbage();
  });
  private mainGc: (() => void) | undefined;
  private store: SpillStore | undefined;
  private state: WorkerState | undefined;
  private monitor: NodeJS.Timeout | undefined;
  /** Keys being written to disk in the current spill round. */
  private readonly spilling = new Set<string>();
  /** Spilled files being read back for tasks, shared by tasks that need the same one. */
  private readonly unspilling = new Map<string, Promise<Encoded>>();
  /** Disk I/O in progress (awaited before the local directory is removed). */
  private readonly diskIO = new Set<Promise<unknown>>();
  private spillBackoffUntil = 0;
  private warnedNothingToSpill = false;

  constructor(
    private readonly options: CompiledWorkerOptions,
    private readonly host: MemoryHost,
    private readonly log: Logger,
  ) {}

  /** The directory holding spilled results (empty before open; removed at close). */
  get localDirectory(): string {
    return this.store?.dir ?? '';
  }

  /** The spill store (for serving spilled values to peers); undefined before open. */
  get spillStore(): SpillStore | undefined {
    return this.store;
  }

  /** Creates the spill directory. */
  async open(): Promise<void> {
    this.store = await SpillStore.create(this.options.localDirectory);
  }

  /** Starts watching the process memory (only with a memory limit). */
  start(state: WorkerState): void {
    this.state = state;
    const o = this.options;
    if (o.memoryLimit > 0) {
      this.monitor = setInterval(() => this.check(), o.memoryMonitorMs);
      this.monitor.unref();
    }
  }

  /** Stops the memory monitor. */
  stop(): void {
    if (this.monitor) clearInterval(this.monitor);
  }

  /** Waits for disk I/O in progress, then removes the local directory. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.diskIO]);
    await this.store?.close();
  }

  /** Removes spilled files the state dropped. */
  removeSpilled(files: readonly string[]): void {
    if (this.store) void this.trackDisk(this.store.remove(files));
  }

  /** After the state's actions: past the target with new results, spill now rather than at the next monitor tick. */
  afterActions(): void {
    if (!this.monitor) return;
    const o = this.options;
    const target = o.memoryFractions.target;
    const managed = this.state!.managedBytes;
    if (target !== false && this.spilling.size === 0 && managed > target * o.memoryLimit) {
      this.spill(managed - Math.floor(target * o.memoryLimit), 'target');
    }
  }

  /** Reads a spilled value back for a task (it goes back into memory: DataUnspilled). */
  unspill(key: string, file: string, encoding: number): Promise<Encoded> {
    let p = this.unspilling.get(file);
    if (!p) {
      p = this.store!.read(file).then((data) => {
        const value: Encoded = { encoding, data };
        this.host.enqueue({ type: 'DataUnspilled', key, value, file, stimulusId: this.host.stimulus('unspill') });
        return value;
      });
      this.unspilling.set(file, p);
      const done = () => this.unspilling.delete(file);
      p.then(done, done);
      void this.trackDisk(p);
    }
    return p;
  }

  private trackDisk<T>(p: Promise<T>): Promise<T> {
    this.diskIO.add(p);
    const done = () => this.diskIO.delete(p);
    p.then(done, done);
    return p;
  }

  /** One monitor tick: pause or resume, and spill (the decisions are the pure memoryDecision). */
  private check(): void {
    const state = this.state;
    if (this.host.closing() || !state) return;
    const o = this.options;
    const rss = o.readRss();
    const d = memoryDecision({ rss, managed: state.managedBytes, limit: o.memoryLimit, fractions: o.memoryFractions, paused: state.paused });
    if (d.pauseChanged) {
      const pct = Math.round((rss / o.memoryLimit) * 100);
      if (d.paused) {
        this.log.warn(
          `paused: process memory ${formatBytes(rss)} is ${pct}% of the limit ${formatBytes(o.memoryLimit)} (pause at ${Math.round(
            (o.memoryFractions.pause || 0) * 100,
          )}%); no new tasks start until it falls (results in memory ${formatBytes(state.managedBytes)}, spilled ${formatBytes(state.spilledBytes)})`,
        );
      } else {
        this.log.warn(`resumed: process memory ${formatBytes(rss)} is ${pct}% of the limit ${formatBytes(o.memoryLimit)}`);
      }
      this.host.handle([{ type: 'PauseChanged', paused: d.paused, stimulusId: this.host.stimulus(d.paused ? 'pause' : 'unpause') }]);
      this.host.report(); // tell the scheduler now, not at the next heartbeat
    }
    if (d.spillBytes > 0) this.spill(d.spillBytes, d.spillReason);
    else if (d.spillReason === undefined && o.memoryFractions.spill !== false && rss > o.memoryFractions.spill * o.memoryLimit) {
      if (!this.warnedNothingToSpill) {
        this.warnedNothingToSpill = true;
        this.log.warn(
          `process memory ${formatBytes(rss)} is past the spill threshold of the limit ${formatBytes(o.memoryLimit)} but no results are left in memory to spill; ` +
            'the memory is held by tasks or the runtime (unmanaged memory)',
        );
      }
    } else this.warnedNothingToSpill = false;
  }

  /** Writes least recently used results to disk, one spill round at a time. */
  private spill(bytes: number, reason: string | undefined): void {
    const store = this.store;
    if (!store || this.spilling.size > 0 || Date.now() < this.spillBackoffUntil) return;
    const candidates = this.state!.spillCandidates(bytes);
    if (candidates.length === 0) return;
    this.log.debug(`spilling ${candidates.length} results (${formatBytes(bytes)} wanted, ${reason} threshold)`);
    for (const [key] of candidates) this.spilling.add(key);
    const round = (async () => {
      // shift(): a value written and handed to the state is no longer referenced from here
      for (let c = candidates.shift(); c; c = candidates.shift()) {
        const [key, value] = c;
        if (this.host.closing()) break;
        try {
          const file = await store.write(key, value);
          this.host.enqueue({ type: 'DataSpilled', key, value, file, stimulusId: this.host.stimulus('spill') });
          // The value leaves memory with this event: count it like a release, so RSS drops too.
          this.released.add(value.data.byteLength);
        } catch (err) {
          this.spillBackoffUntil = Date.now() + 5_000;
          this.log.error(`could not spill ${key} to ${store.dir}: ${(err as Error).message}; spilling stops for 5s`);
          break;
        }
      }
    })().finally(() => this.spilling.clear());
    void this.trackDisk(round);
    this.host.track(round);
  }
}

import './polyfill.js';
import { CancelledError, TimeoutError, type SkeinError } from '@skein/common';
import type { EncodedValue, FutureStatus } from './types.js';

/** What a Future needs from the client that owns it. Implemented by Client. */
export interface FutureHost {
  /** The value of a finished key: decoded from the inline copy or fetched from a worker. */
  _valueOf(state: KeyState): Promise<unknown>;
  /** Drops one future's reference to the key. */
  _decref(state: KeyState, future: Future<unknown>): void;
  cancel(futures: Future<unknown> | readonly Future<unknown>[]): Promise<void>;
}

export type StateListener = (state: KeyState) => void;

/**
 * The client's record of one key: shared by every Future of that key, reference counted.
 * Plain data plus one-shot listeners; no promise exists unless someone awaits the key.
 */
export class KeyState {
  status: FutureStatus = 'pending';
  /** Live Future objects for this key. */
  refs = 0;
  /** Taken out of the client's key map (cancelled or the client closed): no more updates. */
  detached = false;
  /** The inline value from the scheduler, decoded on first use. */
  inline: EncodedValue | undefined = undefined;
  /** Workers holding the value. */
  workers: string[] = [];
  nbytes = 0;
  typeName = '';
  /** The decoded value, cached while futures exist. */
  value: unknown = undefined;
  hasValue = false;
  private error_: SkeinError | undefined = undefined;
  /** Builds the error on first use: an Error captures a stack, too costly for keys nobody asks. */
  private makeError: (() => SkeinError) | undefined = undefined;

  get error(): SkeinError | undefined {
    if (this.makeError) {
      this.error_ = this.makeError();
      this.makeError = undefined;
    }
    return this.error_;
  }

  set error(e: SkeinError | undefined) {
    this.error_ = e;
    this.makeError = undefined;
  }

  /** Called once when the key reaches finished, error or cancelled. */
  listeners: StateListener[] | undefined = undefined;
  /** A transfer of the value in progress. */
  fetching: Promise<void> | undefined = undefined;
  /** Bumped on every new in_memory report (new holders). */
  generation = 0;
  /** Why no worker can run the task, while the scheduler reports it so (status 'no-worker'). */
  noWorkerReason = '';

  constructor(readonly key: string) {}

  get terminal(): boolean {
    return this.status === 'finished' || this.status === 'error' || this.status === 'cancelled';
  }

  /** Runs `fn` once the key is terminal (at once if it already is). Returns an unsubscribe function. */
  whenTerminal(fn: StateListener): () => void {
    if (this.terminal) {
      fn(this);
      return noop;
    }
    (this.listeners ??= []).push(fn);
    return () => {
      const ls = this.listeners;
      if (!ls) return;
      const i = ls.indexOf(fn);
      if (i >= 0) ls.splice(i, 1);
    };
  }

  private changeWaiters: Array<() => void> | undefined = undefined;

  /** Resolves at the next report about this key (settle or lost), or after `ms`. */
  nextChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const waiters = (this.changeWaiters ??= []);
      waiters.push(done);
      function done(): void {
        clearTimeout(timer);
        const i = waiters.indexOf(done);
        if (i >= 0) waiters.splice(i, 1);
        resolve();
      }
    });
  }

  /** Wakes nextChange() waiters. */
  changed(): void {
    const ws = this.changeWaiters;
    if (!ws || ws.length === 0) return;
    this.changeWaiters = undefined;
    for (const w of ws) w();
  }

  /** Moves to a terminal status and wakes every listener. */
  settle(status: 'finished' | 'error' | 'cancelled', error?: SkeinError | (() => SkeinError)): void {
    this.status = status;
    if (typeof error === 'function') {
      this.error_ = undefined;
      this.makeError = error;
    } else {
      this.error = error;
    }
    this.changed();
    const ls = this.listeners;
    if (!ls) return;
    this.listeners = undefined;
    for (const l of ls) l(this);
  }
}

function noop(): void {}

/** Keeps an object reachable from a closure until the closure runs (for GC-driven release). */
function retain(_o: unknown): void {}

/**
 * A handle to the result of a task on the cluster (Dask's Future).
 *
 * Several Future objects can share a key; the client releases the key on the scheduler once the
 * last of them is released (`release()`, `await using`, or garbage collection). A Future is
 * deliberately not thenable: call `result()`.
 */
export class Future<T = unknown> {
  /** The task's key. */
  readonly key: string;
  /** @internal */
  readonly _state: KeyState;
  /** @internal */
  readonly _host: FutureHost;
  #released = false;
  /** Phantom field carrying the result type. */
  declare readonly __result?: T;

  /** @internal Created by the Client; do not construct directly. */
  constructor(host: FutureHost, state: KeyState) {
    this._host = host;
    this._state = state;
    this.key = state.key;
  }

  /**
   * 'pending', 'no-worker' (no running worker satisfies the task's restrictions; see
   * `noWorkerReason`), 'finished', 'error', 'cancelled' or 'lost' (value lost, being recomputed).
   */
  get status(): FutureStatus {
    return this._state.status;
  }

  /** While status is 'no-worker': the scheduler's reason (which restrictions no worker meets). */
  get noWorkerReason(): string {
    return this._state.status === 'no-worker' ? this._state.noWorkerReason : '';
  }

  /** The result's type name as reported by the worker (empty until finished). */
  get typeName(): string {
    return this._state.typeName;
  }

  /** True once the task finished, failed or was cancelled. */
  done(): boolean {
    return this._state.terminal;
  }

  /** True after release(). */
  get released(): boolean {
    return this.#released;
  }

  /**
   * The result. Rejects with the task's error (a TaskError carrying the remote message and stack,
   * KilledWorkerError, CancelledError, CommClosedError…) or a TimeoutError after `timeoutMs`.
   */
  result(timeoutMs?: number): Promise<T> {
    const state = this._state;
    const host = this._host;
    if (state.status === 'finished' || (state.status === 'lost' && state.hasValue)) {
      return host._valueOf(state).then((v) => {
        retain(this);
        return v as T;
      });
    }
    if (state.terminal) return Promise.reject(state.error);
    return new Promise<T>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const unsubscribe = state.whenTerminal((s) => {
        if (timer) clearTimeout(timer);
        retain(this);
        if (s.status === 'finished') host._valueOf(s).then((v) => resolve(v as T), reject);
        else reject(s.error);
      });
      if (timeoutMs !== undefined && !state.terminal) {
        timer = setTimeout(() => {
          unsubscribe();
          reject(new TimeoutError(`Future ${this.key} has no result after ${timeoutMs} ms (status: ${state.status}).`));
        }, timeoutMs);
      }
    });
  }

  /** Waits for the task and returns its error, or undefined when it succeeded. */
  async exception(timeoutMs?: number): Promise<Error | undefined> {
    await this.wait(timeoutMs);
    return this._state.status === 'finished' ? undefined : this._state.error;
  }

  /** Resolves once the task is finished, failed or cancelled (never rejects for task errors). */
  wait(timeoutMs?: number): Promise<this> {
    const state = this._state;
    if (state.terminal) return Promise.resolve(this);
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const unsubscribe = state.whenTerminal(() => {
        if (timer) clearTimeout(timer);
        resolve(this);
      });
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          unsubscribe();
          reject(new TimeoutError(`Future ${this.key} did not finish within ${timeoutMs} ms (status: ${state.status}).`));
        }, timeoutMs);
      }
    });
  }

  /** Asks the scheduler to stop the task; the future becomes 'cancelled'. */
  cancel(): Promise<void> {
    return this._host.cancel(this);
  }

  /** Drops this future's reference; the key is released when no future for it is left. Idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this._host._decref(this._state, this);
  }

  [Symbol.dispose](): void {
    this.release();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.release();
  }

  toString(): string {
    return `<Future: ${this.status}, key: ${this.key}>`;
  }

  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toString();
  }
}

/** Error used when the last future of a key is released while someone still waits on it. */
export function releasedError(key: string): CancelledError {
  return new CancelledError(key, 'all of its futures were released before it finished');
}

import { InvalidArgumentError, TimeoutError } from '@skein/common';
import { Future, type KeyState } from './future.js';

/** When `wait` returns. */
export type ReturnWhen = 'ALL_COMPLETED' | 'FIRST_COMPLETED';

export interface WaitOptions {
  /** Reject with TimeoutError after this long. */
  timeoutMs?: number;
  /** Default 'ALL_COMPLETED'. */
  returnWhen?: ReturnWhen;
}

export interface DoneAndNotDone<T> {
  done: Set<Future<T>>;
  notDone: Set<Future<T>>;
}

function completed(s: KeyState): boolean {
  return s.terminal;
}

/**
 * Waits until all (or the first of) the futures are finished, failed or cancelled (Dask's wait).
 * Task errors do not reject: look at each future's status.
 */
export function wait<T>(futures: Iterable<Future<T>>, options: WaitOptions = {}): Promise<DoneAndNotDone<T>> {
  const list = [...futures];
  const returnWhen = options.returnWhen ?? 'ALL_COMPLETED';
  if (returnWhen !== 'ALL_COMPLETED' && returnWhen !== 'FIRST_COMPLETED') {
    throw new InvalidArgumentError(`wait(): returnWhen must be 'ALL_COMPLETED' or 'FIRST_COMPLETED', got ${String(returnWhen)}.`);
  }
  const split = (): DoneAndNotDone<T> => {
    const done = new Set<Future<T>>();
    const notDone = new Set<Future<T>>();
    for (const f of list) (completed(f._state) ? done : notDone).add(f);
    return { done, notDone };
  };
  const states = [...new Set(list.map((f) => f._state))];
  let remaining = 0;
  for (const s of states) if (!completed(s)) remaining++;
  if (remaining === 0 || (returnWhen === 'FIRST_COMPLETED' && remaining < states.length) || list.length === 0) {
    return Promise.resolve(split());
  }
  return new Promise((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const unsubs: Array<() => void> = [];
    const finish = () => {
      if (timer) clearTimeout(timer);
      for (const u of unsubs) u();
      resolve(split());
    };
    const onDone = () => {
      if (--remaining === 0 || returnWhen === 'FIRST_COMPLETED') finish();
    };
    for (const s of states) if (!completed(s)) unsubs.push(s.whenTerminal(onDone));
    if (options.timeoutMs !== undefined) {
      timer = setTimeout(() => {
        for (const u of unsubs) u();
        const { notDone } = split();
        reject(new TimeoutError(`wait(): ${notDone.size} of ${list.length} futures did not complete within ${options.timeoutMs} ms.`));
      }, options.timeoutMs);
    }
  });
}

export interface AsCompletedOptions {
  /** Yield `[future, result]` pairs; a failed future throws its error from the iterator. */
  withResults?: boolean;
}

/**
 * Yields futures in the order they complete (Dask's as_completed). More futures can be added while
 * iterating with `add`.
 *
 * @example
 * for await (const f of asCompleted(futures)) console.log(f.key, f.status);
 * for await (const [f, value] of asCompleted(futures, { withResults: true })) use(value);
 */
export class AsCompleted<T, Y = Future<T>> implements AsyncIterable<Y> {
  #queue: Future<T>[] = [];
  #head = 0;
  #outstanding = 0;
  #wake: (() => void) | undefined;
  readonly #withResults: boolean;

  constructor(futures: Iterable<Future<T>> = [], options: AsCompletedOptions = {}) {
    this.#withResults = options.withResults ?? false;
    for (const f of futures) this.add(f);
  }

  /** Adds a future to wait for. */
  add(future: Future<T>): void {
    if (!(future instanceof Future)) throw new InvalidArgumentError('asCompleted().add() takes a Future.');
    this.#outstanding++;
    future._state.whenTerminal(() => {
      this.#outstanding--;
      this.#queue.push(future);
      const w = this.#wake;
      this.#wake = undefined;
      w?.();
    });
  }

  /** Futures not yet yielded. */
  get count(): number {
    return this.#outstanding + this.#queue.length - this.#head;
  }

  isEmpty(): boolean {
    return this.count === 0;
  }

  /** The next completed future (or [future, result]); undefined when none is left. */
  async next(): Promise<IteratorResult<Y, undefined>> {
    for (;;) {
      const f = this.#queue[this.#head];
      if (f) {
        this.#queue[this.#head++] = undefined as unknown as Future<T>;
        if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
          this.#queue = this.#queue.slice(this.#head);
          this.#head = 0;
        }
        if (!this.#withResults) return { value: f as unknown as Y, done: false };
        const value = await f.result();
        return { value: [f, value] as unknown as Y, done: false };
      }
      if (this.#outstanding === 0) return { value: undefined, done: true };
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
      });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<Y, undefined> {
    return { next: () => this.next() };
  }
}

/** `new AsCompleted(futures, options)` with the right yield type. */
export function asCompleted<T>(futures: Iterable<Future<T>>, options: { withResults: true }): AsCompleted<T, [Future<T>, T]>;
export function asCompleted<T>(futures: Iterable<Future<T>>, options?: { withResults?: false }): AsCompleted<T, Future<T>>;
export function asCompleted<T>(futures: Iterable<Future<T>>, options: AsCompletedOptions = {}): AsCompleted<T, unknown> {
  return new AsCompleted<T, unknown>(futures, options);
}

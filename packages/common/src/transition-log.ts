/**
 * A bounded ring of state transitions stored column by column: no object per transition, so
 * logging every transition of millions of tasks costs fixed memory and no garbage (an object per
 * record lived long enough to be copied by every young-generation collection and promoted: in a
 * worker, six records per task were a fifth of its CPU in GC). The scheduler and the worker state
 * machines each keep one (`story(keys)`).
 */
export interface LoggedTransition<S extends string> {
  key: string;
  start: S;
  finish: S;
  stimulusId: string;
  timeMs: number;
  /** The worker involved (scheduler log), '' where none. */
  worker: string;
}

export class TransitionLog<S extends string> {
  private readonly keys: string[];
  private readonly starts: Uint8Array;
  private readonly finishes: Uint8Array;
  private readonly stimuli: string[];
  private readonly times: Float64Array;
  private readonly workers: string[];
  private readonly codes = new Map<S, number>();
  private next = 0;
  private count = 0;
  private pushes = 0;

  /** @param states every state name that may be logged (at most 256). */
  constructor(
    readonly capacity: number,
    private readonly states: readonly S[],
  ) {
    if (states.length > 256) throw new RangeError('TransitionLog: at most 256 states');
    states.forEach((s, i) => this.codes.set(s, i));
    const n = Math.max(1, capacity);
    this.keys = new Array<string>(n).fill('');
    this.stimuli = new Array<string>(n).fill('');
    this.workers = new Array<string>(n).fill('');
    this.starts = new Uint8Array(n);
    this.finishes = new Uint8Array(n);
    this.times = new Float64Array(n);
  }

  get size(): number {
    return this.count;
  }

  /** How many records were ever pushed: a mark for `keysSince`. */
  get pushed(): number {
    return this.pushes;
  }

  /** The keys of the records pushed since `mark` (a value of `pushed`) that are still held. */
  keysSince(mark: number): Set<string> {
    const out = new Set<string>();
    const n = this.keys.length;
    const take = Math.min(this.pushes - mark, this.count);
    for (let j = 1; j <= take; j++) out.add(this.keys[(this.next - j + n) % n]!);
    return out;
  }

  push(key: string, start: S, finish: S, stimulusId: string, timeMs: number, worker = ''): void {
    const i = this.next;
    this.keys[i] = key;
    this.starts[i] = this.codes.get(start) ?? 0;
    this.finishes[i] = this.codes.get(finish) ?? 0;
    this.stimuli[i] = stimulusId;
    this.times[i] = timeMs;
    this.workers[i] = worker;
    this.next = (i + 1) % this.keys.length;
    if (this.count < this.keys.length) this.count++;
    this.pushes++;
  }

  /** The records of the given keys (all records without `keys`), oldest first. */
  select(keys?: ReadonlySet<string>): Array<LoggedTransition<S>> {
    const out: Array<LoggedTransition<S>> = [];
    const n = this.keys.length;
    const first = this.count < n ? 0 : this.next;
    for (let j = 0; j < this.count; j++) {
      const i = (first + j) % n;
      const key = this.keys[i]!;
      if (keys && !keys.has(key)) continue;
      out.push({
        key,
        start: this.states[this.starts[i]!]!,
        finish: this.states[this.finishes[i]!]!,
        stimulusId: this.stimuli[i]!,
        timeMs: this.times[i]!,
        worker: this.workers[i]!,
      });
    }
    return out;
  }
}

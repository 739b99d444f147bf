import { SkeinError } from './errors.js';

export type LifecycleStatus = 'created' | 'starting' | 'running' | 'closing' | 'closed' | 'failed';

/**
 * The one lifecycle of every long-running service: start once, close idempotently (the same
 * promise every time), shutdown steps run in order and one failing step does not skip the rest.
 */
export class Lifecycle {
  status: LifecycleStatus = 'created';
  private closePromise: Promise<void> | undefined;
  private readonly tracked = new Set<Promise<unknown>>();

  constructor(private readonly what: string) {}

  beginStart(): void {
    if (this.status !== 'created') {
      throw new SkeinError('failed_precondition', `${this.what} was already started (status: ${this.status}); create a new one.`);
    }
    this.status = 'starting';
  }

  started(): void {
    if (this.status === 'starting') this.status = 'running';
  }

  get closing(): boolean {
    return this.status === 'closing' || this.status === 'closed';
  }

  /** Tracks a background promise so close() waits for it. */
  track<T>(p: Promise<T>): Promise<T> {
    this.tracked.add(p);
    const done = () => this.tracked.delete(p);
    p.then(done, done);
    return p;
  }

  close(steps: Array<[string, () => unknown]>): Promise<void> {
    if (this.closePromise) return this.closePromise;
    this.status = 'closing';
    this.closePromise = (async () => {
      const errors: unknown[] = [];
      for (const [name, step] of steps) {
        try {
          await step();
        } catch (err) {
          errors.push(new SkeinError('internal', `${this.what}: shutdown step "${name}" failed: ${(err as Error)?.message ?? err}`, { cause: err }));
        }
      }
      await Promise.allSettled([...this.tracked]);
      this.status = 'closed';
      if (errors.length === 1) throw errors[0];
      if (errors.length > 1) throw new AggregateError(errors, `${this.what}: ${errors.length} shutdown steps failed`);
    })();
    return this.closePromise;
  }
}

/**
 * Making a broken invariant visible. In validation mode (`validate: true` or SKEIN_VALIDATE=1)
 * the scheduler and worker state machines run `validateState()` after every event; a throw there
 * is a bug. What the shell then does with the error is its failure policy and stays its own
 * business; `watchInvariants` only makes sure the test that caused it hears of it, also when it
 * happened in a worker process: with SKEIN_VALIDATE_REPORT set (the test setup sets it per test
 * file), every broken invariant is appended to that file as one JSON line, which the setup reads
 * after each test.
 */
import { appendFileSync } from 'node:fs';
import { skeinDefaults } from './config.js';

/** One line of the SKEIN_VALIDATE_REPORT file. */
export interface InvariantViolation {
  /** The process and state machine, e.g. 'scheduler' or 'worker tcp://127.0.0.1:4567'. */
  where: string;
  pid: number;
  /** Wall-clock time, ms since the epoch. */
  time: number;
  message: string;
  stack: string;
}

/** Records a broken invariant: appends it to the SKEIN_VALIDATE_REPORT file, if one is set. */
export function reportInvariantViolation(where: string, err: unknown): void {
  const file = skeinDefaults().validateReport;
  if (!file) return;
  const e = err instanceof Error ? err : new Error(String(err));
  const line: InvariantViolation = { where, pid: process.pid, time: Date.now(), message: e.message, stack: e.stack ?? '' };
  try {
    appendFileSync(file, JSON.stringify(line) + '\n');
  } catch (writeErr) {
    process.stderr.write(`skein: could not record a broken invariant in ${file} (${(writeErr as Error).message}): ${e.stack ?? e.message}\n`);
  }
}

/**
 * Wraps `state.validateState` so that a throw is recorded (reportInvariantViolation) before it
 * propagates as before. Call once, on a state machine created with validation on.
 */
export function watchInvariants(state: { validateState(): void }, where: () => string): void {
  const validate = state.validateState.bind(state);
  state.validateState = () => {
    try {
      validate();
    } catch (err) {
      reportInvariantViolation(where(), err);
      throw err;
    }
  };
}

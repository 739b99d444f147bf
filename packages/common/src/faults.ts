/**
 * Test-only fault injection for the state machines' failure policy (packages/protocol/README.md,
 * "Internal errors"): a spec names an event type and which occurrence of it makes `handle` throw.
 * I/O-free; the shells read the spec from their options (the worker: SKEIN_TEST_FAULT).
 */
import { InternalError, InvalidArgumentError } from './errors.js';

/** Throw on the `nth` event (1-based) of type `event`. */
export interface FaultSpec {
  event: string;
  nth: number;
}

/**
 * Parses `<event type>[:<nth>]` (e.g. `ExecuteSuccess:200`); undefined or '' is no fault. `what`
 * names the setting in the error message.
 */
export function parseFaultSpec(text: string | undefined, what: string): FaultSpec | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  const m = /^\s*([A-Za-z]+)(?::(\d+))?\s*$/.exec(text);
  const nth = m?.[2] === undefined ? 1 : Number(m[2]);
  if (!m || !Number.isSafeInteger(nth) || nth < 1) {
    throw new InvalidArgumentError(
      `${what}=${JSON.stringify(text)}: expected <event type>[:<nth>], e.g. "ExecuteSuccess:200" (the 200th ExecuteSuccess event throws); nth counts from 1.`,
    );
  }
  return { event: m[1]!, nth };
}

/**
 * A fault hook for a state machine's `handle`: throws an InternalError on the `nth` event of the
 * spec's type, once. `claim` (optional) is asked at that moment whether this process may fire;
 * false lets the fault pass (e.g. another worker of the same test fired it already).
 */
export function faultHook(spec: FaultSpec, what: string, claim?: () => boolean): (event: { type: string; stimulusId: string }) => void {
  let seen = 0;
  let done = false;
  return (event) => {
    if (done || event.type !== spec.event || ++seen < spec.nth) return;
    done = true;
    if (claim && !claim()) return;
    throw new InternalError(`injected fault (${what}=${spec.event}:${spec.nth}) on ${event.type} ${event.stimulusId}`, {
      details: { stimulusId: event.stimulusId, injected: true },
    });
  };
}

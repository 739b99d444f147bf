/**
 * How processes started by a deployer find each other and say they are ready, without anyone
 * reading the banners printed for people:
 * - the scheduler file: `skein scheduler --scheduler-file PATH` writes its address there (atomically),
 *   `skein worker --scheduler-file PATH` waits for it (HPC jobs on a shared file system);
 * - the ready line: with `--ready-json` (or SKEIN_READY_JSON=1) a CLI prints one JSON line,
 *   `{"event":"ready","role":...,"address":...}`, on stdout once it is ready.
 * Only node:fs here: the nanny's CLI loads this before gRPC.
 */
import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { SkeinError, InvalidArgumentError } from './errors.js';

/** What `--scheduler-file` holds (JSON). */
export interface SchedulerFileContents {
  /** Where workers and clients connect: `tcp://host:port`. */
  address: string;
  /** The dashboard URL, '' when the scheduler serves none. */
  dashboard: string;
  /** The scheduler's id (a UUID, new for every scheduler). */
  id: string;
  /** The scheduler's process id. */
  pid: number;
}

/** Writes the scheduler file atomically: a temporary file next to it, then a rename. */
export function writeSchedulerFile(path: string, contents: SchedulerFileContents): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    writeFileSync(tmp, JSON.stringify(contents, null, 2) + '\n');
    renameSync(tmp, path);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // not written
    }
    throw new InvalidArgumentError(`Cannot write the scheduler file ${path}: ${(err as Error).message}. Give a path in a writable directory.`, { cause: err });
  }
}

/** Removes the scheduler file if it still names the scheduler `id` (a later scheduler may have replaced it). */
export function removeSchedulerFile(path: string, id: string): void {
  try {
    if (parseSchedulerFile(readFileSync(path, 'utf8'), path).id === id) unlinkSync(path);
  } catch {
    // gone already, or someone else's
  }
}

function parseSchedulerFile(text: string, path: string): SchedulerFileContents {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`The scheduler file ${path} is not JSON (${(err as Error).message}).`);
  }
  const o = v as Partial<SchedulerFileContents> | null;
  if (!o || typeof o !== 'object' || typeof o.address !== 'string' || !o.address) {
    throw new InvalidArgumentError(`The scheduler file ${path} has no "address"; it should be written by skein scheduler --scheduler-file.`);
  }
  return { address: o.address, dashboard: typeof o.dashboard === 'string' ? o.dashboard : '', id: typeof o.id === 'string' ? o.id : '', pid: typeof o.pid === 'number' ? o.pid : 0 };
}

/** Reads the scheduler file: undefined while it does not exist; throws InvalidArgumentError when its content is wrong. */
export function readSchedulerFile(path: string): SchedulerFileContents | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new InvalidArgumentError(`Cannot read the scheduler file ${path}: ${(err as Error).message}.`, { cause: err });
  }
  return parseSchedulerFile(text, path);
}

/**
 * Waits for the scheduler file to appear (polling every `intervalMs`) and returns its contents.
 * Throws a `deadline_exceeded` SkeinError naming the file after `timeoutMs`, and at once when the
 * file cannot be read or holds no address (`abort` ends the wait early with a `cancelled` error).
 */
export async function waitForSchedulerFile(
  path: string,
  timeoutMs: number,
  options: { intervalMs?: number; signal?: AbortSignal } = {},
): Promise<SchedulerFileContents> {
  const intervalMs = options.intervalMs ?? 100;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const contents = readSchedulerFile(path);
    if (contents) return contents;
    if (options.signal?.aborted) throw new SkeinError('cancelled', `Stopped waiting for the scheduler file ${path}.`);
    if (Date.now() >= deadline) {
      throw new SkeinError(
        'deadline_exceeded',
        `The scheduler file ${path} did not appear within ${timeoutMs / 1000} s. Start the scheduler with ` +
          `--scheduler-file ${path} (on a file system this machine shares), or wait longer with --death-timeout SECONDS.`,
        { details: { schedulerFile: path } },
      );
    }
    await new Promise((r) => setTimeout(r, Math.min(intervalMs, Math.max(1, deadline - Date.now()))));
  }
}

/** The environment variable that asks a Skein CLI for its JSON ready line (`1`), as `--ready-json` does. */
export const READY_JSON_ENV = 'SKEIN_READY_JSON';

/** Whether a CLI should print its JSON ready line: the `--ready-json` flag, or SKEIN_READY_JSON=1. */
export function readyJsonWanted(flag: boolean | undefined, env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env[READY_JSON_ENV];
  return flag === true || (v !== undefined && v !== '' && v !== '0' && v !== 'false');
}

/** The ready line of a Skein process (one JSON object on one stdout line). */
export type ReadyEvent = (
  | { event: 'ready'; role: 'scheduler'; address: string; dashboard: string; id: string; pid: number }
  | { event: 'ready'; role: 'worker'; address: string; scheduler: string; name: string; pid: number; nanny?: string }
  /** A cluster CLI (`skein ssh`): its scheduler's address and the workers it started. */
  | { event: 'ready'; role: 'cluster'; address: string; dashboard: string; workers: Array<{ name: string; host: string; address: string }> }
) & {
  /** Whether the process's links are TLS (its addresses are then `tls://`). */
  tls?: boolean;
};

/** Formats a ready line (no newline). */
export function readyLine(event: ReadyEvent): string {
  return JSON.stringify(event);
}

/** The ready event on a line of output, or undefined when the line is anything else. */
export function parseReadyLine(line: string): ReadyEvent | undefined {
  const s = line.trim();
  if (!s.startsWith('{') || !s.includes('"ready"')) return undefined;
  try {
    const v = JSON.parse(s) as Partial<ReadyEvent> | null;
    if (v && v.event === 'ready' && (v.role === 'scheduler' || v.role === 'worker' || v.role === 'cluster') && typeof v.address === 'string') return v as ReadyEvent;
  } catch {
    // not ours
  }
  return undefined;
}

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseReadyLine, type ReadyEvent } from '@skein/common';

export const SKEIN_BIN = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
export const REPO = fileURLToPath(new URL('../../../', import.meta.url));

export interface Proc {
  child: ChildProcess;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpExecArray>;
  kill(signal?: NodeJS.Signals): void;
}

/** Starts `node <script> ...args` and collects its output lines. */
export function startProcess(args: string[], env: Record<string, string> = {}, cwd?: string): Proc {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env }, ...(cwd ? { cwd } : {}) });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const waiters: Array<() => void> = [];
  const notify = () => waiters.forEach((w) => w());
  createInterface({ input: child.stdout! }).on('line', (l) => {
    stdout.push(l);
    notify();
  });
  createInterface({ input: child.stderr! }).on('line', (l) => {
    stderr.push(l);
    notify();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    resolve(code);
    notify();
  }));
  return {
    child,
    stdout,
    stderr,
    exited,
    kill: (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    },
    waitFor(re, timeoutMs = 20_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          for (const line of [...stdout, ...stderr]) {
            const m = re.exec(line);
            if (m) {
              clearTimeout(timer);
              resolve(m);
              return true;
            }
          }
          if (child.exitCode !== null || child.signalCode !== null) {
            clearTimeout(timer);
            reject(new Error(`process exited (${child.exitCode ?? child.signalCode}) before printing ${re}:\n${[...stdout, ...stderr].join('\n')}`));
            return true;
          }
          return false;
        };
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}:\n${[...stdout, ...stderr].join('\n')}`)), timeoutMs);
        if (!check()) waiters.push(() => void check());
      });
    },
  };
}

/** Waits until `cond()` is true, polling. */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** `p`'s value, or `fallback` if it takes longer than `ms`; the timer goes with the race. */
export async function within<T, F>(p: Promise<T>, ms: number, fallback: F): Promise<T | F> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<F>((resolve) => (timer = setTimeout(() => resolve(fallback), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Waits for the process's JSON ready line (it was started with --ready-json or SKEIN_READY_JSON=1)
 * and returns it: tests read addresses from it, never from the banners printed for people.
 */
export async function readyOf(p: Proc, timeoutMs?: number): Promise<ReadyEvent> {
  const line = (await p.waitFor(/^\{"event":"ready"/, timeoutMs)).input;
  const event = parseReadyLine(line);
  if (!event) throw new Error(`not a ready line: ${line}`);
  return event;
}

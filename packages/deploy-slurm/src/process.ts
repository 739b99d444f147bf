import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { SkeinError, parseReadyLine, type ReadyEvent } from '@skein/common';
import type { SchedulerHandle } from '@skein/cluster';
import { JobQueueCommandNotFoundError } from './errors.js';

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * How jobs and the local scheduler start Skein when `skeinCommand` is not given: the `skein`
 * package installed next to this one (`node …/skein/dist/cli.js`: the same Node.js and files on a
 * shared file system), else `skein` on PATH.
 */
export function defaultSkeinCommand(): string {
  try {
    const pkg = createRequire(import.meta.url).resolve('skein/package.json');
    return `${shellQuote(process.execPath)} ${shellQuote(join(dirname(pkg), 'dist', 'cli.js'))}`;
  } catch {
    return 'skein';
  }
}

export interface CommandResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a job-queue command (no shell); a missing command is a `JobQueueCommandNotFoundError`. */
export function runCommand(system: string, argv: readonly string[], options: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CommandResult> {
  const [cmd, ...args] = argv;
  return new Promise((resolve, reject) => {
    const child = spawn(cmd!, args, { stdio: ['pipe', 'pipe', 'pipe'], env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new SkeinError('deadline_exceeded', `${argv.join(' ')} did not finish within ${options.timeoutMs} ms; is the ${system} controller up?`));
    }, options.timeoutMs ?? 60_000);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ENOENT') reject(new JobQueueCommandNotFoundError(system, cmd!, { cause: err }));
      else reject(new SkeinError('unavailable', `Could not run ${argv.join(' ')}: ${err.message}`, { cause: err }));
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input ?? '');
  });
}

/**
 * `skein scheduler` as a child process of this one (the scheduler runs on the submitting host, as
 * in dask-jobqueue), ready once it printed its JSON ready line.
 */
export class LocalScheduler implements SchedulerHandle {
  readonly name = 'scheduler';
  readonly exited: Promise<number | null>;
  readonly #lines: string[] = [];
  #closing: Promise<void> | undefined;

  private constructor(
    readonly child: ChildProcess,
    readonly address: string,
    readonly dashboardLink: string,
    exited: Promise<number | null>,
    lines: string[],
  ) {
    this.exited = exited;
    this.#lines = lines;
  }

  /** Starts `<skeinCommand> scheduler <args>` through /bin/sh (the command may carry arguments) and waits for its ready line. */
  static start(skeinCommand: string, args: readonly string[], env: Readonly<Record<string, string>>, timeoutMs: number): Promise<LocalScheduler> {
    const line = `exec ${skeinCommand} ${args.map(shellQuote).join(' ')}`;
    // A watcher holds the pipe from this process: when this process dies (even by SIGKILL) the pipe
    // closes and the watcher stops the scheduler, whose jobs then end after their death timeout.
    const script = `exec 3<&0; ( while read -r _ <&3; do :; done; kill -TERM $$ ) >/dev/null 2>&1 & ${line} </dev/null 3<&-`;
    const child = spawn('/bin/sh', ['-c', script], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    child.stdin!.on('error', () => undefined);
    const lines: string[] = [];
    const keep = (l: string) => {
      lines.push(l);
      if (lines.length > 500) lines.shift();
    };
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    // The scheduler is gone: its watcher reads EOF and ends too.
    void exited.then(() => child.stdin!.end());
    return new Promise<LocalScheduler>((resolve, reject) => {
      let ready: ReadyEvent | undefined;
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new SkeinError('deadline_exceeded', `The scheduler (${line}) did not print its ready line within ${timeoutMs} ms. Its output:\n${lines.join('\n') || '(none)'}`));
      }, timeoutMs);
      createInterface({ input: child.stdout! }).on('line', (l) => {
        const event = ready ? undefined : parseReadyLine(l);
        if (event?.role === 'scheduler') {
          ready = event;
          clearTimeout(timer);
          resolve(new LocalScheduler(child, event.address, event.dashboard, exited, lines));
        }
        keep(l);
      });
      createInterface({ input: child.stderr! }).on('line', keep);
      void exited.then((code) => {
        if (ready) return;
        clearTimeout(timer);
        const output = lines.join('\n');
        if (code === 127 || /not found|Cannot find module|ERR_MODULE_NOT_FOUND/.test(output)) {
          reject(
            new SkeinError(
              'failed_precondition',
              `Cannot start the scheduler: "${skeinCommand}" is not a Skein command here. Install Skein (\`npm install skein\`) or set skeinCommand (--skein-command). Output:\n${output}`,
            ),
          );
        } else reject(new SkeinError('unavailable', `The scheduler exited with code ${code} before it was ready. Its output:\n${output || '(none)'}`));
      });
    });
  }

  logs(): string[] {
    return this.#lines.slice();
  }

  /** SIGTERM, then SIGKILL after 10 s. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return;
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(timer);
    })();
    return this.#closing;
  }
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/**
 * A logger writing `time level component: message` lines to stderr (or to `sink`, e.g. a buffer of
 * recent lines); level from SKEIN_LOG_LEVEL.
 */
export function createLogger(component: string, level?: LogLevel, sink?: (line: string) => void): Logger {
  const min = ORDER[level ?? ((process.env['SKEIN_LOG_LEVEL'] as LogLevel | undefined) ?? 'info')] ?? ORDER.info;
  const write = (lvl: LogLevel, msg: string) => {
    if (ORDER[lvl] < min) return;
    const line = `${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} ${component}: ${msg}`;
    if (sink) sink(line);
    else process.stderr.write(`${line}\n`);
  };
  return {
    debug: (m) => write('debug', m),
    info: (m) => write('info', m),
    warn: (m) => write('warn', m),
    error: (m) => write('error', m),
  };
}

let stdioGuarded = false;

/**
 * Makes writes to a closed stdout or stderr harmless for a long-running process (scheduler,
 * worker, nanny): when the reader of its pipe is gone (a killed nanny or terminal), Node reports
 * EPIPE as an 'error' event on process.stdout/stderr, which would otherwise crash the process on
 * its next log line. Later writes to that stream are dropped: there is no one left to read them.
 * Idempotent.
 */
export function guardStdio(): void {
  if (stdioGuarded) return;
  stdioGuarded = true;
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED' || err.code === 'EIO') return;
      // Anything else is reported once on the other stream, if it still works.
      const other = stream === process.stdout ? process.stderr : process.stdout;
      try {
        other.write(`skein: writing to ${stream === process.stdout ? 'stdout' : 'stderr'} failed: ${err.message}\n`);
      } catch {
        // nowhere left to say it
      }
    });
  }
}

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

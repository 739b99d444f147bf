export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface Logger {
  debug(msg: string): void;
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/** A logger writing `time level component: message` lines to stderr; level from SKEIN_LOG_LEVEL. */
export function createLogger(component: string, level?: LogLevel): Logger {
  const min = ORDER[level ?? ((process.env['SKEIN_LOG_LEVEL'] as LogLevel | undefined) ?? 'info')] ?? ORDER.info;
  const write = (lvl: LogLevel, msg: string) => {
    if (ORDER[lvl] < min) return;
    process.stderr.write(`${new Date().toISOString()} ${lvl.toUpperCase().padEnd(5)} ${component}: ${msg}\n`);
  };
  return {
    debug: (m) => write('debug', m),
    info: (m) => write('info', m),
    warn: (m) => write('warn', m),
    error: (m) => write('error', m),
  };
}

/** Defaults shared by every process; each can be overridden by a SKEIN_* environment variable. */
export interface SkeinDefaults {
  /** Port of the scheduler. SKEIN_SCHEDULER_PORT */
  schedulerPort: number;
  /** Worker heartbeat interval. SKEIN_HEARTBEAT_MS */
  heartbeatMs: number;
  /** A worker silent this long is removed. SKEIN_WORKER_TTL_MS */
  workerTtlMs: number;
  /** Results up to this many bytes travel inline with messages. SKEIN_INLINE_BYTES */
  inlineBytes: number;
  /** Chunk size for streaming values. SKEIN_CHUNK_BYTES */
  chunkBytes: number;
  /** How many times a task may be on a dying worker before it fails. SKEIN_ALLOWED_FAILURES */
  allowedFailures: number;
  /** Tasks per thread to send a worker before queuing on the scheduler. SKEIN_WORKER_SATURATION */
  workerSaturation: number;
  /** How long a worker keeps trying to reach a lost scheduler. SKEIN_DEATH_TIMEOUT_MS */
  deathTimeoutMs: number;
  /**
   * Validation mode: the scheduler and worker state machines check their invariants after every
   * event (slow; for tests). An explicit `validate` option wins. SKEIN_VALIDATE=1
   */
  validate: boolean;
  /**
   * In validation mode, a file every process appends each broken invariant to, one JSON line each
   * (the test setup reads it to fail the test); '' for none. SKEIN_VALIDATE_REPORT
   */
  validateReport: string;
}

function envNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const v = raw === 'inf' ? Infinity : Number(raw);
  if (Number.isNaN(v)) {
    throw new Error(`Environment variable ${name}="${raw}" is not a number; unset it or give a number.`);
  }
  return v;
}

function envFlag(name: string): boolean {
  const raw = (process.env[name] ?? '').trim().toLowerCase();
  if (raw === '' || raw === '0' || raw === 'false') return false;
  if (raw === '1' || raw === 'true') return true;
  throw new Error(`Environment variable ${name}="${process.env[name]}" is not a flag; use 1 or 0 (or unset it).`);
}

export function skeinDefaults(): SkeinDefaults {
  return {
    schedulerPort: envNumber('SKEIN_SCHEDULER_PORT', 8786),
    heartbeatMs: envNumber('SKEIN_HEARTBEAT_MS', 1000),
    workerTtlMs: envNumber('SKEIN_WORKER_TTL_MS', 30_000),
    inlineBytes: envNumber('SKEIN_INLINE_BYTES', 64 * 1024),
    chunkBytes: envNumber('SKEIN_CHUNK_BYTES', 1024 * 1024),
    allowedFailures: envNumber('SKEIN_ALLOWED_FAILURES', 3),
    workerSaturation: envNumber('SKEIN_WORKER_SATURATION', 1.1),
    deathTimeoutMs: envNumber('SKEIN_DEATH_TIMEOUT_MS', 60_000),
    validate: envFlag('SKEIN_VALIDATE'),
    validateReport: process.env['SKEIN_VALIDATE_REPORT'] ?? '',
  };
}

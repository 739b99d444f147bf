import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../../', import.meta.url));
export const SKEIN_BIN = fileURLToPath(new URL('../../skein/dist/cli.js', import.meta.url));
export const SLURM_BIN = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
/** How the jobs start Skein: this checkout's build (the "compute node" is this machine). */
export const SKEIN_COMMAND = `${process.execPath} ${SKEIN_BIN}`;

function slurmLocal(mode: 'start' | 'stop' | 'status'): boolean {
  try {
    execFileSync('bash', [`${REPO}tools/slurm-local.sh`, mode], { stdio: ['ignore', mode === 'status' ? 'ignore' : 'inherit', 'inherit'], timeout: 300_000 });
    return true;
  } catch (err) {
    if (mode === 'status') return false;
    throw err;
  }
}

let startedHere = false;
/** Starts the single-node Slurm (tools/slurm-local.sh) unless it runs already; `stopSlurm` stops only what this started. */
export function startSlurm(): void {
  if (slurmLocal('status')) return;
  slurmLocal('start');
  startedHere = true;
}
export function stopSlurm(): void {
  if (startedHere) slurmLocal('stop');
}

/** The states squeue reports for these jobs (those Slurm still lists). */
export function squeue(ids: readonly string[]): Map<string, { state: string; reason: string }> {
  const out = new Map<string, { state: string; reason: string }>();
  if (ids.length === 0) return out;
  let text = '';
  try {
    text = execFileSync('squeue', ['--noheader', '--states=all', `--jobs=${ids.join(',')}`, '--format=%i|%T|%r'], { encoding: 'utf8' });
  } catch {
    return out; // every id forgotten
  }
  for (const line of text.split('\n')) {
    const [id, state, reason] = line.trim().split('|');
    if (id && state) out.set(id, { state, reason: reason ?? '' });
  }
  return out;
}

const LIVE = new Set(['PENDING', 'CONFIGURING', 'RUNNING', 'COMPLETING', 'SUSPENDED', 'REQUEUED']);
/** The jobs among `ids` that Slurm still runs or queues. */
export function liveJobs(ids: readonly string[]): string[] {
  return [...squeue(ids)].filter(([, s]) => LIVE.has(s.state)).map(([id, s]) => `job ${id} ${s.state}`);
}

export async function until(cond: () => boolean | Promise<boolean>, timeoutMs = 30_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

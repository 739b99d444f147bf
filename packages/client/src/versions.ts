/**
 * client.getVersions and the check at connect (Dask's Client.get_versions and its warning when
 * the client, the scheduler and the workers run different versions).
 */
import { localVersions, versionDifferences, describeDifferences, type Versions } from '@skein/common';
import type { ClusterVersions, SchedulerInfo } from './types.js';

/** What this client process runs: Node, @skein/client and its Skein dependencies, `packages` from the cwd. */
export function clientVersions(packages: readonly string[] = []): Versions {
  return localVersions(import.meta.url, '@skein/client', packages);
}

/** The processes by who they are: 'client', 'scheduler', 'worker <address>'. */
export function processesOf(v: ClusterVersions): Map<string, Versions> {
  const out = new Map<string, Versions>([
    ['client', v.client],
    ['scheduler', v.scheduler],
  ]);
  for (const [address, w] of v.workers) out.set(`worker ${address}`, w);
  return out;
}

/**
 * At connect: warns once (process.emitWarning, type SkeinVersionWarning) when the versions the
 * scheduler's GetInfo carries (its own and each worker's) differ from the client's, naming who
 * differs and what. A scheduler or worker that reports no versions (an older one) is left out.
 */
export function warnOnMismatch(info: SchedulerInfo): void {
  const processes = new Map<string, Versions>([['client', clientVersions()]]);
  if (info.versions) processes.set('scheduler', info.versions);
  for (const w of info.workers) if (w.versions) processes.set(`worker ${w.address}`, w.versions);
  const diffs = versionDifferences(processes);
  if (diffs.length === 0) return;
  process.emitWarning(
    `The client, the scheduler at ${info.address} and its workers run different versions:\n${describeDifferences(diffs)}\n` +
      'See client.getVersions({ check: true }) and "Managing environments" in the README.',
    { type: 'SkeinVersionWarning', code: 'SKEIN_VERSION_MISMATCH' },
  );
}

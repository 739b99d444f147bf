/**
 * NpmInstall with `restartWorkers: true` (a nanny plugin, `@skein/nanny/plugins/npm-install`):
 * the nanny installs the packages into the cluster's npm directory on its host (once per host, under
 * the lock of @skein/core-worker/environment), then restarts its worker (`restart: true`), so a
 * module the worker loads at start (`--module`, `--preload`) sees them. The scheduler reschedules
 * what the old worker was running; results only it held are recomputed. A nanny that joins later
 * installs before it starts its first worker, with no restart. A failure rejects setup with npm's
 * own error output and restarts nothing.
 */
import { InvalidArgumentError } from '@skein/common';
import { checkNpmRequest, installPackages } from '@skein/core-worker/environment';

interface Ctx {
  /** packagesRoot: the directory the nanny's worker's tasks import from (its --packages-dir, else SKEIN_PACKAGES_DIR, else the default). */
  nanny: { readonly packagesRoot: string };
  log: { info(msg: string): void };
}

export default function createNpmInstall(options: unknown) {
  const o = (options ?? {}) as { packages?: unknown; npmOptions?: unknown; id?: unknown; timeoutMs?: unknown };
  const request = checkNpmRequest(o, 'NpmInstall');
  if (typeof o.id !== 'string' || !o.id) throw new InvalidArgumentError('NpmInstall: options.id is missing (build the plugin with NpmInstall() from @skein/client).');
  const id = o.id;
  if (o.timeoutMs !== undefined && !(typeof o.timeoutMs === 'number' && o.timeoutMs >= 0)) throw new InvalidArgumentError(`NpmInstall: options.timeoutMs must be a number of milliseconds, got ${typeof o.timeoutMs}.`);
  const timeoutMs = (o.timeoutMs as number | undefined) || undefined;
  return {
    restart: true,
    async setup(ctx: Ctx): Promise<void> {
      const outcome = await installPackages(ctx.nanny.packagesRoot, { ...request, id }, { timeoutMs });
      ctx.log.info(`${outcome.ran ? 'installed' : 'found installed'} ${request.packages.join(' ')} in ${outcome.directory}; restarting the worker`);
    },
  };
}

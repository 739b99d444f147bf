/**
 * NpmInstall with `restartWorkers: true` (a nanny plugin, `@skein/nanny/plugins/npm-install`):
 * the nanny installs the packages into the cluster's npm directory on its host (once per host, under
 * the lock of @skein/core-worker/environment), then restarts its worker (`restart: true`), so a
 * module the worker loads at start (`--module`, `--preload`) sees them. The scheduler reschedules
 * what the old worker was running; results only it held are recomputed. A nanny that joins later
 * installs before it starts its first worker, with no restart. A failure rejects setup with npm's
 * own error output and restarts nothing.
 */
import { checkNpmInstallOptions, installPackages } from '@skein/core-worker/environment';

interface Ctx {
  /** packagesRoot: the directory the nanny's worker's tasks import from (its --packages-dir, else SKEIN_PACKAGES_DIR, else the default). */
  nanny: { readonly packagesRoot: string };
  log: { info(msg: string): void };
}

export default function createNpmInstall(options: unknown) {
  const { request, timeoutMs } = checkNpmInstallOptions(options);
  return {
    restart: true,
    async setup(ctx: Ctx): Promise<void> {
      const outcome = await installPackages(ctx.nanny.packagesRoot, request, { timeoutMs });
      ctx.log.info(`${outcome.ran ? 'installed' : 'found installed'} ${request.packages.join(' ')} in ${outcome.directory}; restarting the worker`);
    },
  };
}

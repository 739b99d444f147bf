/**
 * The worker side of NpmInstall (a worker plugin, `@skein/core-worker/plugins/npm-install`):
 * installs the packages into this cluster's npm directory on the worker's host, once per host (the
 * host's other workers wait on the lock and report the same outcome). A failure rejects setup with
 * NpmInstallError carrying npm's own error output; the worker keeps running. Running workers see
 * the packages at once: their imports fall back to that directory. Options:
 * `{ packages, npmOptions?, id }` (see @skein/client's NpmInstall).
 */
import { installPackages, checkNpmInstallOptions } from '../environment/npm.js';
import { activatePackages, currentPackagesRoot } from '../runtime/packages.js';

interface Ctx {
  worker: { schedulerAddress: string; address: string; packagesRoot?: string };
  log: { info(msg: string): void };
}

export default function createNpmInstall(options: unknown) {
  const { request, timeoutMs } = checkNpmInstallOptions(options);
  return {
    async setup(ctx: Ctx): Promise<void> {
      const outcome = await installPackages(ctx.worker.packagesRoot ?? currentPackagesRoot(ctx.worker.schedulerAddress), request, { timeoutMs });
      activatePackages();
      ctx.log.info(
        outcome.ran
          ? `installed ${request.packages.join(' ')} into ${outcome.directory}`
          : `${request.packages.join(' ')} already installed into ${outcome.directory} by another worker of this host`,
      );
    },
  };
}

/**
 * @module @skein/core-worker/environment
 * The cluster's packages on a host, for the built-in plugins (NpmInstall, UploadFile,
 * UploadDirectory) and for tools: where they live, the npm install engine (one install per host,
 * under a lock) and the upload writer. Task functions resolve what is installed here through the
 * worker's resolve hook.
 *
 * @example
 * import { clusterPackagesRoot, installPackages } from '@skein/core-worker/environment';
 * const root = clusterPackagesRoot('127.0.0.1', 8786);
 * await installPackages(root, { packages: ['left-pad@1.3.0'], id: 'once' });
 */
export { clusterPackagesRoot, packagesRoot, packagesDirArg, defaultPackagesBase, securePackagesRoot, npmPrefix, uploadsPrefix, PACKAGES_DIR_ENV, PACKAGES_ROOT_ENV, currentPackagesRoot, activatePackages } from '../runtime/packages.js';
export { installPackages, checkNpmRequest, checkNpmInstallOptions, DEFAULT_NPM_FLAGS, type NpmInstallRequest, type NpmInstallOutcome, type NpmInstallOptions } from './npm.js';
export { writeUpload, uploadsDirectory, type UploadedFile } from './uploads.js';

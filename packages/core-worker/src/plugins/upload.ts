/**
 * The worker side of UploadFile and UploadDirectory (a worker plugin, `@skein/core-worker/plugins/upload`):
 * writes the shipped file or folder into this cluster's uploads directory on the worker's host,
 * where tasks import it by name (`await import('helpers.mjs')`, `await import('mylib')`) and find
 * data under `$SKEIN_PACKAGES_ROOT/uploads/node_modules`. Options: `{ name, kind: 'file' | 'directory', files: [{ path, base64 }] }`.
 */
import { InvalidArgumentError } from '@skein/common';
import { writeUpload, type UploadedFile } from '../environment/uploads.js';
import { activatePackages, currentPackagesRoot } from '../runtime/packages.js';

interface Ctx {
  worker: { schedulerAddress: string; packagesRoot?: string };
  log: { info(msg: string): void };
}

export default function createUpload(options: unknown) {
  const o = (options ?? {}) as { name?: unknown; kind?: unknown; files?: unknown };
  if (typeof o.name !== 'string' || (o.kind !== 'file' && o.kind !== 'directory') || !Array.isArray(o.files)) {
    throw new InvalidArgumentError('Upload: options must be { name, kind: "file" | "directory", files } (build the plugin with UploadFile or UploadDirectory from @skein/client).');
  }
  const files = o.files as UploadedFile[];
  const { name, kind } = o as { name: string; kind: 'file' | 'directory' };
  return {
    setup(ctx: Ctx): void {
      const at = writeUpload(ctx.worker.packagesRoot ?? currentPackagesRoot(ctx.worker.schedulerAddress), name, files, kind);
      activatePackages();
      ctx.log.info(`uploaded ${kind} ${name} to ${at}`);
    },
  };
}

/**
 * Size limits of plugin registrations, checked where a registration enters (the client's
 * UploadFile/UploadDirectory, the scheduler's RegisterPlugin, the worker writing an upload), so an
 * oversized one is refused with a clear error instead of failing in a process's gRPC layer.
 */
import { InvalidArgumentError } from './errors.js';
import { DEFAULT_MAX_MESSAGE_BYTES } from './grpc.js';

/** At most this many bytes of file data in one UploadFile / UploadDirectory. */
export const MAX_UPLOAD_BYTES = 32 * 1024 * 1024;

/** The module of the worker plugin behind UploadFile and UploadDirectory. */
export const UPLOAD_PLUGIN_MODULE = '@skein/core-worker/plugins/upload';

/** Room left in a nanny's message for the rest of the SetupPlugin request. */
const NANNY_HEADROOM_BYTES = 16 * 1024;

/** Bytes of data a base64 text decodes to (padding aside). */
function base64Bytes(text: string): number {
  const pad = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  return Math.floor((text.length * 3) / 4) - pad;
}

/**
 * Throws InvalidArgumentError when the registration `spec` is too big: an upload (the upload
 * plugin's options) with more than MAX_UPLOAD_BYTES of data, or a nanny plugin whose module,
 * source and options do not fit a nanny's message limit (1 MiB). `options` is its parsed JSON.
 */
export function checkPluginSpecSize(spec: { name: string; kind: string; module: string; source: string; optionsJson: string }, options: unknown): void {
  if (spec.kind === 'worker' && spec.module === UPLOAD_PLUGIN_MODULE && options && typeof options === 'object') {
    const files = (options as { files?: unknown }).files;
    let total = 0;
    if (Array.isArray(files)) for (const f of files) if (f && typeof (f as { base64?: unknown }).base64 === 'string') total += base64Bytes((f as { base64: string }).base64);
    if (total > MAX_UPLOAD_BYTES) {
      throw new InvalidArgumentError(
        `Plugin ${JSON.stringify(spec.name)}: the upload holds ${total} bytes, more than the limit of ${MAX_UPLOAD_BYTES} (32 MiB): put large data on a shared file system or in the workers' image.`,
      );
    }
  }
  if (spec.kind === 'nanny') {
    const bytes = Buffer.byteLength(spec.module) + Buffer.byteLength(spec.source) + Buffer.byteLength(spec.optionsJson);
    const limit = DEFAULT_MAX_MESSAGE_BYTES.nanny - NANNY_HEADROOM_BYTES;
    if (bytes > limit) {
      throw new InvalidArgumentError(
        `Plugin ${JSON.stringify(spec.name)}: a nanny plugin's module, source and options take ${bytes} bytes, more than a nanny accepts (${limit} bytes: its messages are limited to 1 MiB). Ship the code as a module the nannies can import (a path or package), and data with UploadFile/UploadDirectory or a shared file system.`,
      );
    }
  }
}

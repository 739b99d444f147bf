import { ProtocolVersionError } from './errors.js';

/**
 * The wire protocol version. Peers must share the major number; a minor number says which
 * additions a peer knows (1.1: column forms; 1.2: quoted markers, ENCODING_RAW_UINT8ARRAY,
 * KeyNoWorker, GetWhoHas, WorkerService.GetStory, one `cancelled` answer per cancelled key; 1.3: plugins
 * (RegisterPlugin, UnregisterPlugin, GetPlugins, SetupPlugin, TeardownPlugin), GetVersions and
 * `versions` in hellos and infos, ReportWorkerDeathRequest.expected).
 */
export const PROTOCOL_VERSION = '1.3';

/** Whether a peer announcing `remote` (same major) knows the additions of minor version `minor`. */
export function protocolMinorAtLeast(remote: string, minor: number): boolean {
  const m = Number(remote.split('.')[1]);
  return Number.isInteger(m) && m >= minor;
}

/** Throws ProtocolVersionError when `remote` cannot talk to this side. */
export function checkProtocolVersion(remote: string, who: string): void {
  const major = (v: string) => v.split('.')[0];
  if (!remote || major(remote) !== major(PROTOCOL_VERSION)) {
    throw new ProtocolVersionError(PROTOCOL_VERSION, remote || '(none)', who);
  }
}

import { ProtocolVersionError } from './errors.js';

/** The wire protocol version. Peers must share the major number. */
export const PROTOCOL_VERSION = '1.1';

/** Throws ProtocolVersionError when `remote` cannot talk to this side. */
export function checkProtocolVersion(remote: string, who: string): void {
  const major = (v: string) => v.split('.')[0];
  if (!remote || major(remote) !== major(PROTOCOL_VERSION)) {
    throw new ProtocolVersionError(PROTOCOL_VERSION, remote || '(none)', who);
  }
}

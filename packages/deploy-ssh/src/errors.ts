import { SkeinError, type SkeinErrorOptions } from '@skein/common';

/** The SSH server refused the credentials. */
export class SSHAuthenticationError extends SkeinError {
  readonly host: string;
  readonly username: string;
  constructor(host: string, port: number, username: string, methods: string, options?: SkeinErrorOptions) {
    super(
      'unauthenticated',
      `SSH authentication as ${username}@${host}:${port} was refused (tried: ${methods}). ` +
        `Check the user name and the password, or that the public half of the key is in ~${username}/.ssh/authorized_keys on ${host}.`,
      { ...options, details: { host, port, username, methods } },
    );
    this.host = host;
    this.username = username;
  }
}

/** Nothing answered SSH at that host and port. */
export class SSHHostUnreachableError extends SkeinError {
  readonly host: string;
  readonly port: number;
  constructor(host: string, port: number, reason: string, options?: SkeinErrorOptions) {
    super(
      'unavailable',
      `Cannot reach ${host}:${port} over SSH (${reason}). Check that the host is up and its name resolves, ` +
        `that sshd listens on port ${port} (set the port with connectOptions.port or --ssh-port), and that no firewall blocks it.`,
      { ...options, details: { host, port, reason } },
    );
    this.host = host;
    this.port = port;
  }
}

/** The server's host key is not the one on record. */
export class HostKeyVerificationError extends SkeinError {
  readonly host: string;
  constructor(host: string, port: number, why: string) {
    super(
      'failed_precondition',
      `The SSH host key of ${host}:${port} could not be verified: ${why}. If the host is the one you expect, add its key with ` +
        `\`ssh-keyscan -p ${port} ${host} >> ~/.ssh/known_hosts\` (or pass connectOptions.knownHosts / --known-hosts).`,
      { details: { host, port, why } },
    );
    this.host = host;
  }
}

/** The command that starts Skein is missing on the remote host. */
export class SkeinNotInstalledError extends SkeinError {
  readonly host: string;
  readonly command: string;
  constructor(host: string, command: string, output: string) {
    super(
      'failed_precondition',
      `Skein is not installed on ${host}: "${command}" was not found there. Install it on ${host} with \`npm install -g skein\`, ` +
        `or set remoteCommand (--remote-command) to how Skein is started there, e.g. "node /opt/skein/node_modules/skein/dist/cli.js".` +
        (output ? `\nRemote output:\n${output}` : ''),
      { details: { host, command } },
    );
    this.host = host;
    this.command = command;
  }
}

/** The scheduler's port is taken on the scheduler host. */
export class SchedulerPortInUseError extends SkeinError {
  readonly host: string;
  readonly port: number;
  constructor(host: string, port: number, output: string) {
    super(
      'already_exists',
      `Cannot start the scheduler on ${host}: port ${port} is already in use there. Stop what uses it, or choose another port ` +
        `(schedulerOptions.port / --scheduler-port; 0 picks a free one).` + (output ? `\nRemote output:\n${output}` : ''),
      { details: { host, port } },
    );
    this.host = host;
    this.port = port;
  }
}

/** A remote Skein process exited or stalled before it was ready. */
export class RemoteProcessError extends SkeinError {
  readonly host: string;
  readonly exitCode: number | null;
  constructor(host: string, what: string, exitCode: number | null, output: string, timedOut = false) {
    super(
      timedOut ? 'deadline_exceeded' : 'unavailable',
      (timedOut ? `The ${what} on ${host} did not become ready in time.` : `The ${what} on ${host} exited with code ${exitCode} before it was ready.`) +
        ` Its output:\n${output || '(none)'}`,
      { details: { host, what, exitCode } },
    );
    this.host = host;
    this.exitCode = exitCode;
  }
}

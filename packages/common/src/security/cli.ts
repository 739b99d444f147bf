/**
 * Credentials for the command lines: the `--tls-*`, `--auth-token-file` and
 * `--require-encryption` flags, each falling back to its environment variable, and the private
 * files a process writes for a child it starts. Light: node:fs only, so a CLI can read the flags
 * before it loads gRPC.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Role, Security } from './security.js';

/** The security flags every Skein CLI takes (values as given, paths unchecked). */
export interface SecurityFlags {
  tlsCaFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  authTokenFile?: string;
  requireEncryption?: boolean;
}

/** The flags, their environment variables and what they are for (help texts). */
export const SECURITY_FLAGS = [
  { flag: 'tls-ca-file', env: 'SKEIN_TLS_CA_FILE', value: 'FILE', describe: 'CA certificate (PEM) that signed every certificate of the cluster; with --tls-cert and --tls-key: mutual TLS, tls:// addresses' },
  { flag: 'tls-cert', env: 'SKEIN_TLS_CERT', value: 'FILE', describe: "This process's certificate (PEM), signed by the CA" },
  { flag: 'tls-key', env: 'SKEIN_TLS_KEY', value: 'FILE', describe: "This process's private key (PEM)" },
  { flag: 'auth-token-file', env: 'SKEIN_AUTH_TOKEN_FILE', value: 'FILE', describe: "File holding the cluster's shared token (SKEIN_AUTH_TOKEN: the token itself)" },
  { flag: 'require-encryption', env: 'SKEIN_REQUIRE_ENCRYPTION', value: undefined, describe: 'Refuse to run without TLS (SKEIN_REQUIRE_ENCRYPTION=1)' },
] as const;

/** The environment variables that carry credentials (a child started with explicit flags gets none of them). */
export const SECURITY_ENV = ['SKEIN_TLS_CA_FILE', 'SKEIN_TLS_CERT', 'SKEIN_TLS_KEY', 'SKEIN_AUTH_TOKEN_FILE', 'SKEIN_AUTH_TOKEN', 'SKEIN_REQUIRE_ENCRYPTION'] as const;

/** Whether any security flag was given. */
export function hasSecurityFlags(f: SecurityFlags): boolean {
  return f.tlsCaFile !== undefined || f.tlsCert !== undefined || f.tlsKey !== undefined || f.authTokenFile !== undefined || f.requireEncryption === true;
}

/** The flags that name `f`'s files again (for a child process). */
export function securityFlagArgs(f: SecurityFlags): string[] {
  const args: string[] = [];
  if (f.tlsCaFile !== undefined) args.push('--tls-ca-file', f.tlsCaFile);
  if (f.tlsCert !== undefined) args.push('--tls-cert', f.tlsCert);
  if (f.tlsKey !== undefined) args.push('--tls-key', f.tlsKey);
  if (f.authTokenFile !== undefined) args.push('--auth-token-file', f.authTokenFile);
  if (f.requireEncryption) args.push('--require-encryption');
  return args;
}

/** An environment without the credential variables (a child gets its credentials as flags). */
export function withoutSecurityEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = { ...env };
  for (const k of SECURITY_ENV) delete out[k];
  return out;
}

/** A file of credentials to write (Security.launchFiles). */
interface FileToWrite {
  path: string;
  contents: string;
  mode: number;
}

/** Credential files written into a private temporary directory, and how to remove them. */
export interface PrivateFiles {
  /** The directory (mode 0700). */
  dir: string;
  /** Removes the directory and its files; idempotent. */
  remove(): void;
}

/**
 * Makes a private temporary directory (mode 0700) and writes `files(dir)` into it, each with its
 * own mode (credentials: 0600). For credentials that exist only in memory (Security.temporary())
 * and a child process that needs them as files: never a key in argv or the environment.
 */
export function writePrivateFiles(prefix: string, files: (dir: string) => readonly FileToWrite[]): PrivateFiles {
  const dir = mkdtempSync(join(tmpdir(), prefix)); // mkdtemp makes it 0700
  let removed = false;
  const remove = () => {
    if (removed) return;
    removed = true;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const f of files(dir)) writeFileSync(f.path, f.contents, { mode: f.mode, flag: 'wx' });
  } catch (e) {
    remove();
    throw e;
  }
  return { dir, remove };
}

/**
 * The credential flags for a child process of `role` (a worker a nanny or LocalCluster starts):
 * the files `security` was read from when it was (Security.fromFiles/fromFlags), else its
 * credentials written into a private temporary directory (`files`: remove it when the child is
 * gone). None without security. Never a key or token in argv or the environment.
 */
export function childCredentials(security: Security, role: Role, prefix: string): { args: string[]; files?: PrivateFiles } {
  if (!security.enabled) return { args: [] };
  const named = security.fileArgs();
  if (named) return { args: named };
  let args: string[] = [];
  const files = writePrivateFiles(prefix, (dir) => {
    const launch = security.launchFiles(role, dir);
    args = launch.args;
    return launch.files;
  });
  return { args, files };
}

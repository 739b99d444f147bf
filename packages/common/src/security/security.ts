/**
 * Who may talk to whom: TLS (mutual, every link), an optional shared token, and the roles a
 * certificate grants. One `Security` object per process; every gRPC server and stub, the bulk
 * path and the dashboard take their credentials from it.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ConnectionOptions, PeerCertificate, TlsOptions } from 'node:tls';
import {
  InterceptingCall,
  Metadata,
  ServerCredentials,
  credentials as grpcCredentials,
  type ChannelCredentials,
  type ClientOptions,
  type Interceptor,
} from '@grpc/grpc-js';
import { InvalidArgumentError, PermissionDeniedError, UnauthenticatedError } from '../errors.js';
import { CHANNEL_OPTIONS } from '../grpc.js';
import { grpcTarget, parseAddress, type Address } from '../address.js';
import { issueCertificate, type IssuedCertificate } from './x509.js';
import type { SecurityFlags } from './cli.js';

/** What a process is to the cluster; a certificate names its roles in its OU fields. */
export type Role = 'scheduler' | 'worker' | 'nanny' | 'client';
export const ROLES: readonly Role[] = ['scheduler', 'worker', 'nanny', 'client'];
const ALL_ROLES: ReadonlySet<Role> = new Set(ROLES);
const isRole = (s: string): s is Role => (ROLES as readonly string[]).includes(s);

/** PEM text of a CA bundle, a certificate (chain) and its private key. */
export interface TlsCredentials {
  ca: string;
  cert: string;
  key: string;
}

/** The caller of an RPC, as `Security.authenticate` found it. */
export interface Peer {
  /** What it may do. */
  readonly roles: ReadonlySet<Role>;
  /** The certificate's common name, `token`, or `anonymous` (no security configured). */
  readonly name: string;
  /** False when the cluster has no security and anyone is let in. */
  readonly authenticated: boolean;
}

export interface SecurityFiles {
  /** The certificate authority (PEM) that signed every certificate of the cluster. */
  caFile?: string;
  /** This process's certificate (PEM). */
  certFile?: string;
  /** Its private key (PEM). */
  keyFile?: string;
  /** A file holding the cluster's shared token. */
  tokenFile?: string;
  /** Refuse plaintext links (`tcp://` addresses) when true. */
  requireEncryption?: boolean;
}

export interface SecurityOptions {
  /** TLS credentials: one set for every role, or a set per role (`Security.temporary`). */
  tls?: TlsCredentials | Readonly<Partial<Record<Role, TlsCredentials>>>;
  /** A shared token every caller must present (`authorization: Bearer <token>`). */
  token?: string;
  requireEncryption?: boolean;
}

const TOKEN_HEADER = 'authorization';
const PEER_CERT_NAME = 'skein';

function readText(path: string, what: string, flag: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new InvalidArgumentError(`Cannot read the ${what} ${JSON.stringify(path)} (${flag}): ${(e as Error).message}.`, { cause: e });
  }
}

function checkPem(text: string, label: RegExp, what: string, where: string): void {
  if (!label.test(text)) {
    throw new InvalidArgumentError(`The ${what} in ${where} is not PEM (no "-----BEGIN ${label.source.replace(/\\/g, '')}" line); give a PEM file.`);
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/** The roles a verified peer certificate grants: its OU values that name roles; none: every role. */
export function rolesOfCertificate(cert: Pick<PeerCertificate, 'subject'> | undefined): ReadonlySet<Role> {
  const ou: unknown = cert?.subject?.OU;
  const units = typeof ou === 'string' ? [ou] : Array.isArray(ou) ? (ou as unknown[]).filter((u): u is string => typeof u === 'string') : [];
  const roles = units.filter(isRole);
  return roles.length === 0 ? ALL_ROLES : new Set(roles);
}

export class Security {
  readonly #tls: Readonly<Partial<Record<Role, TlsCredentials>>> | undefined;
  readonly #shared: TlsCredentials | undefined;
  /** Security.temporary(): the CA that issues certificates for combined roles on demand. */
  #issuer: IssuedCertificate | undefined;
  readonly #issued = new Map<string, TlsCredentials>();
  readonly #token: Buffer | undefined;
  readonly #tokenText: string | undefined;
  /** Refuse plaintext links. */
  readonly requireEncryption: boolean;
  /** The files these credentials were read from (Security.fromFiles), for a process started with the same files. */
  #files: Readonly<SecurityFiles> | undefined;

  constructor(o: SecurityOptions = {}) {
    if (o.tls && 'ca' in o.tls && typeof o.tls.ca === 'string') this.#shared = o.tls as TlsCredentials;
    else if (o.tls) this.#tls = o.tls as Partial<Record<Role, TlsCredentials>>;
    if (o.token !== undefined) {
      const t = o.token.trim();
      if (t.length < 16) throw new InvalidArgumentError(`An auth token must be at least 16 characters (got ${t.length}); make one with \`openssl rand -hex 32\`.`);
      if (/[\s,]/.test(t) || /[^\x21-\x7e]/.test(t)) throw new InvalidArgumentError('An auth token must be printable ASCII without spaces or commas.');
      this.#tokenText = t;
      this.#token = digest(t);
    }
    this.requireEncryption = o.requireEncryption ?? false;
    if (this.requireEncryption && !this.tls) {
      throw new InvalidArgumentError('requireEncryption is set but no TLS credentials were given: pass --tls-ca-file, --tls-cert and --tls-key (or use Security.temporary()).');
    }
  }

  /** No TLS, no token: anyone who reaches a port is trusted (the default, fine on loopback). */
  static insecure(): Security {
    return new Security();
  }

  /**
   * A throwaway certificate authority and one certificate per role, in memory: for a cluster
   * whose every process is started by one program (LocalCluster, deployers), as Dask's
   * `Security.temporary()`. Nothing is written to disk until a launch asks for files.
   */
  static temporary(o: { token?: string; requireEncryption?: boolean } = {}): Security {
    const ca = issueCertificate({ subject: { commonName: 'skein-temporary-ca', organization: PEER_CERT_NAME }, ca: true });
    const perRole: Partial<Record<Role, TlsCredentials>> = {};
    for (const role of ROLES) perRole[role] = leafFor(ca, [role]);
    const s = new Security({ tls: perRole, token: o.token, requireEncryption: o.requireEncryption ?? true });
    s.#issuer = ca;
    return s;
  }

  /** A shared token and nothing else (plaintext links: use it on a trusted network or with TLS). */
  static fromToken(token: string): Security {
    return new Security({ token });
  }

  /** Credentials from PEM files and a token file (what the CLIs' --tls-* and --auth-token-file give). */
  static fromFiles(f: SecurityFiles): Security {
    const given = [f.caFile, f.certFile, f.keyFile].filter((x) => x !== undefined).length;
    if (given !== 0 && given !== 3) {
      const missing = [
        [f.caFile, '--tls-ca-file (SKEIN_TLS_CA_FILE)'],
        [f.certFile, '--tls-cert (SKEIN_TLS_CERT)'],
        [f.keyFile, '--tls-key (SKEIN_TLS_KEY)'],
      ].filter(([v]) => v === undefined).map(([, name]) => name);
      throw new InvalidArgumentError(`TLS needs all three of --tls-ca-file, --tls-cert and --tls-key (the CA, this process's certificate and its key); missing: ${missing.join(', ')}.`);
    }
    let tls: TlsCredentials | undefined;
    if (given === 3) {
      const ca = readText(f.caFile!, 'CA file', '--tls-ca-file');
      const cert = readText(f.certFile!, 'certificate file', '--tls-cert');
      const key = readText(f.keyFile!, 'key file', '--tls-key');
      checkPem(ca, /CERTIFICATE/, 'CA', f.caFile!);
      checkPem(cert, /CERTIFICATE/, 'certificate', f.certFile!);
      checkPem(key, /PRIVATE KEY/, 'private key', f.keyFile!);
      tls = { ca, cert, key };
    }
    const token = f.tokenFile === undefined ? undefined : readText(f.tokenFile, 'token file', '--auth-token-file');
    const s = new Security({ tls, token, requireEncryption: f.requireEncryption });
    s.#files = { ...f };
    return s;
  }

  /**
   * The CLI flags that give a process these same credentials by naming the files they were read
   * from, or undefined when some credential is not in a file (in memory, or a token from
   * SKEIN_AUTH_TOKEN): then write `launchFiles` instead.
   */
  fileArgs(): string[] | undefined {
    const f = this.#files;
    if (!f || (this.token && f.tokenFile === undefined)) return undefined;
    const args: string[] = [];
    if (this.tls) args.push('--tls-ca-file', f.caFile!, '--tls-cert', f.certFile!, '--tls-key', f.keyFile!);
    if (this.requireEncryption) args.push('--require-encryption');
    if (this.token) args.push('--auth-token-file', f.tokenFile!);
    return args;
  }

  /**
   * From the environment: SKEIN_TLS_CA_FILE, SKEIN_TLS_CERT, SKEIN_TLS_KEY, SKEIN_AUTH_TOKEN_FILE,
   * SKEIN_AUTH_TOKEN (the token itself), SKEIN_REQUIRE_ENCRYPTION=1. Undefined when none is set.
   */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): Security | undefined {
    const f: SecurityFiles = {
      caFile: env['SKEIN_TLS_CA_FILE'] || undefined,
      certFile: env['SKEIN_TLS_CERT'] || undefined,
      keyFile: env['SKEIN_TLS_KEY'] || undefined,
      tokenFile: env['SKEIN_AUTH_TOKEN_FILE'] || undefined,
      requireEncryption: env['SKEIN_REQUIRE_ENCRYPTION'] === '1' || env['SKEIN_REQUIRE_ENCRYPTION'] === 'true' || undefined,
    };
    const token = env['SKEIN_AUTH_TOKEN'] || undefined;
    if (!f.caFile && !f.certFile && !f.keyFile && !f.tokenFile && !token && !f.requireEncryption) return undefined;
    if (token !== undefined && f.tokenFile !== undefined) {
      throw new InvalidArgumentError('Both SKEIN_AUTH_TOKEN and SKEIN_AUTH_TOKEN_FILE are set: set one.');
    }
    const s = Security.fromFiles(f);
    return token === undefined ? s : s.withToken(token);
  }

  /**
   * What a CLI's flags ask for (`--tls-ca-file --tls-cert --tls-key --auth-token-file
   * --require-encryption`), each flag not given taken from its environment variable (see
   * `fromEnv`); no flag and no variable: `Security.insecure()`. A partial TLS set or an unreadable
   * file is an InvalidArgumentError that names the flag.
   */
  static fromFlags(f: SecurityFlags, env: NodeJS.ProcessEnv = process.env): Security {
    const pick = (v: string | undefined, name: string) => v ?? (env[name] || undefined);
    const tokenFile = pick(f.authTokenFile, 'SKEIN_AUTH_TOKEN_FILE');
    const token = f.authTokenFile === undefined ? env['SKEIN_AUTH_TOKEN'] || undefined : undefined;
    if (token !== undefined && tokenFile !== undefined) {
      throw new InvalidArgumentError('Both SKEIN_AUTH_TOKEN and SKEIN_AUTH_TOKEN_FILE are set: set one (or pass --auth-token-file).');
    }
    const envRequire = env['SKEIN_REQUIRE_ENCRYPTION'] === '1' || env['SKEIN_REQUIRE_ENCRYPTION'] === 'true';
    const files: SecurityFiles = {
      caFile: pick(f.tlsCaFile, 'SKEIN_TLS_CA_FILE'),
      certFile: pick(f.tlsCert, 'SKEIN_TLS_CERT'),
      keyFile: pick(f.tlsKey, 'SKEIN_TLS_KEY'),
      tokenFile,
      requireEncryption: f.requireEncryption === true || envRequire || undefined,
    };
    if (!files.caFile && !files.certFile && !files.keyFile && !files.tokenFile && !token && !files.requireEncryption) return Security.insecure();
    const s = Security.fromFiles(files);
    return token === undefined ? s : s.withToken(token);
  }

  /** The same credentials with another token. */
  withToken(token: string | undefined): Security {
    const s = new Security({ tls: this.#shared ?? this.#tls, token, requireEncryption: this.requireEncryption });
    s.#issuer = this.#issuer;
    if (this.#files) s.#files = { ...this.#files, tokenFile: undefined };
    return s;
  }

  /** TLS on (addresses are `tls://`). */
  get tls(): boolean {
    return this.#shared !== undefined || this.#tls !== undefined;
  }

  /** A shared token is required of every caller. */
  get token(): boolean {
    return this.#token !== undefined;
  }

  /** `tls` or `tcp`: the scheme of this cluster's addresses. */
  get scheme(): 'tcp' | 'tls' {
    return this.tls ? 'tls' : 'tcp';
  }

  /** Any protection at all (TLS or a token). */
  get enabled(): boolean {
    return this.tls || this.token;
  }

  /**
   * The PEMs a process of `role` presents (undefined without TLS). Several roles (a `skein worker`
   * process runs a nanny and its worker) get one certificate granting all of them, issued on
   * demand by a temporary CA; file credentials are one certificate for whatever the process is.
   */
  credentials(role: Role | readonly Role[]): TlsCredentials | undefined {
    if (this.#shared) return this.#shared;
    if (!this.#tls) return undefined;
    const roles = typeof role === 'string' ? [role] : [...new Set(role)].sort();
    if (roles.length === 1 && this.#tls[roles[0]!]) return this.#tls[roles[0]!];
    const id = roles.join(',');
    let c = this.#issued.get(id);
    if (!c && this.#issuer) {
      c = leafFor(this.#issuer, roles);
      this.#issued.set(id, c);
    }
    if (!c) throw new InvalidArgumentError(`These security credentials have no certificate for the ${roles.join(' and ')} role${roles.length > 1 ? 's' : ''}.`);
    return c;
  }

  /**
   * Credentials and options for a grpc-js stub dialing a peer as `role`. With `expect`, the
   * server's certificate must grant that role (a worker's certificate cannot pose as the
   * scheduler). Host names are not checked: the cluster's CA is the trust, as in Dask.
   */
  channel(role: Role | readonly Role[], expect?: Role): { credentials: ChannelCredentials; options: ClientOptions } {
    const options: ClientOptions = { ...CHANNEL_OPTIONS };
    if (this.#tokenText !== undefined) options.interceptors = [tokenInterceptor(this.#tokenText)];
    const c = this.credentials(role);
    if (!c) return { credentials: grpcCredentials.createInsecure(), options };
    // The name sent in the TLS handshake (SNI); hosts are not checked, and an IP address there is
    // not allowed (RFC 6066), so name the cluster instead.
    options['grpc.ssl_target_name_override'] = PEER_CERT_NAME;
    const credentials = grpcCredentials.createSsl(Buffer.from(c.ca), Buffer.from(c.key), Buffer.from(c.cert), {
      checkServerIdentity: (_host, cert) => serverRoleProblem(cert, expect),
    });
    return { credentials, options };
  }

  /**
   * Everything a grpc-js stub needs to dial `address` as `role`: the target, credentials and
   * options. A `tls://` address without TLS credentials is refused with a clear error; with TLS
   * credentials every link is TLS, whatever the scheme written.
   */
  dial(address: string | Address, role: Role | readonly Role[], expect?: Role): { target: string; credentials: ChannelCredentials; options: ClientOptions } {
    const a = typeof address === 'string' ? parseAddress(address) : address;
    if (a.tls && !this.tls) {
      const shown = typeof address === 'string' ? address : `tls://${a.host}:${a.port}`;
      throw new InvalidArgumentError(
        `${shown} is a TLS address but this ${String(role)} has no TLS credentials: pass --tls-ca-file, --tls-cert and --tls-key (or security: Security.fromFiles(...) / the cluster's Security).`,
      );
    }
    return { target: grpcTarget(a), ...this.channel(role, expect) };
  }

  /** Server credentials for a process of `role`: mutual TLS (client certificates are required). */
  serverCredentials(role: Role | readonly Role[]): ServerCredentials {
    const c = this.credentials(role);
    if (!c) return ServerCredentials.createInsecure();
    return ServerCredentials.createSsl(Buffer.from(c.ca), [{ private_key: Buffer.from(c.key), cert_chain: Buffer.from(c.cert) }], true);
  }

  /** node:tls server options (the bulk path): mutual TLS. Undefined without TLS. */
  tlsServerOptions(role: Role | readonly Role[]): TlsOptions | undefined {
    const c = this.credentials(role);
    if (!c) return undefined;
    return { ca: c.ca, cert: c.cert, key: c.key, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.2' };
  }

  /** node:tls client options (the bulk path), checking the server's role as `channel` does. */
  tlsClientOptions(role: Role | readonly Role[], expect?: Role): ConnectionOptions | undefined {
    const c = this.credentials(role);
    if (!c) return undefined;
    return { ca: c.ca, cert: c.cert, key: c.key, minVersion: 'TLSv1.2', checkServerIdentity: (_host, cert) => serverRoleProblem(cert, expect) };
  }

  /** The token to present on a link that is not gRPC (the bulk path), or undefined. */
  tokenText(): string | undefined {
    return this.#tokenText;
  }

  /** Whether `presented` is the cluster's token (constant time). */
  tokenMatches(presented: string | undefined): boolean {
    if (this.#token === undefined) return true;
    if (presented === undefined) return false;
    return timingSafeEqual(digest(presented), this.#token);
  }

  /**
   * Who is calling: the roles of its verified certificate and, when a token is configured, the
   * token's proof. Throws UnauthenticatedError saying what was missing and how to fix it.
   * With no security configured, every caller is an anonymous peer with every role.
   */
  authenticate(call: { metadata: Metadata; getAuthContext?: () => { sslPeerCertificate?: PeerCertificate } | null }, what = 'this call'): Peer {
    if (!this.enabled) return ANONYMOUS;
    if (this.#token !== undefined) {
      const header = call.metadata.get(TOKEN_HEADER)[0];
      const text = typeof header === 'string' ? header : header?.toString('utf8');
      const presented = text?.startsWith('Bearer ') ? text.slice(7) : undefined;
      if (presented === undefined) {
        throw new UnauthenticatedError(`${what} was refused: this cluster requires an auth token and none was presented. Give the client --auth-token-file FILE or SKEIN_AUTH_TOKEN (security: Security.fromToken(token)).`);
      }
      if (!this.tokenMatches(presented)) {
        throw new UnauthenticatedError(`${what} was refused: the auth token presented is not this cluster's. Check --auth-token-file / SKEIN_AUTH_TOKEN.`);
      }
    }
    if (this.tls) {
      const cert = call.getAuthContext?.()?.sslPeerCertificate;
      if (!cert || !cert.subject) {
        throw new UnauthenticatedError(`${what} was refused: this cluster requires a client certificate signed by its CA. Pass --tls-ca-file, --tls-cert and --tls-key (security: Security.fromFiles(...)).`);
      }
      return { roles: rolesOfCertificate(cert), name: String(cert.subject.CN ?? 'unnamed certificate'), authenticated: true };
    }
    return TOKEN_PEER;
  }

  /**
   * The files a launched process of `role` needs (written by the deployer into `dir` on its host,
   * readable only by the owner) and the CLI flags that name them. No key ever goes into argv.
   */
  launchFiles(role: Role | readonly Role[], dir: string): { files: LaunchFile[]; args: string[] } {
    const files: LaunchFile[] = [];
    const args: string[] = [];
    const c = this.credentials(role);
    if (c) {
      const stem = typeof role === 'string' ? role : [...new Set(role)].sort().join('-');
      const ca = join(dir, 'ca.pem');
      const cert = join(dir, `${stem}.pem`);
      const key = join(dir, `${stem}-key.pem`);
      files.push({ path: ca, contents: c.ca, mode: 0o600 }, { path: cert, contents: c.cert, mode: 0o600 }, { path: key, contents: c.key, mode: 0o600 });
      args.push('--tls-ca-file', ca, '--tls-cert', cert, '--tls-key', key);
      if (this.requireEncryption) args.push('--require-encryption');
    }
    if (this.#tokenText !== undefined) {
      const token = join(dir, 'token');
      files.push({ path: token, contents: `${this.#tokenText}\n`, mode: 0o600 });
      args.push('--auth-token-file', token);
    }
    return { files, args };
  }
}

/** A file a deployer writes on the target host before starting a process (credentials: mode 0600). */
export interface LaunchFile {
  path: string;
  contents: string;
  mode: number;
}

function leafFor(ca: IssuedCertificate, roles: readonly Role[]): TlsCredentials {
  const leaf = issueCertificate({
    subject: { commonName: `skein-${roles.join('-')}`, organization: PEER_CERT_NAME, organizationalUnits: roles },
    issuer: ca,
    hosts: ['localhost', '127.0.0.1', '::1'],
  });
  return { ca: ca.cert, cert: leaf.cert, key: leaf.key };
}

const ANONYMOUS: Peer = Object.freeze({ roles: ALL_ROLES, name: 'anonymous', authenticated: false });
const TOKEN_PEER: Peer = Object.freeze({ roles: ALL_ROLES, name: 'token', authenticated: true });

/** Throws PermissionDeniedError unless the peer holds one of `roles`. */
export function requireRole(peer: Peer, roles: Role | readonly Role[], what: string): void {
  const need = typeof roles === 'string' ? [roles] : roles;
  for (const r of need) if (peer.roles.has(r)) return;
  throw new PermissionDeniedError(
    `${what} needs the ${need.join(' or ')} role; the caller (${peer.name}) has ${[...peer.roles].join(', ') || 'none'}. Use a certificate issued for that role.`,
    { details: { need, have: [...peer.roles] } },
  );
}

function serverRoleProblem(cert: PeerCertificate, expect: Role | undefined): Error | undefined {
  if (expect === undefined || rolesOfCertificate(cert).has(expect)) return undefined;
  return new PermissionDeniedError(`The server's certificate (${String(cert.subject?.CN)}) is not a ${expect}'s: refusing to talk to it as one.`);
}

function tokenInterceptor(token: string): Interceptor {
  const value = `Bearer ${token}`;
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        metadata.set(TOKEN_HEADER, value);
        next(metadata, listener);
      },
    });
}

import { createHmac } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import ssh2 from 'ssh2';
import type { ClientChannel, ConnectConfig } from 'ssh2';
import { SkeinError, parseReadyLine, type LaunchFile, type ReadyEvent } from '@skein/common';
import type { ProcessHandle } from '@skein/cluster';
import { HostKeyVerificationError, RemoteProcessError, SSHAuthenticationError, SSHHostUnreachableError } from './errors.js';

/** How to log in to the hosts (each host may override port). */
export interface SSHConnectOptions {
  /** Login name (default: $USER, else root). */
  username?: string;
  /** Password authentication. */
  password?: string;
  /** A private key: its contents, or the path of a key file. Default: ~/.ssh/id_ed25519, id_ecdsa or id_rsa, whichever exists. */
  privateKey?: string | Buffer;
  /** Passphrase of an encrypted private key. */
  passphrase?: string;
  /** SSH port (default 22). */
  port?: number;
  /** known_hosts file to verify host keys against (default ~/.ssh/known_hosts). */
  knownHosts?: string;
  /** Verifies a host key instead of known_hosts (`key` is the raw public key blob). Return true to accept. */
  hostVerifier?: (key: Buffer, host: string, port: number) => boolean;
  /** How long to wait for the connection and login (default 10 s). */
  readyTimeoutMs?: number;
}

interface KnownHost {
  matches(host: string, port: number): boolean;
  type: string;
  key: Buffer;
}

function hostPatterns(host: string, port: number): string[] {
  return port === 22 ? [host, `[${host}]:22`] : [`[${host}]:${port}`];
}

/** Reads an OpenSSH known_hosts file (plain and hashed entries; no @cert-authority / @revoked markers). */
export function parseKnownHosts(text: string): KnownHost[] {
  const out: KnownHost[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith('@')) continue;
    const [names, type, b64] = line.split(/\s+/);
    if (!names || !type || !b64) continue;
    const key = Buffer.from(b64, 'base64');
    if (names.startsWith('|1|')) {
      const [, , salt, hash] = names.split('|');
      if (!salt || !hash) continue;
      const saltBuf = Buffer.from(salt, 'base64');
      out.push({
        type,
        key,
        matches: (host, port) => hostPatterns(host, port).some((p) => createHmac('sha1', saltBuf).update(p).digest('base64') === hash),
      });
    } else {
      const list = names.split(',');
      out.push({ type, key, matches: (host, port) => hostPatterns(host, port).some((p) => list.includes(p)) });
    }
  }
  return out;
}

/** Options compiled once: credentials read, host key policy settled. */
export interface CompiledConnectOptions {
  username: string;
  password: string | undefined;
  privateKey: Buffer | undefined;
  passphrase: string | undefined;
  port: number;
  knownHosts: KnownHost[] | undefined;
  knownHostsPath: string;
  hostVerifier: ((key: Buffer, host: string, port: number) => boolean) | undefined;
  readyTimeoutMs: number;
}

export function compileConnectOptions(o: SSHConnectOptions = {}): CompiledConnectOptions {
  let privateKey: Buffer | undefined;
  if (Buffer.isBuffer(o.privateKey)) privateKey = o.privateKey;
  else if (typeof o.privateKey === 'string') {
    if (o.privateKey.includes('PRIVATE KEY')) privateKey = Buffer.from(o.privateKey);
    else if (existsSync(o.privateKey)) privateKey = readFileSync(o.privateKey);
    else throw new SkeinError('invalid_argument', `The private key file ${o.privateKey} does not exist; pass the path of a key file or its contents.`);
  } else if (o.password === undefined) {
    const found = ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((f) => join(homedir(), '.ssh', f)).find((p) => existsSync(p));
    if (found) privateKey = readFileSync(found);
  }
  const knownHostsPath = o.knownHosts ?? join(homedir(), '.ssh', 'known_hosts');
  let knownHosts: KnownHost[] | undefined;
  if (!o.hostVerifier) {
    if (!existsSync(knownHostsPath)) {
      if (o.knownHosts !== undefined) throw new SkeinError('invalid_argument', `The known_hosts file ${o.knownHosts} does not exist.`);
      knownHosts = [];
    } else knownHosts = parseKnownHosts(readFileSync(knownHostsPath, 'utf8'));
  }
  const port = o.port ?? 22;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new SkeinError('invalid_argument', `The SSH port must be 1-65535, got ${port}.`);
  return {
    username: o.username ?? process.env['USER'] ?? 'root',
    password: o.password,
    privateKey,
    passphrase: o.passphrase,
    port,
    knownHosts,
    knownHostsPath,
    hostVerifier: o.hostVerifier,
    readyTimeoutMs: o.readyTimeoutMs ?? 10_000,
  };
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNRESET', 'EHOSTDOWN']);

/** Opens an SSH connection, with every failure turned into a typed error that says what to do. */
export function connectSSH(host: string, port: number, o: CompiledConnectOptions): Promise<ssh2.Client> {
  return new Promise((resolve, reject) => {
    const conn = new ssh2.Client();
    let hostKeyProblem: string | undefined;
    const methods = [o.privateKey ? 'publickey' : '', o.password !== undefined ? 'password' : '', process.env['SSH_AUTH_SOCK'] ? 'agent' : '']
      .filter(Boolean)
      .join(', ');
    const known = o.knownHosts?.filter((k) => k.matches(host, port));
    const config: ConnectConfig = {
      host,
      port,
      username: o.username,
      readyTimeout: o.readyTimeoutMs,
      keepaliveInterval: 15_000,
      keepaliveCountMax: 4,
      hostVerifier: (key: Buffer) => {
        if (o.hostVerifier) {
          const ok = o.hostVerifier(key, host, port);
          if (!ok) hostKeyProblem = 'the hostVerifier refused its key';
          return ok;
        }
        if (!known || known.length === 0) {
          hostKeyProblem = `it is not in ${o.knownHostsPath}`;
          return false;
        }
        if (known.some((k) => k.key.equals(key))) return true;
        hostKeyProblem = `its key differs from the one in ${o.knownHostsPath} (the host was reinstalled, or someone is in the middle)`;
        return false;
      },
    };
    if (known && known.length > 0) config.algorithms = { serverHostKey: [...new Set(known.map((k) => k.type))] as never };
    if (o.privateKey) config.privateKey = o.privateKey;
    if (o.passphrase !== undefined) config.passphrase = o.passphrase;
    if (o.password !== undefined) config.password = o.password;
    if (process.env['SSH_AUTH_SOCK'] && !o.privateKey && o.password === undefined) config.agent = process.env['SSH_AUTH_SOCK'];
    conn.once('ready', () => {
      conn.removeAllListeners('error');
      conn.on('error', () => undefined); // later failures show up as closed channels
      resolve(conn);
    });
    conn.once('error', (err: Error & { level?: string; code?: string }) => {
      // Errors after the first (the socket closing after a failed handshake) are expected.
      conn.on('error', () => undefined);
      conn.end();
      if (hostKeyProblem) reject(new HostKeyVerificationError(host, port, hostKeyProblem));
      else if (err.level === 'client-authentication') reject(new SSHAuthenticationError(host, port, o.username, methods || 'none', { cause: err }));
      else if (err.level === 'client-timeout') reject(new SSHHostUnreachableError(host, port, `no SSH handshake within ${o.readyTimeoutMs} ms`, { cause: err }));
      else if (err.level === 'client-dns' || (err.code && UNREACHABLE.has(err.code))) reject(new SSHHostUnreachableError(host, port, err.code ?? err.message, { cause: err }));
      else reject(new SkeinError('unavailable', `The SSH connection to ${host}:${port} failed: ${err.message}`, { cause: err }));
    });
    conn.connect(config);
  });
}

/** Quotes one word for a POSIX shell. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Runs a short command and returns its exit code and output; `input` goes to its stdin (file
 * contents stay off every command line, where `ps` on the host would show them).
 */
export function execOnce(conn: ssh2.Client, command: string, timeoutMs = 10_000, input?: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new SkeinError('deadline_exceeded', `The remote command "${command}" did not finish within ${timeoutMs} ms.`)), timeoutMs);
    timer.unref();
    conn.exec(command, (err, stream) => {
      if (err) {
        clearTimeout(timer);
        reject(new SkeinError('unavailable', `Could not run "${command}" over SSH: ${err.message}`, { cause: err }));
        return;
      }
      let output = '';
      let code: number | null = null;
      stream.on('data', (d: Buffer) => (output += d.toString()));
      stream.stderr.on('data', (d: Buffer) => (output += d.toString()));
      stream.on('exit', (c: number | null) => (code = c));
      stream.on('close', () => {
        clearTimeout(timer);
        resolve({ code, output });
      });
      if (input !== undefined) stream.end(input);
    });
  });
}

export interface RemoteProcessOptions {
  host: string;
  port: number;
  /** Name in logs and handles. */
  name: string;
  /** What it is in messages: 'scheduler', 'worker w-1'. */
  what: string;
  /** The command line, already quoted. */
  command: string;
  /**
   * Credentials to place on the host first (a launch with security): called with a private
   * directory made there (`mktemp -d`, mode 0700), it returns the command (whose flags name the
   * files) and the files, each written through the SSH channel's stdin (never a command line)
   * with its mode. The directory is removed when the process stops.
   */
  credentials?: (dir: string) => { command: string; files: readonly LaunchFile[] };
  /** Directory to run in (created when missing); '' for the login directory. */
  workDir: string;
  env: Record<string, string>;
  /** Whose JSON ready line (`--ready-json`, see `parseReadyLine`) means "ready": the event is kept as `ready`. */
  readyRole: ReadyEvent['role'];
  startTimeoutMs: number;
  /** Cancels the start: the process group is stopped and `start` rejects with a `cancelled` error. */
  signal?: AbortSignal;
  /** Told where the start is (connecting, waiting for the ready line). */
  report?: (reason: string) => void;
  /** Classifies output + exit code of a process that died before ready into a typed error. */
  explain(code: number | null, output: string): SkeinError;
}

/**
 * One remote command in its own process group, on its own SSH connection. The remote shell prints
 * its pid (the process group id: sshd makes every session a new session), starts a watcher that
 * kills the group when the SSH channel closes (so a lost connection leaves no orphans), and execs
 * the command. `close()` signals the whole group: TERM, then KILL after `graceMs`.
 */
export class RemoteProcess implements ProcessHandle {
  address = '';
  pgid = 0;
  /** The process's JSON ready line, once it printed it. */
  ready: ReadyEvent | undefined;
  readonly exited: Promise<number | null>;
  readonly lines: string[] = [];
  #stream: ClientChannel | undefined;
  #exitCode: number | null | undefined;
  #resolveExit!: (code: number | null) => void;
  #closePromise: Promise<void> | undefined;
  #listeners = new Set<() => void>();
  /** The private directory of the credential files on the host ('' without). */
  #credentialsDir = '';
  #removing: Promise<void> | undefined;
  #command: string;

  private constructor(
    private readonly conn: ssh2.Client,
    readonly o: RemoteProcessOptions,
  ) {
    this.exited = new Promise((r) => (this.#resolveExit = r));
    this.#command = o.command;
  }

  get name(): string {
    return this.o.name;
  }

  get host(): string {
    return this.o.host;
  }

  /** Connects, starts the command and waits for its ready line. */
  static async start(o: RemoteProcessOptions, connect: () => Promise<ssh2.Client>): Promise<RemoteProcess> {
    o.report?.(`connecting to ${o.host} over SSH`);
    const conn = await connect();
    if (o.signal?.aborted) {
      conn.end();
      throw new SkeinError('cancelled', `The start of the ${o.what} on ${o.host} was cancelled.`);
    }
    o.report?.(`started on ${o.host}, waiting for its ready line`);
    const p = new RemoteProcess(conn, o);
    try {
      if (o.credentials) await p.#placeCredentials(o.credentials);
      await p.#start();
      return p;
    } catch (err) {
      await p.close().catch(() => undefined);
      throw err;
    }
  }

  logs(): string[] {
    return this.lines.slice();
  }

  /** Makes a private directory on the host and writes the credential files into it. */
  async #placeCredentials(credentials: NonNullable<RemoteProcessOptions['credentials']>): Promise<void> {
    const made = await execOnce(this.conn, 'umask 077 && mktemp -d "${TMPDIR:-/tmp}/skein-credentials-XXXXXXXX"');
    const dir = made.output.trim().split('\n').pop() ?? '';
    if (made.code !== 0 || !dir.startsWith('/')) {
      throw new SkeinError('unavailable', `Could not make a private directory for the ${this.o.what}'s credentials on ${this.o.host} (mktemp -d): ${made.output.trim()}`);
    }
    this.#credentialsDir = dir;
    const { command, files } = credentials(dir);
    // All files in one command: name, mode and base64 contents on stdin, one line each (printf is
    // a shell builtin: the contents appear on no command line).
    const lines: string[] = [];
    for (const f of files) {
      const name = f.path.slice(dir.length + 1);
      if (!f.path.startsWith(`${dir}/`) || !/^[A-Za-z0-9._-]+$/.test(name)) {
        throw new SkeinError('internal', `A credential file of the ${this.o.what} (${f.path}) is not a plain file name in its directory ${dir}.`);
      }
      lines.push(name, (f.mode & 0o777).toString(8), Buffer.from(f.contents, 'utf8').toString('base64'));
    }
    const script =
      `umask 077 && cd ${shellQuote(dir)} && while IFS= read -r name && IFS= read -r mode && IFS= read -r data; do ` +
      `printf '%s' "$data" | base64 -d > "$name" && chmod "$mode" "$name" || exit 1; done`;
    const wrote = await execOnce(this.conn, script, 10_000, `${lines.join('\n')}\n`);
    if (wrote.code !== 0) throw new SkeinError('unavailable', `Could not write the ${this.o.what}'s credential files into ${dir} on ${this.o.host}: ${wrote.output.trim()}`);
    this.#command = command;
  }

  /** Removes the credential files (the process has stopped); the same promise for every caller, so none ends the connection under it. */
  #removeCredentials(): Promise<void> {
    const dir = this.#credentialsDir;
    this.#removing ??= dir ? execOnce(this.conn, `rm -rf -- ${shellQuote(dir)}`).then(() => undefined, () => undefined) : Promise.resolve();
    return this.#removing;
  }

  #keep(line: string): void {
    this.lines.push(line);
    if (this.lines.length > 500) this.lines.shift();
    for (const f of [...this.#listeners]) f();
  }

  #script(): string {
    const env = Object.entries(this.o.env).map(([k, v]) => `${k}=${shellQuote(v)}`);
    const cmd = env.length > 0 ? `env ${env.join(' ')} ${this.#command}` : this.#command;
    const cd = this.o.workDir ? `mkdir -p ${shellQuote(this.o.workDir)} && cd ${shellQuote(this.o.workDir)} || exit 1; ` : '';
    // fd 3 keeps the channel's stdin for the watcher (a background job's own stdin is /dev/null).
    return (
      `echo "SKEIN_PGID $$"; ${cd}exec 3<&0; ` +
      `( while read -r _ <&3; do :; done; kill -TERM -- -$$ ) >/dev/null 2>&1 & ` +
      `exec ${cmd} </dev/null 3<&-`
    );
  }

  #start(): Promise<void> {
    const o = this.o;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err: SkeinError) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(err);
      };
      const timer = setTimeout(() => {
        fail(new RemoteProcessError(o.host, o.what, null, this.lines.slice(-20).join('\n'), true));
      }, o.startTimeoutMs);
      o.signal?.addEventListener('abort', () => fail(new SkeinError('cancelled', `The start of the ${o.what} on ${o.host} was cancelled.`)), { once: true });
      this.conn.exec(this.#script(), (err, stream) => {
        if (err) {
          fail(new SkeinError('unavailable', `Could not start the ${o.what} on ${o.host} over SSH: ${err.message}`, { cause: err }));
          this.#resolveExit(null);
          return;
        }
        this.#stream = stream;
        createInterface({ input: stream }).on('line', (line) => {
          const pg = /^SKEIN_PGID (\d+)$/.exec(line);
          if (pg && !this.pgid) {
            this.pgid = Number(pg[1]);
            return;
          }
          const ready = this.ready ? undefined : parseReadyLine(line);
          if (ready?.role === o.readyRole) this.ready = ready;
          this.#keep(line);
        });
        createInterface({ input: stream.stderr }).on('line', (line) => this.#keep(line));
        stream.on('exit', (code: number | null) => {
          this.#exitCode = code;
        });
        stream.on('close', () => {
          // let the line readers drain first
          setImmediate(() => {
            const code = this.#exitCode ?? null;
            this.#resolveExit(code);
            fail(o.explain(code, this.lines.slice(-20).join('\n')));
            void this.#removeCredentials().finally(() => this.conn.end());
          });
        });
        const check = () => {
          if (settled) return;
          if (this.ready) {
            settled = true;
            clearTimeout(timer);
            this.#listeners.delete(check);
            resolve();
          }
        };
        this.#listeners.add(check);
      });
    });
  }

  /** Stops the remote process group: TERM, then KILL after `graceMs`. Idempotent. */
  close(graceMs = 10_000): Promise<void> {
    this.#closePromise ??= (async () => {
      const done = async (ms: number) => {
        let timer: NodeJS.Timeout | undefined;
        const t = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
        const ok = await Promise.race([this.exited.then(() => true), t]);
        clearTimeout(timer);
        return ok;
      };
      if (this.#stream && this.#exitCode === undefined) {
        if (this.pgid) await execOnce(this.conn, `kill -TERM -- -${this.pgid} 2>/dev/null; true`).catch(() => undefined);
        this.#stream.end(); // EOF: the watcher signals the group too
        if (!(await done(graceMs)) && this.pgid) {
          await execOnce(this.conn, `kill -KILL -- -${this.pgid} 2>/dev/null; true`).catch(() => undefined);
          await done(5_000);
        }
      }
      // (A command that ended on its own closed its channel: the watcher then signalled its group.)
      // The group's other members (a nanny's worker) may still be on their way out when its leader
      // has exited: wait until the whole group is gone (KILL it after 5 s), so that close()
      // resolving means nothing of it runs any more.
      if (this.pgid) {
        const g = this.pgid;
        await execOnce(
          this.conn,
          `i=0; while [ $i -lt 50 ]; do kill -0 -- -${g} 2>/dev/null || exit 0; sleep 0.1; i=$((i+1)); done; kill -KILL -- -${g} 2>/dev/null; exit 0`,
          15_000,
        ).catch(() => undefined);
      }
      await this.#removeCredentials();
      this.conn.end();
      this.#resolveExit(this.#exitCode ?? null);
    })();
    return this.#closePromise;
  }
}

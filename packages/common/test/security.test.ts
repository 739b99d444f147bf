import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { Metadata } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, PermissionDeniedError, Security, UnauthenticatedError, requireRole, rolesOfCertificate } from '../src/index.js';
import { issueCertificate } from '../src/security/x509.js';

const TOKEN = 'a-token-of-thirty-two-characters';

function withToken(token?: string): Metadata {
  const md = new Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return md;
}

describe('Security.temporary()', () => {
  it('issues a CA and one certificate per role that OpenSSL accepts, the role in the OU', () => {
    const s = Security.temporary();
    expect(s.tls).toBe(true);
    expect(s.scheme).toBe('tls');
    const ca = new X509Certificate(s.credentials('scheduler')!.ca);
    expect(ca.ca).toBe(true);
    for (const role of ['scheduler', 'worker', 'nanny', 'client'] as const) {
      const c = s.credentials(role)!;
      const x = new X509Certificate(c.cert);
      expect(x.checkIssued(ca)).toBe(true);
      expect(x.verify(ca.publicKey)).toBe(true);
      expect(x.subject).toContain(`OU=${role}`);
      expect(x.ca).toBe(false);
    }
  });

  it('mutual TLS: the server sees the client role, an unsigned client is refused, a wrong server role is refused', async () => {
    const s = Security.temporary();
    const other = Security.temporary();
    const seen: string[] = [];
    const server = createServer(s.tlsServerOptions('worker')!, (sock: TLSSocket) => {
      seen.push([...rolesOfCertificate(sock.getPeerCertificate())].join(','));
      sock.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const talk = (opts: object) =>
      new Promise<string>((resolve, reject) => {
        const c = connect({ host: '127.0.0.1', port, ...opts }, () => undefined);
        let text = '';
        c.on('data', (d) => (text += String(d)));
        c.on('end', () => resolve(text));
        c.on('error', reject);
      });
    try {
      expect(await talk(s.tlsClientOptions('client', 'worker')!)).toBe('ok');
      expect(seen).toEqual(['client']);
      await expect(talk(other.tlsClientOptions('client')!)).rejects.toThrow();
      await expect(talk(s.tlsClientOptions('client', 'scheduler')!)).rejects.toThrow(/not a scheduler/);
    } finally {
      server.close();
    }
  });

  it('a certificate with no role OU grants every role (one certificate for the whole cluster)', () => {
    const ca = issueCertificate({ subject: { commonName: 'ca' }, ca: true });
    const leaf = issueCertificate({ subject: { commonName: 'node', organization: 'example' }, issuer: ca });
    const x = new X509Certificate(leaf.cert);
    expect(x.subject).not.toContain('OU=');
    expect([...rolesOfCertificate({ subject: { CN: 'node', O: 'example' } as never })].sort()).toEqual(['client', 'nanny', 'scheduler', 'worker']);
    expect([...rolesOfCertificate({ subject: { OU: ['worker', 'nanny', 'other'] } as never })].sort()).toEqual(['nanny', 'worker']);
  });
});

describe('authenticate and requireRole', () => {
  it('with no security, every caller is anonymous with every role', () => {
    const peer = Security.insecure().authenticate({ metadata: new Metadata() });
    expect(peer.authenticated).toBe(false);
    expect(peer.roles.size).toBe(4);
  });

  it('a token: missing and wrong tokens are refused with what to do; the right one passes', () => {
    const s = Security.fromToken(TOKEN);
    expect(() => s.authenticate({ metadata: withToken() }, 'Submitting')).toThrow(UnauthenticatedError);
    expect(() => s.authenticate({ metadata: withToken() }, 'Submitting')).toThrow(/none was presented.*--auth-token-file/);
    expect(() => s.authenticate({ metadata: withToken('b-token-of-thirty-two-characters') })).toThrow(/not this cluster's/);
    expect(s.authenticate({ metadata: withToken(TOKEN) }).authenticated).toBe(true);
  });

  it('TLS: a call without a verified peer certificate is refused; roles come from it', () => {
    const s = Security.temporary();
    expect(() => s.authenticate({ metadata: new Metadata(), getAuthContext: () => ({}) })).toThrow(/client certificate/);
    const peer = s.authenticate({ metadata: new Metadata(), getAuthContext: () => ({ sslPeerCertificate: { subject: { CN: 'skein-worker', OU: 'worker' } } as never }) });
    expect([...peer.roles]).toEqual(['worker']);
    expect(() => requireRole(peer, 'nanny', 'ReportWorkerDeath')).toThrow(PermissionDeniedError);
    expect(() => requireRole(peer, 'nanny', 'ReportWorkerDeath')).toThrow(/needs the nanny role.*skein-worker/);
    expect(() => requireRole(peer, ['client', 'worker'], 'GetData')).not.toThrow();
  });
});

describe('Security from files, the environment and for launches', () => {
  it('reads PEM files, refusing partial sets and non-PEM files clearly', () => {
    const dir = mkdtempSync(join(tmpdir(), 'skein-sec-'));
    const t = Security.temporary().credentials('worker')!;
    writeFileSync(join(dir, 'ca.pem'), t.ca);
    writeFileSync(join(dir, 'w.pem'), t.cert);
    writeFileSync(join(dir, 'w.key'), t.key);
    writeFileSync(join(dir, 'junk'), 'hello');
    writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
    const s = Security.fromFiles({ caFile: join(dir, 'ca.pem'), certFile: join(dir, 'w.pem'), keyFile: join(dir, 'w.key'), tokenFile: join(dir, 'token') });
    expect(s.tls && s.token).toBe(true);
    expect(s.credentials('client')).toEqual(t); // one certificate for whatever the process is
    expect(() => Security.fromFiles({ caFile: join(dir, 'ca.pem') })).toThrow(/all three of --tls-ca-file, --tls-cert and --tls-key/);
    expect(() => Security.fromFiles({ caFile: join(dir, 'junk'), certFile: join(dir, 'w.pem'), keyFile: join(dir, 'w.key') })).toThrow(/is not PEM/);
    expect(() => Security.fromFiles({ caFile: join(dir, 'nope'), certFile: join(dir, 'w.pem'), keyFile: join(dir, 'w.key') })).toThrow(/Cannot read the CA file/);
    expect(Security.fromEnv({ SKEIN_AUTH_TOKEN_FILE: join(dir, 'token') })!.tokenMatches(TOKEN)).toBe(true);
    expect(Security.fromEnv({})).toBeUndefined();
  });

  it('refuses short tokens and requireEncryption without TLS', () => {
    expect(() => Security.fromToken('short')).toThrow(InvalidArgumentError);
    expect(() => new Security({ token: TOKEN, requireEncryption: true })).toThrow(/requireEncryption.*no TLS/);
  });

  it('launchFiles: files with mode 0600 and flags naming them, never the key itself', () => {
    const s = Security.temporary({ token: TOKEN });
    const { files, args } = s.launchFiles('worker', '/run/skein');
    expect(files.map((f) => f.path)).toEqual(['/run/skein/ca.pem', '/run/skein/worker.pem', '/run/skein/worker-key.pem', '/run/skein/token']);
    expect(files.every((f) => f.mode === 0o600)).toBe(true);
    expect(args).toEqual(['--tls-ca-file', '/run/skein/ca.pem', '--tls-cert', '/run/skein/worker.pem', '--tls-key', '/run/skein/worker-key.pem', '--require-encryption', '--auth-token-file', '/run/skein/token']);
    expect(args.join(' ')).not.toContain('PRIVATE KEY');
    expect(args.join(' ')).not.toContain(TOKEN);
  });

  it('fromFlags: each flag, else its environment variable; partial sets name what is missing', () => {
    const dir = mkdtempSync(join(tmpdir(), 'skein-sec-'));
    const t = Security.temporary().credentials('worker')!;
    writeFileSync(join(dir, 'ca.pem'), t.ca);
    writeFileSync(join(dir, 'w.pem'), t.cert);
    writeFileSync(join(dir, 'w.key'), t.key);
    writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
    const files = { tlsCaFile: join(dir, 'ca.pem'), tlsCert: join(dir, 'w.pem'), tlsKey: join(dir, 'w.key') };
    expect(Security.fromFlags({}, {}).enabled).toBe(false);
    const mixed = Security.fromFlags({ tlsCaFile: files.tlsCaFile }, { SKEIN_TLS_CERT: files.tlsCert, SKEIN_TLS_KEY: files.tlsKey, SKEIN_AUTH_TOKEN: TOKEN });
    expect(mixed.tls && mixed.token && mixed.tokenMatches(TOKEN)).toBe(true);
    expect(() => Security.fromFlags({ tlsCert: files.tlsCert }, {})).toThrow(/missing: --tls-ca-file \(SKEIN_TLS_CA_FILE\), --tls-key \(SKEIN_TLS_KEY\)/);
    expect(() => Security.fromFlags({ requireEncryption: true }, {})).toThrow(/requireEncryption is set but no TLS/);
    // a flag wins over its variable
    expect(Security.fromFlags({ authTokenFile: join(dir, 'token') }, { SKEIN_AUTH_TOKEN: 'another-token-of-enough-length' }).tokenMatches(TOKEN)).toBe(true);
  });

  it('fileArgs: the flags naming the files the credentials came from, or undefined when some are only in memory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'skein-sec-'));
    const s = Security.temporary({ token: TOKEN });
    const { files, args } = s.launchFiles('worker', dir);
    for (const f of files) writeFileSync(f.path, f.contents, { mode: f.mode });
    const read = Security.fromFlags({ tlsCaFile: args[1], tlsCert: args[3], tlsKey: args[5], requireEncryption: true, authTokenFile: args[8] }, {});
    expect(read.fileArgs()).toEqual(args);
    expect(s.fileArgs()).toBeUndefined(); // in memory: a launch must write files
    expect(read.withToken(TOKEN).fileArgs()).toBeUndefined(); // a token from SKEIN_AUTH_TOKEN is in no file
    // a temporary Security keeps issuing combined certificates after withToken
    expect(s.withToken(undefined).credentials(['worker', 'nanny'])).toBeDefined();
  });
});

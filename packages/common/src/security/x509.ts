/**
 * Just enough X.509 to issue a throwaway certificate authority and its leaf certificates
 * (`Security.temporary()`): DER encoding of a version 3 certificate, ECDSA P-256 keys and
 * SHA-256 signatures from node:crypto. Parsing and verifying stay with OpenSSL (node:tls).
 */
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';

// --- DER ---------------------------------------------------------------------------------------

function lengthBytes(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), lengthBytes(body.length), body]);
}

const seq = (...c: Buffer[]) => tlv(0x30, ...c);
const set = (...c: Buffer[]) => tlv(0x31, ...c);
const octets = (b: Buffer) => tlv(0x04, b);
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));
const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0]));
/** A context-specific tag: `[n]` constructed (explicit) or primitive (implicit). */
const tagged = (n: number, constructed: boolean, ...c: Buffer[]) => tlv((constructed ? 0xa0 : 0x80) | n, ...c);

function bitString(bytes: Buffer, unusedBits = 0): Buffer {
  return tlv(0x03, Buffer.from([unusedBits]), bytes);
}

/** A non-negative INTEGER from big-endian bytes (a leading zero keeps it positive). */
function unsignedInteger(bytes: Buffer): Buffer {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  const b = bytes.subarray(i);
  return tlv(0x02, b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
}

function oid(dotted: string): Buffer {
  const parts = dotted.split('.').map(Number);
  const out: number[] = [parts[0]! * 40 + parts[1]!];
  for (const p of parts.slice(2)) {
    const chunk: number[] = [p & 0x7f];
    for (let v = Math.floor(p / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime up to 2049, GeneralizedTime after (RFC 5280 4.1.2.5). */
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z';
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2), 'ascii')) : tlv(0x18, Buffer.from(iso, 'ascii'));
}

// --- certificates ------------------------------------------------------------------------------

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  organizationalUnit: '2.5.4.11',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
};

export interface DistinguishedName {
  commonName: string;
  organization?: string;
  /** One RDN each, in order (Skein puts a process's role here). */
  organizationalUnits?: readonly string[];
}

function name(dn: DistinguishedName): Buffer {
  const rdn = (type: string, value: string) => set(seq(oid(type), utf8(value)));
  const parts: Buffer[] = [];
  if (dn.organization !== undefined) parts.push(rdn(OID.organization, dn.organization));
  for (const ou of dn.organizationalUnits ?? []) parts.push(rdn(OID.organizationalUnit, ou));
  parts.push(rdn(OID.commonName, dn.commonName));
  return seq(...parts);
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), bool(true), octets(value)) : seq(oid(id), octets(value));
}

function ipBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  // Expand "::" and write eight 16-bit groups.
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g || '0', 16), i * 2));
  return out;
}

function keyId(spki: Buffer): Buffer {
  return createHash('sha1').update(spki).digest();
}

export interface KeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export interface IssuedCertificate {
  /** PEM certificate. */
  cert: string;
  /** PEM private key (PKCS#8). */
  key: string;
  keys: KeyPair;
  subject: DistinguishedName;
  /** DER SubjectPublicKeyInfo, for the authority key identifier of what this one signs. */
  spki: Buffer;
}

export interface IssueOptions {
  subject: DistinguishedName;
  /** The issuer; omitted: self-signed. */
  issuer?: IssuedCertificate;
  /** A certificate authority (may sign others), or a leaf. */
  ca?: boolean;
  /** DNS names and IP addresses (subjectAltName) of a leaf. */
  hosts?: readonly string[];
  notBefore?: Date;
  notAfter?: Date;
}

export function newKeyPair(): KeyPair {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

function pem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

/** Issues a certificate: a self-signed authority when no issuer is given, else one it signs. */
export function issueCertificate(o: IssueOptions): IssuedCertificate {
  const keys = newKeyPair();
  const spki = keys.publicKey.export({ type: 'spki', format: 'der' });
  const issuer = o.issuer;
  const signer = issuer?.keys.privateKey ?? keys.privateKey;
  const notBefore = o.notBefore ?? new Date(Date.now() - 60 * 60_000);
  const notAfter = o.notAfter ?? new Date(Date.now() + 365 * 24 * 60 * 60_000);
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  // The subject public key bits sit in the BIT STRING at the end of the SPKI; RFC 5280's key
  // identifier method 1 hashes them, but any stable unique value works: hash the whole SPKI.
  const extensions: Buffer[] = [
    extension(OID.basicConstraints, true, o.ca ? seq(bool(true)) : seq()),
    // CA: digitalSignature, keyCertSign, cRLSign (bits 0, 5, 6); leaf: digitalSignature.
    extension(OID.keyUsage, true, o.ca ? bitString(Buffer.from([0x86]), 1) : bitString(Buffer.from([0x80]), 7)),
    extension(OID.subjectKeyIdentifier, false, octets(keyId(spki))),
  ];
  if (issuer) extensions.push(extension(OID.authorityKeyIdentifier, false, seq(tagged(0, false, keyId(issuer.spki)))));
  if (!o.ca) {
    extensions.push(extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth))));
    const hosts = o.hosts ?? [];
    if (hosts.length > 0) {
      const names = hosts.map((h) => (isIPv4(h) || isIPv6(h) ? tagged(7, false, ipBytes(h)) : tagged(2, false, Buffer.from(h, 'ascii'))));
      extensions.push(extension(OID.subjectAltName, false, seq(...names)));
    }
  }
  const algorithm = seq(oid(OID.ecdsaWithSha256));
  const tbs = seq(
    tagged(0, true, unsignedInteger(Buffer.from([2]))),
    unsignedInteger(serial),
    algorithm,
    name(issuer?.subject ?? o.subject),
    seq(time(notBefore), time(notAfter)),
    name(o.subject),
    spki,
    tagged(3, true, seq(...extensions)),
  );
  const signature = sign('sha256', tbs, signer);
  const der = seq(tbs, algorithm, bitString(signature));
  return {
    cert: pem('CERTIFICATE', der),
    key: keys.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    keys,
    subject: o.subject,
    spki,
  };
}

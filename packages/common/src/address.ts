import { isIPv4, isIPv6 } from 'node:net';
import { networkInterfaces } from 'node:os';
import { InvalidArgumentError } from './errors.js';

export interface Address {
  host: string;
  port: number;
  /** A `tls://` address: the link is TLS (see Security). */
  tls?: boolean;
}

const FORMS = 'expected tcp://HOST:PORT, tls://HOST:PORT, HOST:PORT, HOST or [IPV6]:PORT, for example tcp://10.0.0.5:8786';

function bad(original: string, why: string): InvalidArgumentError {
  return new InvalidArgumentError(`Bad address ${JSON.stringify(original)}: ${why}; ${FORMS}.`, { details: { address: original } });
}

const LABEL = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

/** Why `host` (no brackets) is not an IPv4 address or a host name, or undefined when it is one. */
function hostProblem(host: string): string | undefined {
  if (/^[\d.]+$/.test(host)) return isIPv4(host) ? undefined : `"${host}" is not a valid IPv4 address`;
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  if (name.length > 253) return `the host name is longer than 253 characters`;
  for (const label of name.split('.')) {
    if (!LABEL.test(label)) {
      return label === ''
        ? `the host "${host}" has an empty part between dots`
        : `the host "${host}" has a character a host name cannot have (letters, digits, "-", "_" and "." only)`;
    }
  }
  return undefined;
}

/**
 * Parses `tcp://host:port`, `host:port`, `host`, `[v6]:port`, a bare IPv6 address, or `:port`
 * (any interface). The default port fills in a missing one. Anything else (a second colon, an
 * unknown scheme, a path, a bad host name or port...) throws InvalidArgumentError at once, naming
 * what is wrong and the forms expected.
 */
export function parseAddress(text: string, defaultPort?: number): Address {
  if (typeof text !== 'string') throw new InvalidArgumentError(`An address must be a string, got ${text === null ? 'null' : typeof text}; ${FORMS}.`);
  const original = text;
  let s = text.trim();
  if (s === '') throw bad(original, 'it is empty');
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(s);
  let tls = false;
  if (scheme) {
    const name = scheme[1]!.toLowerCase();
    tls = name === 'tls';
    if (name !== 'tcp' && name !== 'tls') {
      throw new InvalidArgumentError(
        `Unsupported address scheme "${scheme[1]}://" in "${original}": use tcp://HOST:PORT (plaintext) or tls://HOST:PORT (TLS), for example tcp://10.0.0.5:8786.`,
        { details: { address: original } },
      );
    }
    s = s.slice(scheme[0].length);
    if (s === '') throw bad(original, `nothing follows "${scheme[0]}"`);
  } else if (s.includes('://')) {
    throw bad(original, `"${s.slice(0, s.indexOf('://') + 3)}" is not a scheme`);
  }
  if (/[\s/?#@]/.test(s)) {
    throw bad(original, /\s/.test(s) ? 'it contains white space' : `it contains "${/[/?#@]/.exec(s)![0]}" (no user, path or query is allowed)`);
  }
  let host: string;
  let portText: string | undefined;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) throw bad(original, 'the "[" of an IPv6 address is not closed by "]"');
    host = s.slice(1, close);
    if (!isIPv6(host)) throw bad(original, `"${host}" in brackets is not an IPv6 address`);
    const rest = s.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw bad(original, `"${rest}" follows the "]" (only ":PORT" may)`);
      portText = rest.slice(1);
      if (portText === '') throw bad(original, 'the ":" after the host has no port after it');
    }
  } else {
    const first = s.indexOf(':');
    if (first >= 0 && s.indexOf(':', first + 1) >= 0) {
      if (!isIPv6(s)) throw bad(original, 'it has more than one ":" (write an IPv6 address in brackets, [::1]:8786)');
      host = s;
    } else if (first >= 0) {
      host = s.slice(0, first);
      portText = s.slice(first + 1);
      if (portText === '') throw bad(original, 'the ":" after the host has no port after it');
    } else {
      host = s;
    }
    if (host === '') {
      host = '0.0.0.0';
    } else if (!isIPv6(host)) {
      const why = hostProblem(host);
      if (why !== undefined) throw bad(original, why);
    }
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) {
      throw new InvalidArgumentError(`Address "${original}" has no port: expected tcp://HOST:PORT, for example tcp://${host.includes(':') ? `[${host}]` : host}:8786.`, {
        details: { address: original },
      });
    }
    port = defaultPort;
  } else {
    port = Number(portText);
    if (!/^\d{1,5}$/.test(portText) || port > 65535) {
      throw new InvalidArgumentError(`Bad port "${portText}" in address "${original}": a port is a number from 0 to 65535.`, { details: { address: original } });
    }
  }
  return tls ? { host, port, tls } : { host, port };
}

/**
 * Checks a host to listen on or advertise (`--host`): an IPv4 address, a host name, or an IPv6
 * address (brackets optional). Returns it without brackets; throws InvalidArgumentError saying
 * what is wrong (`what` names the option).
 */
export function parseHost(text: string, what = 'host'): string {
  const s = typeof text === 'string' ? text.trim() : '';
  const inner = s.startsWith('[') && s.endsWith(']') ? s.slice(1, -1) : s;
  if (isIPv6(inner)) return inner;
  const why = s === '' ? 'it is empty' : s.includes(':') ? 'a host has no port (give the port separately) and an IPv6 address must be valid' : hostProblem(s);
  if (why !== undefined) {
    throw new InvalidArgumentError(`Bad ${what} ${JSON.stringify(text)}: ${why}; expected an IPv4 address, a host name or an IPv6 address, for example 10.0.0.5.`, {
      details: { host: text },
    });
  }
  return s;
}

/** `tcp://host:port`, or `tls://host:port` for a TLS address (or when `tls` says so). */
export function formatAddress(a: Address, tls = a.tls ?? false): string {
  return `${tls ? 'tls' : 'tcp'}://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
}

/** The `host:port` target string grpc-js dials. */
export function grpcTarget(address: string | Address): string {
  const a = typeof address === 'string' ? parseAddress(address) : address;
  const host = a.host === '0.0.0.0' ? '127.0.0.1' : a.host;
  return `${host.includes(':') ? `[${host}]` : host}:${a.port}`;
}

/** The IPv4 address of a network interface (`--interface eth0`). */
export function interfaceAddress(name: string): string {
  const nics = networkInterfaces();
  const entries = Object.hasOwn(nics, name) ? nics[name] : undefined; // own entries: a name is user input
  if (!entries) {
    throw new InvalidArgumentError(
      `No network interface named "${name}". Available: ${Object.keys(nics).join(', ') || '(none)'}.`,
    );
  }
  const v4 = entries.find((e) => e.family === 'IPv4') ?? entries[0];
  if (!v4) throw new InvalidArgumentError(`Network interface "${name}" has no address.`);
  return v4.address;
}

/** An address other machines can use to reach a service bound to `host` (0.0.0.0 → a real IP). */
export function contactHost(host: string): string {
  if (host !== '0.0.0.0' && host !== '::' && host !== '') return host;
  for (const entries of Object.values(networkInterfaces())) {
    for (const e of entries ?? []) {
      if (e.family === 'IPv4' && !e.internal) return e.address;
    }
  }
  return '127.0.0.1';
}

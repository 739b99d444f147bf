import { networkInterfaces } from 'node:os';
import { InvalidArgumentError } from './errors.js';

export interface Address {
  host: string;
  port: number;
}

/**
 * Parses `tcp://host:port`, `host:port` or `:port`. The default port fills in a missing one.
 * Throws InvalidArgumentError naming the address and the expected form.
 */
export function parseAddress(text: string, defaultPort?: number): Address {
  const original = text;
  let s = text.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(s);
  if (scheme) {
    if (scheme[1]!.toLowerCase() !== 'tcp') {
      throw new InvalidArgumentError(
        `Unsupported address scheme "${scheme[1]}://" in "${original}": use tcp://HOST:PORT, for example tcp://10.0.0.5:8786.`,
      );
    }
    s = s.slice(scheme[0].length);
  }
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(s);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
  } else {
    const i = s.lastIndexOf(':');
    if (i >= 0 && s.indexOf(':') === i) {
      host = s.slice(0, i);
      portText = s.slice(i + 1);
    } else {
      host = s;
    }
  }
  if (host === '') host = '0.0.0.0';
  if (/[\s/]/.test(host)) {
    throw new InvalidArgumentError(`Bad host "${host}" in address "${original}": expected tcp://HOST:PORT, for example tcp://10.0.0.5:8786.`);
  }
  let port: number;
  if (portText === undefined || portText === '') {
    if (defaultPort === undefined) {
      throw new InvalidArgumentError(`Address "${original}" has no port: expected tcp://HOST:PORT, for example tcp://${host}:8786.`);
    }
    port = defaultPort;
  } else {
    port = Number(portText);
    if (!/^\d+$/.test(portText) || !Number.isInteger(port) || port < 0 || port > 65535) {
      throw new InvalidArgumentError(`Bad port "${portText}" in address "${original}": a port is a number from 0 to 65535.`);
    }
  }
  return { host, port };
}

/** `tcp://host:port` */
export function formatAddress(a: Address): string {
  return `tcp://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
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

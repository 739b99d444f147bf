/**
 * Preloaded into every pod process (`NODE_OPTIONS=--import <this file>`): gives the process the
 * pod's view of the network without touching the program it runs.
 *   - listening on every interface (0.0.0.0, ::, no host) listens on the pod's loopback IP;
 *   - DNS lookups of Service names (`svc`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`)
 *     resolve to the Service's ClusterIP, read from the hosts file the emulator keeps up to date;
 *   - `os.hostname()` is the pod name.
 * Node built-ins only.
 */
import dns from 'node:dns';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';

const podIP = process.env['KUBE_EMULATOR_POD_IP'];
const podName = process.env['KUBE_EMULATOR_POD_NAME'];
const namespace = process.env['KUBE_EMULATOR_NAMESPACE'] ?? 'default';
const hostsFile = process.env['KUBE_EMULATOR_HOSTS'];

function serviceIP(name: string): string | undefined {
  if (!hostsFile) return undefined;
  let hosts: Record<string, string>;
  try {
    hosts = JSON.parse(fs.readFileSync(hostsFile, 'utf8')) as Record<string, string>;
  } catch {
    return undefined;
  }
  const n = name.replace(/\.$/, '');
  // The pod's resolv.conf search path: <ns>.svc.cluster.local svc.cluster.local cluster.local.
  for (const candidate of [n, `${n}.${namespace}.svc.cluster.local`, `${n}.svc.cluster.local`, `${n}.cluster.local`]) {
    const ip = hosts[candidate];
    if (ip !== undefined && Object.hasOwn(hosts, candidate)) return ip;
  }
  return undefined;
}

type LookupCb = (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;
const origLookup = dns.lookup.bind(dns);
function lookup(hostname: string, options: unknown, callback?: unknown): void {
  const cb = (typeof options === 'function' ? options : callback) as LookupCb;
  const opts = (typeof options === 'object' && options !== null ? options : typeof options === 'number' ? { family: options } : {}) as dns.LookupOptions;
  const ip = serviceIP(hostname);
  if (ip === undefined) {
    (origLookup as (h: string, o: dns.LookupOptions, c: LookupCb) => void)(hostname, opts, cb);
    return;
  }
  process.nextTick(() => (opts.all ? cb(null, [{ address: ip, family: 4 }]) : cb(null, ip, 4)));
}
(dns as { lookup: unknown }).lookup = lookup;
const origPromiseLookup = dns.promises.lookup.bind(dns.promises);
(dns.promises as { lookup: unknown }).lookup = async (hostname: string, options?: dns.LookupOptions | number) => {
  const ip = serviceIP(hostname);
  if (ip === undefined) return origPromiseLookup(hostname, (options ?? {}) as dns.LookupOptions);
  const opts = typeof options === 'object' && options !== null ? options : {};
  return opts.all ? [{ address: ip, family: 4 }] : { address: ip, family: 4 };
};

if (podIP) {
  const wildcard = (h: unknown) => h === undefined || h === null || h === '' || h === '0.0.0.0' || h === '::';
  const origListen = net.Server.prototype.listen;
  net.Server.prototype.listen = function (this: net.Server, ...args: unknown[]) {
    const [a, b] = args;
    if (typeof a === 'object' && a !== null && !('fd' in a) && !('path' in a && (a as { path?: unknown }).path)) {
      const o = a as net.ListenOptions;
      if (wildcard(o.host)) args[0] = { ...o, host: podIP, ipv6Only: false };
    } else if (typeof a === 'number' || (typeof a === 'string' && /^\d+$/.test(a))) {
      if (typeof b === 'function' || b === undefined) args.splice(1, 0, podIP);
      else if (wildcard(b)) args[1] = podIP;
    }
    return (origListen as (...x: unknown[]) => net.Server).apply(this, args);
  } as typeof net.Server.prototype.listen;
}

// Connections to the cluster network (Services, other pods: 127.x) leave from the pod's IP, as a
// pod's traffic does; the kube-proxy can then tell pods from the machine outside the cluster.
if (podIP) {
  const origConnect = net.Socket.prototype.connect;
  const inCluster = (host: unknown) => typeof host === 'string' && (/^127\./.test(host) || serviceIP(host) !== undefined);
  net.Socket.prototype.connect = function (this: net.Socket, ...args: unknown[]) {
    const first = args[0];
    const opts = (Array.isArray(first) ? first[0] : first) as net.TcpNetConnectOpts | undefined;
    if (opts && typeof opts === 'object' && opts.port !== undefined && !opts.localAddress && inCluster(opts.host ?? 'localhost') && opts.host !== '127.0.0.1' && opts.host !== 'localhost') {
      opts.localAddress = podIP;
    }
    return (origConnect as (...x: unknown[]) => net.Socket).apply(this, args);
  } as typeof net.Socket.prototype.connect;
}

if (podName) (os as { hostname: () => string }).hostname = () => podName;

// Named imports of the built-ins (`import { hostname } from 'node:os'`) see the patched functions too.
(await import('node:module')).syncBuiltinESMExports();

import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Duplex } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { WebSocketServer, type WebSocket } from 'ws';
import { isReady, type ApiServer, type StoreEvent } from './server.js';
import { labelsMatch, now, parseLabelSelector, type Obj } from './util.js';

/** What an image runs: its ENTRYPOINT and CMD, and commands it provides by name. */
export interface ImageSpec {
  /** The ENTRYPOINT (argv): `command` in a container replaces it. */
  entrypoint?: string[];
  /** The CMD: `args` in a container replaces it. */
  cmd?: string[];
  /** Programs of the image by name, e.g. { skein: [node, '/path/cli.js'] }: `command: ['skein', ...]` runs them. */
  commands?: Record<string, string[]>;
  /** Environment of the image. */
  env?: Record<string, string>;
  /** No process: the pod goes Running and Ready at once (kwok's fake pods). */
  fake?: boolean;
}

export interface KubeletOptions {
  /** Images by reference: an exact `repo:tag`, or a prefix ending in `*` (`skein:*`). Any other image fails to pull. */
  images: Record<string, ImageSpec>;
  /** Added to every pod process's environment (after the pod's own: SKEIN_LOG_LEVEL for tests ...). */
  env?: Record<string, string>;
  /** Where pod file systems go (default: a temp dir). */
  root?: string;
  /** The longest probe period and initial delay, ms (default 250: tests need not wait seconds). */
  maxProbePeriodMs?: number;
  /** The first crash-loop back-off, ms (doubles up to 5 s; default 250). */
  backoffMs?: number;
  /**
   * Service ClusterIPs answer pods only (connections from 127.42.x.y), as from a machine outside
   * the cluster network (default false: the test process can dial them too).
   */
  isolateServiceNetwork?: boolean;
  /** A LoadBalancer Service gets its ingress IP after this long (default 0; null: never, as a cloud without one). */
  loadBalancerDelayMs?: number | null;
}

interface ContainerRuntime {
  spec: Obj;
  image: ImageSpec | undefined;
  proc: ChildProcess | undefined;
  logs: string[];
  previousLogs: string[];
  restartCount: number;
  state: Obj;
  lastState: Obj;
  ready: boolean;
  started: boolean;
  probe: NodeJS.Timeout | undefined;
  restartTimer: NodeJS.Timeout | undefined;
  followers: Set<(line: string) => void>;
}

interface PodRuntime {
  uid: string;
  ns: string;
  name: string;
  ip: string;
  root: string;
  mounts: Map<string, string>;
  containers: ContainerRuntime[];
  terminating: boolean;
  killTimer: NodeJS.Timeout | undefined;
  done: boolean;
  fake: boolean;
}

// The compiled shim (this file runs from dist/, or from src/ under vitest).
const SHIM = fileURLToPath(new URL('../dist/shim.js', import.meta.url));
const LOG_LINES = 5_000;

function matchImage(images: Record<string, ImageSpec>, ref: string): ImageSpec | undefined {
  if (Object.hasOwn(images, ref)) return images[ref];
  for (const [pattern, spec] of Object.entries(images)) if (pattern.endsWith('*') && ref.startsWith(pattern.slice(0, -1))) return spec;
  return undefined;
}

/** `$(VAR)` expansion of Kubernetes (`$$` escapes; an unknown variable stays as written). */
export function expand(text: string, env: Record<string, string>): string {
  return text.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (m, name: string | undefined) => (m === '$$' ? '$' : name !== undefined && Object.hasOwn(env, name) ? env[name]! : m));
}

/**
 * The kubelet, kube-proxy and cloud controller of one node: runs each scheduled pod's containers
 * as local processes on the pod's own loopback address (127.42.x.y), with readiness probes,
 * restart policy, termination grace, logs and Secret volumes as files; forwards Service
 * ClusterIPs to ready endpoints; serves `pods/{name}/log` and `pods/{name}/portforward`.
 */
export class Kubelet {
  readonly pods = new Map<string, PodRuntime>();
  readonly #proxies = new Map<string, Server>();
  readonly #root: string;
  readonly #hostsFile: string;
  #nextIP = Math.floor(Math.random() * 60_000) + 256;
  #unsubscribe: (() => void) | undefined;
  #wss = new WebSocketServer({ noServer: true });
  #closed = false;

  constructor(
    readonly api: ApiServer,
    readonly options: KubeletOptions,
  ) {
    this.#root = options.root ?? mkdtempSync(join(tmpdir(), 'kube-emulator-'));
    this.#hostsFile = join(this.#root, 'hosts.json');
    writeFileSync(this.#hostsFile, '{}');
  }

  start(): void {
    this.api.podRunning = (pod) => {
      const rt = this.pods.get(pod['metadata']['uid']);
      return !!rt && !rt.done && !rt.fake && rt.containers.some((c) => c.proc && c.proc.exitCode === null && c.proc.signalCode === null);
    };
    this.api.onLogs = (pod, q, res) => this.#logs(pod, q, res);
    this.api.onUpgrade = (req, socket, head) => this.#upgrade(req, socket, head);
    this.#unsubscribe = this.api.onEvent((e) => setImmediate(() => this.#onEvent(e)));
    for (const svc of this.api.list('services')) this.#syncService(svc);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    const exits: Promise<void>[] = [];
    for (const rt of this.pods.values()) exits.push(this.#stop(rt, 0));
    await Promise.all(exits);
    for (const s of this.#proxies.values()) s.close();
    this.#proxies.clear();
    this.#wss.close();
    if (!this.options.root) rmSync(this.#root, { recursive: true, force: true });
  }

  /** Kills a pod's container process as a crash would (SIGKILL to its process group). */
  kill(namespace: string, pod: string, signal: NodeJS.Signals = 'SIGKILL'): boolean {
    for (const rt of this.pods.values()) {
      if (rt.ns === namespace && rt.name === pod) {
        for (const c of rt.containers) if (c.proc?.pid) killGroup(c.proc, signal);
        return true;
      }
    }
    return false;
  }

  /** The pids of every live pod process. */
  pids(): number[] {
    const out: number[] = [];
    for (const rt of this.pods.values()) for (const c of rt.containers) if (c.proc?.pid && c.proc.exitCode === null && c.proc.signalCode === null) out.push(c.proc.pid);
    return out;
  }

  #onEvent(e: StoreEvent): void {
    if (this.#closed) return;
    if (e.res.resource === 'services') {
      if (e.type === 'DELETED') this.#dropService(e.obj);
      else this.#syncService(e.obj);
      this.#writeHosts();
      return;
    }
    if (e.res.resource !== 'pods') return;
    const pod = e.obj;
    const uid = pod['metadata']['uid'] as string;
    const rt = this.pods.get(uid);
    if (e.type === 'DELETED') {
      if (rt) void this.#stop(rt, 0);
      return;
    }
    if (pod['metadata']['deletionTimestamp']) {
      if (rt && !rt.terminating) void this.#stop(rt, Number(pod['metadata']['deletionGracePeriodSeconds'] ?? 30));
      return;
    }
    if (!rt && pod['spec']['nodeName'] && pod['status']?.['phase'] === 'Pending' && !pod['status']?.['podIP']) this.#startPod(pod);
  }

  // ---- pods ----
  #allocateIP(): string {
    for (;;) {
      const n = this.#nextIP++ % 65_024;
      const ip = `127.42.${(n >> 8) + 1}.${(n & 255) || 1}`;
      if (![...this.pods.values()].some((p) => p.ip === ip)) return ip;
    }
  }

  #startPod(pod: Obj): void {
    const ns = pod['metadata']['namespace'] as string;
    const name = pod['metadata']['name'] as string;
    const rt: PodRuntime = {
      uid: pod['metadata']['uid'],
      ns,
      name,
      ip: this.#allocateIP(),
      root: mkdtempSync(join(this.#root, `${ns}-${name}-`)),
      mounts: new Map(),
      containers: (pod['spec']['containers'] as Obj[]).map((spec) => ({
        spec,
        image: matchImage(this.options.images, String(spec['image'])),
        proc: undefined,
        logs: [],
        previousLogs: [],
        restartCount: 0,
        state: { waiting: { reason: 'ContainerCreating' } },
        lastState: {},
        ready: false,
        started: false,
        probe: undefined,
        restartTimer: undefined,
        followers: new Set(),
      })),
      terminating: false,
      killTimer: undefined,
      done: false,
      fake: false,
    };
    this.pods.set(rt.uid, rt);
    rt.fake = rt.containers.every((c) => c.image?.fake);
    // Volumes: Secrets and ConfigMaps as files, emptyDirs as directories, under the pod's root.
    try {
      this.#mountVolumes(rt, pod);
    } catch (err) {
      for (const c of rt.containers) c.state = { waiting: { reason: 'CreateContainerConfigError', message: (err as Error).message } };
      this.#publish(rt, pod);
      return;
    }
    for (const c of rt.containers) {
      if (!c.image) {
        c.state = { waiting: { reason: 'ErrImagePull', message: `failed to pull and unpack image "${c.spec['image']}": failed to resolve reference "${c.spec['image']}": not found` } };
        setTimeout(() => {
          if (rt.done || rt.terminating) return;
          c.state = { waiting: { reason: 'ImagePullBackOff', message: `Back-off pulling image "${c.spec['image']}"` } };
          this.#publish(rt);
        }, 200).unref();
      } else if (c.image.fake) {
        c.state = { running: { startedAt: now() } };
        c.started = true;
        c.ready = true;
      } else this.#run(rt, c, pod);
    }
    this.#publish(rt, pod);
  }

  #mountVolumes(rt: PodRuntime, pod: Obj): void {
    const volumes = new Map<string, Obj>(((pod['spec']['volumes'] ?? []) as Obj[]).map((v) => [String(v['name']), v]));
    // The pod's fsGroup owns Secret and ConfigMap files and may read them (0600 becomes 0640), as the kubelet does.
    const fsGroup = pod['spec']['securityContext']?.['fsGroup'] as number | undefined;
    for (const c of rt.containers) {
      for (const m of (c.spec['volumeMounts'] ?? []) as Obj[]) {
        const v = volumes.get(String(m['name']));
        if (!v) throw new Error(`volume "${m['name']}" of container ${c.spec['name']} is not defined in the pod's volumes`);
        const mountPath = String(m['mountPath']);
        const host = join(rt.root, 'fs', mountPath);
        mkdirSync(host, { recursive: true });
        rt.mounts.set(mountPath, host);
        const files = (source: Obj | undefined, data: Obj, decode: boolean, mode: number) => {
          const items = source?.['items'] as Obj[] | undefined;
          const entries: Array<[string, string, number]> = items
            ? items.map((i) => [String(i['key']), String(i['path']), Number(i['mode'] ?? mode)])
            : Object.keys(data).map((k) => [k, k, mode]);
          for (const [key, path, fileMode] of entries) {
            if (!Object.hasOwn(data, key)) throw new Error(`couldn't find key ${key} in ${decode ? 'Secret' : 'ConfigMap'}`);
            const file = join(host, path);
            mkdirSync(dirname(file), { recursive: true });
            writeFileSync(file, decode ? Buffer.from(String(data[key]), 'base64') : String(data[key]));
            if (fsGroup !== undefined) {
              try {
                chownSync(file, process.getuid?.() ?? 0, fsGroup);
              } catch {
                // not root: the test user keeps the file (its mode still shows the group's read bit)
              }
            }
            chmodSync(file, fsGroup === undefined ? fileMode : fileMode | 0o440);
          }
        };
        if (v['secret']) {
          const s = this.api.get('secrets', rt.ns, String(v['secret']['secretName']));
          if (!s) throw new Error(`secret "${v['secret']['secretName']}" not found`);
          files(v['secret'], s['data'] ?? {}, true, Number(v['secret']['defaultMode'] ?? 0o644));
        } else if (v['configMap']) {
          const cm = this.api.get('configmaps', rt.ns, String(v['configMap']['name']));
          if (!cm) throw new Error(`configmap "${v['configMap']['name']}" not found`);
          files(v['configMap'], cm['data'] ?? {}, false, Number(v['configMap']['defaultMode'] ?? 0o644));
        }
      }
    }
  }

  /** Rewrites container paths under a mount into the pod's root. */
  #path(rt: PodRuntime, text: string): string {
    let out = text;
    for (const [mountPath, host] of [...rt.mounts].sort((a, b) => b[0].length - a[0].length)) {
      out = out.split(mountPath.endsWith('/') ? mountPath : `${mountPath}/`).join(`${host}/`);
      if (out === mountPath) out = host;
    }
    return out;
  }

  #env(rt: PodRuntime, c: ContainerRuntime, pod: Obj): Record<string, string> {
    const env: Record<string, string> = { ...(c.image?.env ?? {}) };
    const field = (path: string): string => {
      const m = path.match(/^metadata\.(labels|annotations)\['(.+)'\]$/);
      if (m) return String(pod['metadata'][m[1]!]?.[m[2]!] ?? '');
      switch (path) {
        case 'metadata.name':
          return rt.name;
        case 'metadata.namespace':
          return rt.ns;
        case 'metadata.uid':
          return rt.uid;
        case 'status.podIP':
          return rt.ip;
        case 'status.hostIP':
          return '127.0.0.1';
        case 'spec.nodeName':
          return 'emulator-node';
        case 'spec.serviceAccountName':
          return String(pod['spec']['serviceAccountName'] ?? 'default');
        default:
          throw new Error(`unsupported fieldRef ${path}`);
      }
    };
    for (const e of (c.spec['env'] ?? []) as Obj[]) {
      const name = String(e['name']);
      if (e['value'] !== undefined) env[name] = expand(String(e['value']), env);
      else if (e['valueFrom']?.['fieldRef']) env[name] = field(String(e['valueFrom']['fieldRef']['fieldPath']));
      else if (e['valueFrom']?.['resourceFieldRef']) env[name] = String(c.spec['resources']?.['limits']?.[String(e['valueFrom']['resourceFieldRef']['resource']).replace(/^limits\./, '')] ?? '');
      else if (e['valueFrom']?.['secretKeyRef']) {
        const ref = e['valueFrom']['secretKeyRef'];
        const s = this.api.get('secrets', rt.ns, String(ref['name']));
        const v = s?.['data']?.[String(ref['key'])];
        if (v !== undefined) env[name] = Buffer.from(String(v), 'base64').toString();
        else if (!ref['optional']) throw new Error(`secret "${ref['name']}" key ${ref['key']} not found`);
      } else if (e['valueFrom']?.['configMapKeyRef']) {
        const ref = e['valueFrom']['configMapKeyRef'];
        const v = this.api.get('configmaps', rt.ns, String(ref['name']))?.['data']?.[String(ref['key'])];
        if (v !== undefined) env[name] = String(v);
        else if (!ref['optional']) throw new Error(`configmap "${ref['name']}" key ${ref['key']} not found`);
      }
    }
    for (const [k, v] of Object.entries(env)) env[k] = this.#path(rt, v);
    return env;
  }

  #run(rt: PodRuntime, c: ContainerRuntime, pod: Obj): void {
    let podEnv: Record<string, string>;
    try {
      podEnv = this.#env(rt, c, pod);
    } catch (err) {
      c.state = { waiting: { reason: 'CreateContainerConfigError', message: (err as Error).message } };
      return;
    }
    const image = c.image!;
    const command = (c.spec['command'] as string[] | undefined) ?? image.entrypoint ?? [];
    const args = (c.spec['args'] as string[] | undefined) ?? (c.spec['command'] ? [] : (image.cmd ?? []));
    let argv = [...command, ...args].map((a) => this.#path(rt, expand(String(a), podEnv)));
    const program = argv[0] !== undefined && image.commands && Object.hasOwn(image.commands, argv[0]) ? image.commands[argv[0]]! : undefined;
    if (program) argv = [...program, ...argv.slice(1)];
    if (argv.length === 0) {
      c.state = { waiting: { reason: 'CreateContainerError', message: 'no command specified' } };
      return;
    }
    const nodeOptions = `--import ${pathToFileURL(SHIM).href}`;
    const env: Record<string, string> = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: rt.root,
      HOSTNAME: rt.name,
      KUBERNETES_SERVICE_HOST: '127.0.0.1',
      KUBERNETES_SERVICE_PORT: new URL(this.api.url).port,
      ...podEnv,
      ...(this.options.env ?? {}),
      KUBE_EMULATOR_POD_IP: rt.ip,
      KUBE_EMULATOR_POD_NAME: rt.name,
      KUBE_EMULATOR_NAMESPACE: rt.ns,
      KUBE_EMULATOR_HOSTS: this.#hostsFile,
      NODE_OPTIONS: [podEnv['NODE_OPTIONS'], nodeOptions].filter(Boolean).join(' '),
    };
    const cwd = c.spec['workingDir'] ? this.#path(rt, String(c.spec['workingDir'])) : rt.root;
    mkdirSync(cwd, { recursive: true });
    const proc = spawn(argv[0]!, argv.slice(1), { cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    c.proc = proc;
    c.started = true;
    c.state = { running: { startedAt: now() } };
    const onLine = (line: string) => {
      c.logs.push(`${new Date().toISOString()} ${line}`);
      if (c.logs.length > LOG_LINES) c.logs.splice(0, c.logs.length - LOG_LINES);
      for (const f of c.followers) f(line);
    };
    for (const stream of [proc.stdout!, proc.stderr!]) {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (d: string) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
      stream.on('end', () => buf && onLine(buf));
    }
    proc.on('error', (err) => onLine(`kube-emulator: cannot start ${argv[0]}: ${err.message}`));
    proc.on('close', (code, signal) => this.#exited(rt, c, code, signal));
    this.#startProbe(rt, c);
  }

  #startProbe(rt: PodRuntime, c: ContainerRuntime): void {
    const probe = c.spec['readinessProbe'] as Obj | undefined;
    if (!probe || !(probe['tcpSocket'] || probe['httpGet'])) {
      c.ready = true;
      return;
    }
    const cap = this.options.maxProbePeriodMs ?? 250;
    const period = Math.min(Number(probe['periodSeconds'] ?? 10) * 1000, cap);
    const delay = Math.min(Number(probe['initialDelaySeconds'] ?? 0) * 1000, cap);
    const failureThreshold = Number(probe['failureThreshold'] ?? 3);
    let failures = 0;
    const proc = c.proc;
    const tick = () => {
      if (rt.done || c.proc !== proc || rt.terminating) return;
      void this.#probeOnce(rt, c, probe).then((ok) => {
        if (rt.done || c.proc !== proc) return;
        failures = ok ? 0 : failures + 1;
        const ready = ok ? true : failures >= failureThreshold ? false : c.ready;
        if (ready !== c.ready) {
          c.ready = ready;
          this.#publish(rt);
        }
        c.probe = setTimeout(tick, period);
      });
    };
    c.probe = setTimeout(tick, delay);
  }

  #probeOnce(rt: PodRuntime, c: ContainerRuntime, probe: Obj): Promise<boolean> {
    const portOf = (p: unknown): number => {
      if (typeof p === 'number' || /^\d+$/.test(String(p))) return Number(p);
      const named = ((c.spec['ports'] ?? []) as Obj[]).find((x) => x['name'] === p);
      return Number(named?.['containerPort'] ?? 0);
    };
    return new Promise((resolve) => {
      if (probe['tcpSocket']) {
        const s = connect({ host: rt.ip, port: portOf(probe['tcpSocket']['port']) });
        s.setTimeout(1000, () => s.destroy());
        s.once('connect', () => {
          s.destroy();
          resolve(true);
        });
        s.once('error', () => resolve(false));
        s.once('close', () => resolve(false));
        return;
      }
      const h = probe['httpGet'] as Obj;
      const req = httpGet({ host: rt.ip, port: portOf(h['port']), path: String(h['path'] ?? '/'), timeout: 1000 }, (res) => {
        res.resume();
        resolve((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 400);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
    });
  }

  #exited(rt: PodRuntime, c: ContainerRuntime, code: number | null, signal: NodeJS.Signals | null): void {
    if (c.probe) clearTimeout(c.probe);
    c.ready = false;
    const exitCode = code ?? (signal ? 128 + (signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : 1) : 1);
    const terminated = { exitCode, reason: exitCode === 0 ? 'Completed' : 'Error', startedAt: c.state['running']?.['startedAt'], finishedAt: now(), ...(signal ? { signal } : {}) };
    c.proc = undefined;
    if (rt.terminating || rt.done) {
      c.state = { terminated };
      if (rt.containers.every((x) => !x.proc)) this.#finish(rt);
      return;
    }
    const policy = String(this.api.get('pods', rt.ns, rt.name)?.['spec']?.['restartPolicy'] ?? 'Always');
    if (policy === 'Always' || (policy === 'OnFailure' && exitCode !== 0)) {
      c.lastState = { terminated };
      c.restartCount++;
      c.previousLogs = c.logs;
      c.logs = [];
      const backoff = Math.min((this.options.backoffMs ?? 250) * 2 ** (c.restartCount - 1), 5_000);
      c.state = { waiting: { reason: 'CrashLoopBackOff', message: `back-off ${Math.round(backoff / 100) / 10}s restarting failed container=${c.spec['name']} pod=${rt.name}_${rt.ns}(${rt.uid})` } };
      this.#publish(rt);
      c.restartTimer = setTimeout(() => {
        const pod = this.api.get('pods', rt.ns, rt.name);
        if (!pod || rt.terminating || rt.done) return;
        this.#run(rt, c, pod);
        this.#publish(rt);
      }, backoff);
      return;
    }
    c.state = { terminated };
    this.#publish(rt);
  }

  /** Stops a pod: SIGTERM to each container's process group, SIGKILL after the grace period. */
  #stop(rt: PodRuntime, graceSeconds: number): Promise<void> {
    rt.terminating = true;
    for (const c of rt.containers) {
      if (c.probe) clearTimeout(c.probe);
      if (c.restartTimer) clearTimeout(c.restartTimer);
    }
    const live = rt.containers.filter((c) => c.proc);
    if (live.length === 0) {
      this.#finish(rt);
      return Promise.resolve();
    }
    const exited = Promise.all(live.map((c) => new Promise<void>((r) => (c.proc ? c.proc.once('close', () => r()) : r())))).then(() => undefined);
    for (const c of live) killGroup(c.proc!, graceSeconds > 0 ? 'SIGTERM' : 'SIGKILL');
    if (graceSeconds > 0) {
      rt.killTimer = setTimeout(() => {
        for (const c of rt.containers) if (c.proc) killGroup(c.proc, 'SIGKILL');
      }, graceSeconds * 1000);
    }
    return exited;
  }

  #finish(rt: PodRuntime): void {
    if (rt.done) return;
    rt.done = true;
    if (rt.killTimer) clearTimeout(rt.killTimer);
    this.pods.delete(rt.uid);
    rmSync(rt.root, { recursive: true, force: true });
    for (const c of rt.containers) for (const f of c.followers) f('\0end');
    if (!this.#closed) this.api.finishPod(rt.ns, rt.name);
  }

  /** Writes the pod's status from its runtime. */
  #publish(rt: PodRuntime, _pod?: Obj): void {
    if (rt.done || this.#closed) return;
    this.api.setStatus('pods', rt.ns, rt.name, (s, pod) => {
      const running = rt.containers.some((c) => c.state['running']);
      const allTerminated = rt.containers.every((c) => c.state['terminated']);
      const ready = rt.containers.every((c) => c.ready && c.state['running']);
      const started = rt.containers.some((c) => c.started);
      s['phase'] = allTerminated ? (rt.containers.every((c) => c.state['terminated']['exitCode'] === 0) ? 'Succeeded' : 'Failed') : started && (running || rt.containers.some((c) => c.restartCount > 0)) ? 'Running' : 'Pending';
      s['hostIP'] = '127.0.0.1';
      s['podIP'] = rt.ip;
      s['podIPs'] = [{ ip: rt.ip }];
      s['startTime'] ??= now();
      const t = now();
      const cond = (type: string, ok: boolean, reason?: string) => ({ type, status: ok ? 'True' : 'False', lastTransitionTime: t, ...(reason && !ok ? { reason } : {}) });
      const old = new Map(((s['conditions'] ?? []) as Obj[]).map((c) => [c['type'], c]));
      const next = [cond('PodScheduled', true), cond('Initialized', true), cond('ContainersReady', ready, 'ContainersNotReady'), cond('Ready', ready, 'ContainersNotReady')];
      s['conditions'] = next.map((c) => (old.get(c.type)?.['status'] === c.status ? old.get(c.type) : c));
      s['containerStatuses'] = rt.containers.map((c) => ({
        name: c.spec['name'],
        image: c.spec['image'],
        imageID: c.image ? `emulator://${c.spec['image']}` : '',
        ready: c.ready && !!c.state['running'],
        started: !!c.state['running'],
        restartCount: c.restartCount,
        state: c.state,
        lastState: c.lastState,
      }));
      void pod;
    });
  }

  // ---- logs ----
  #logs(pod: Obj, q: URLSearchParams, res: ServerResponse): void {
    const rt = this.pods.get(pod['metadata']['uid']);
    const containers = rt?.containers ?? [];
    const want = q.get('container');
    const c = want ? containers.find((x) => x.spec['name'] === want) : containers[0];
    if (!c) {
      res.writeHead(want ? 400 : 200, { 'content-type': 'text/plain' });
      res.end(want ? `container ${want} is not valid for pod ${pod['metadata']['name']}` : '');
      return;
    }
    const timestamps = q.get('timestamps') === 'true';
    const fmt = (l: string) => (timestamps ? l : l.slice(l.indexOf(' ') + 1));
    let lines = q.get('previous') === 'true' ? c.previousLogs : c.logs;
    const tail = q.get('tailLines');
    if (tail !== null) lines = lines.slice(-Number(tail));
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write(lines.map((l) => fmt(l) + '\n').join(''));
    if (q.get('follow') !== 'true' || !c.proc) {
      res.end();
      return;
    }
    const f = (line: string) => {
      if (line === '\0end') res.end();
      else res.write(`${timestamps ? new Date().toISOString() + ' ' : ''}${line}\n`);
    };
    c.followers.add(f);
    c.proc.once('close', () => setTimeout(() => res.end(), 50));
    res.on('close', () => c.followers.delete(f));
  }

  // ---- port-forward (WebSocket, v4.channel.k8s.io) ----
  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const m = url.pathname.match(/^\/api\/v1\/namespaces\/([^/]+)\/pods\/([^/]+)\/portforward$/);
    const pod = m ? this.api.get('pods', decodeURIComponent(m[1]!), decodeURIComponent(m[2]!)) : undefined;
    const port = Number(url.searchParams.get('ports'));
    if (!pod || !port) {
      socket.end(`HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\r\n${JSON.stringify({ kind: 'Status', code: 404, reason: 'NotFound', message: 'pod not found' })}`);
      return;
    }
    this.api.requests.push(`GET ${url.pathname}${url.search}`);
    this.#wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const header = (ch: number) => Buffer.from([ch, port & 255, port >> 8]);
      ws.send(header(0));
      ws.send(header(1));
      const target: Socket = connect({ host: String(pod['status']?.['podIP'] ?? ''), port });
      target.on('data', (d: Buffer) => ws.send(Buffer.concat([Buffer.from([0]), d])));
      target.on('error', (err) => {
        if (ws.readyState === ws.OPEN) ws.send(Buffer.concat([Buffer.from([1]), Buffer.from(`error forwarding port ${port} to pod ${pod['metadata']['name']}: ${err.message}`)]));
        ws.close();
      });
      target.on('close', () => ws.close());
      ws.on('message', (data: Buffer) => {
        if (data[0] === 0 && data.length > 1) target.write(data.subarray(1));
      });
      ws.on('close', () => target.destroy());
    });
  }

  // ---- kube-proxy and the cloud controller ----
  #ports(svc: Obj): Array<{ ip: string; port: number; targetPort: unknown; key: string }> {
    const out: Array<{ ip: string; port: number; targetPort: unknown; key: string }> = [];
    const spec = svc['spec'] ?? {};
    const lb = ((svc['status']?.['loadBalancer']?.['ingress'] ?? []) as Obj[]).map((i) => String(i['ip']));
    for (const p of (spec['ports'] ?? []) as Obj[]) {
      const uid = svc['metadata']['uid'];
      if (spec['clusterIP'] && spec['clusterIP'] !== 'None') out.push({ ip: spec['clusterIP'], port: Number(p['port']), targetPort: p['targetPort'], key: `${uid}/${spec['clusterIP']}:${p['port']}` });
      if (p['nodePort']) out.push({ ip: '127.0.0.1', port: Number(p['nodePort']), targetPort: p['targetPort'], key: `${uid}/127.0.0.1:${p['nodePort']}` });
      for (const ip of lb) out.push({ ip, port: Number(p['port']), targetPort: p['targetPort'], key: `${uid}/${ip}:${p['port']}` });
    }
    return out;
  }

  #lbNext = Math.floor(Math.random() * 60_000) + 256;
  #syncService(svc: Obj): void {
    if (this.#closed) return;
    if (svc['spec']?.['type'] === 'LoadBalancer' && !svc['status']?.['loadBalancer']?.['ingress'] && this.options.loadBalancerDelayMs !== null) {
      const n = this.#lbNext++ % 65_024;
      const ip = `127.44.${(n >> 8) + 1}.${(n & 255) || 1}`;
      const t = setTimeout(() => this.api.setStatus('services', svc['metadata']['namespace'], svc['metadata']['name'], (s) => (s['loadBalancer'] = { ingress: [{ ip }] })), this.options.loadBalancerDelayMs ?? 0);
      t.unref();
    }
    for (const p of this.#ports(svc)) {
      if (this.#proxies.has(p.key)) continue;
      const ns = svc['metadata']['namespace'] as string;
      const name = svc['metadata']['name'] as string;
      let next = 0;
      const isolated = this.options.isolateServiceNetwork && p.ip.startsWith('127.43.');
      const server = createServer((client) => {
        if (isolated && !String(client.remoteAddress ?? '').replace(/^::ffff:/, '').startsWith('127.42.')) {
          client.destroy();
          return;
        }
        const current = this.api.get('services', ns, name);
        const endpoints = current ? this.#endpoints(current, p.targetPort) : [];
        if (endpoints.length === 0) {
          client.destroy();
          return;
        }
        const ep = endpoints[next++ % endpoints.length]!;
        const upstream = connect(ep);
        client.pipe(upstream).pipe(client);
        upstream.on('error', () => client.destroy());
        client.on('error', () => upstream.destroy());
        client.on('close', () => upstream.destroy());
        upstream.on('close', () => client.destroy());
      });
      server.on('error', () => this.#proxies.delete(p.key));
      server.listen(p.port, p.ip);
      this.#proxies.set(p.key, server);
    }
  }

  #endpoints(svc: Obj, targetPort: unknown): Array<{ host: string; port: number }> {
    const sel = svc['spec']?.['selector'] as Obj | undefined;
    if (!sel) return [];
    const reqs = parseLabelSelector(Object.entries(sel).map(([k, v]) => `${k}=${String(v)}`).join(','));
    const out: Array<{ host: string; port: number }> = [];
    for (const pod of this.api.list('pods', svc['metadata']['namespace'])) {
      if (!labelsMatch(reqs, pod['metadata']['labels']) || pod['metadata']['deletionTimestamp'] || !isReady(pod) || !pod['status']?.['podIP']) continue;
      let port = Number(targetPort);
      if (!Number.isInteger(port) || port <= 0) {
        for (const c of (pod['spec']['containers'] ?? []) as Obj[]) for (const cp of (c['ports'] ?? []) as Obj[]) if (cp['name'] === targetPort) port = Number(cp['containerPort']);
      }
      if (port > 0) out.push({ host: String(pod['status']['podIP']), port });
    }
    return out;
  }

  #dropService(svc: Obj): void {
    for (const [key, server] of this.#proxies) {
      if (key.startsWith(`${svc['metadata']['uid']}/`)) {
        server.close();
        this.#proxies.delete(key);
      }
    }
  }

  #writeHosts(): void {
    const hosts: Record<string, string> = {};
    for (const svc of this.api.list('services')) {
      const ip = svc['spec']?.['clusterIP'];
      if (ip && ip !== 'None') hosts[`${svc['metadata']['name']}.${svc['metadata']['namespace']}.svc.cluster.local`] = ip;
    }
    // Atomic for the readers (the pods' shims).
    writeFileSync(this.#hostsFile + '.tmp', JSON.stringify(hosts));
    renameSync(this.#hostsFile + '.tmp', this.#hostsFile);
  }
}

function killGroup(proc: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (proc.pid) process.kill(-proc.pid, signal);
  } catch {
    try {
      proc.kill(signal);
    } catch {
      // gone
    }
  }
}

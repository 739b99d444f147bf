import { createServer, connect as netConnect, type Server } from 'node:net';
import { PassThrough } from 'node:stream';
import * as k8s from '@kubernetes/client-node';
// Not re-exported by the index; its default streams would open process.stdin.
import { WebSocketHandler } from '@kubernetes/client-node/dist/web-socket-handler.js';
import { KubernetesApiError, KubernetesForbiddenError, SchedulerUnreachableError } from './errors.js';

/** A kubeconfig as given: a KubeConfig, a path, YAML text, or nothing (KUBECONFIG, ~/.kube/config, in-cluster). */
export type KubeConfigSource = k8s.KubeConfig | string | undefined;

export function loadKubeConfig(source: KubeConfigSource): k8s.KubeConfig {
  if (source instanceof k8s.KubeConfig) return source;
  const kc = new k8s.KubeConfig();
  if (source === undefined) kc.loadFromDefault();
  else if (/\n/.test(source) || /^\s*apiVersion:/.test(source)) kc.loadFromString(source);
  else kc.loadFromFile(source);
  return kc;
}

/** The namespace of the kubeconfig's current context, else 'default'. */
export function contextNamespace(kc: k8s.KubeConfig): string {
  return kc.getContextObject(kc.getCurrentContext())?.namespace ?? 'default';
}

/** Runs a client-node call; a failure becomes a KubernetesApiError (403: KubernetesForbiddenError) saying what was tried. */
export async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw apiError(what, err);
  }
}

export function apiError(what: string, err: unknown): Error {
  if (err instanceof KubernetesApiError) return err;
  const e = err as { code?: unknown; body?: unknown; message?: string };
  if (typeof e?.code === 'number' && e.code >= 400) {
    let status: { reason?: string; message?: string } = {};
    try {
      status = typeof e.body === 'string' ? (JSON.parse(e.body) as typeof status) : ((e.body ?? {}) as typeof status);
    } catch {
      status = { message: String(e.body) };
    }
    if (e.code === 403) return new KubernetesForbiddenError(what, status.message ?? 'forbidden', { cause: err });
    return new KubernetesApiError(what, e.code, status.reason ?? 'Error', status.message ?? String(e.body ?? ''), { cause: err });
  }
  return new KubernetesApiError(what, 0, 'unreachable', `${e?.message ?? String(err)} (is the API server of your kubeconfig reachable?)`, { cause: err });
}

export const isNotFound = (err: unknown) => err instanceof KubernetesApiError && err.httpStatus === 404;
export const isConflict = (err: unknown) => err instanceof KubernetesApiError && err.httpStatus === 409;

export const mergePatch = k8s.setHeaderOptions('Content-Type', k8s.PatchStrategy.MergePatch);

/** The pods of one label selector, kept current by list + watch (re-listing after a 410 or a broken stream). */
export class PodWatcher {
  readonly pods = new Map<string, k8s.V1Pod>();
  readonly #listeners = new Set<() => void>();
  #abort: AbortController | undefined;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  #ready: Promise<void>;
  /** The last watch or list failure, if any (a 403 on watch, ...). */
  error: Error | undefined;

  constructor(
    private readonly kc: k8s.KubeConfig,
    private readonly namespace: string,
    private readonly labelSelector: string,
  ) {
    this.#ready = this.#sync();
  }

  get ready(): Promise<void> {
    return this.#ready;
  }

  onChange(fn: () => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  #notify(): void {
    for (const l of [...this.#listeners]) l();
  }

  async #sync(): Promise<void> {
    if (this.#closed) return;
    const core = this.kc.makeApiClient(k8s.CoreV1Api);
    const list = await call(`list pods (${this.labelSelector}) in namespace ${this.namespace}`, () => core.listNamespacedPod({ namespace: this.namespace, labelSelector: this.labelSelector }));
    this.pods.clear();
    for (const p of list.items) this.pods.set(p.metadata!.name!, p);
    this.#notify();
    if (this.#closed) return;
    const watch = new k8s.Watch(this.kc);
    this.#abort = await watch.watch(
      `/api/v1/namespaces/${this.namespace}/pods`,
      { labelSelector: this.labelSelector, resourceVersion: list.metadata?.resourceVersion, allowWatchBookmarks: true },
      (type: string, obj: k8s.V1Pod) => {
        const name = obj.metadata?.name;
        if (!name || type === 'BOOKMARK') return;
        if (type === 'ERROR') return; // a 410: the stream ends and we re-list
        if (type === 'DELETED') this.pods.delete(name);
        else this.pods.set(name, obj);
        this.#notify();
      },
      (err: unknown) => {
        if (this.#closed) return;
        if (err && !(err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError'))) this.error = apiError(`watch pods in namespace ${this.namespace}`, err);
        this.#timer = setTimeout(() => {
          this.#ready = this.#sync().catch((e: unknown) => {
            this.error = e as Error;
            this.#notify();
          });
        }, 250);
      },
    );
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#abort?.abort();
    this.#listeners.clear();
  }
}

/** A local TCP listener that forwards each connection to a pod's port through the API server (client-node's PortForward). */
export class PortForwarder {
  readonly #server: Server;
  port = 0;
  constructor(kc: k8s.KubeConfig, namespace: string, pod: () => string, targetPort: number) {
    const handler = new WebSocketHandler(kc, undefined, { stdin: new PassThrough(), stdout: new PassThrough(), stderr: new PassThrough() });
    const pf = new k8s.PortForward(kc, true, handler);
    this.#server = createServer((socket) => {
      const errors = new PassThrough();
      errors.on('data', () => socket.destroy());
      socket.on('error', () => socket.destroy());
      pf.portForward(namespace, pod(), [targetPort], socket, errors, socket).then(
        (ws) => {
          const w = ws as unknown as { on?: (e: string, f: () => void) => void; close(): void };
          w.on?.('close', () => socket.destroy());
          socket.on('close', () => w.close());
        },
        () => socket.destroy(),
      );
    });
  }

  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
    this.port = (this.#server.address() as { port: number }).port;
    return this.port;
  }

  close(): void {
    this.#server.close();
  }
}

/**
 * Whether something accepts TCP connections at host:port within timeoutMs and keeps them open (a
 * proxy that accepts and drops at once, as some do for traffic from outside the cluster, does not count).
 */
export function answers(host: string, port: number, timeoutMs = 1_500): Promise<boolean> {
  return new Promise((resolve) => {
    const s = netConnect({ host, port });
    let settle: NodeJS.Timeout | undefined;
    const done = (ok: boolean) => {
      clearTimeout(t);
      clearTimeout(settle);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => (settle = setTimeout(() => done(true), 150)));
    s.once('close', () => done(false));
    s.once('error', () => done(false));
  });
}

/**
 * How this process reaches a scheduler Service: its LoadBalancer address, node port or ClusterIP
 * when one answers (portForward 'auto' or false), else a port-forward to `pod()` through the API
 * server (portForward 'auto' or true). The forwarders it opens are pushed to `forwards`.
 */
export async function reachScheduler(o: {
  kc: k8s.KubeConfig;
  namespace: string;
  service: string;
  pod: () => string;
  portForward: boolean | 'auto';
  timeoutMs: number;
  tls: boolean;
  forwards: PortForwarder[];
}): Promise<{ address: string; dashboard: string; connection: 'direct' | 'port-forward' }> {
  const core = o.kc.makeApiClient(k8s.CoreV1Api);
  const read = () => call(`read service ${o.service} in namespace ${o.namespace}`, () => core.readNamespacedService({ name: o.service, namespace: o.namespace }));
  let svc = await read();
  const comm = svc.spec?.ports?.find((p) => p.name === 'tcp-comm') ?? svc.spec?.ports?.[0];
  const dash = svc.spec?.ports?.find((p) => p.name === 'http-dashboard');
  if (!comm) throw new SchedulerUnreachableError(o.service, [], 'the service has no port');
  const scheme = o.tls ? 'tls' : 'tcp';
  // With TLS the scheduler serves its dashboard over HTTPS (its own certificate).
  const web = o.tls ? 'https' : 'http';
  const tried: string[] = [];
  if (o.portForward !== true) {
    const candidates: Array<{ host: string; port: number; dashPort: number | undefined }> = [];
    if (svc.spec?.type === 'LoadBalancer') {
      // Wait (bounded) for the cloud to give the Service an address.
      const end = Date.now() + o.timeoutMs;
      while (!svc.status?.loadBalancer?.ingress?.length && Date.now() < end) {
        await new Promise((r) => setTimeout(r, 250));
        svc = await read();
      }
      for (const i of svc.status?.loadBalancer?.ingress ?? []) if (i.ip || i.hostname) candidates.push({ host: (i.ip ?? i.hostname)!, port: comm.port, dashPort: dash?.port });
    }
    if ((svc.spec?.type === 'NodePort' || svc.spec?.type === 'LoadBalancer') && comm.nodePort) {
      const node = new URL(o.kc.getCurrentCluster()?.server ?? 'http://127.0.0.1').hostname;
      candidates.push({ host: node, port: comm.nodePort, dashPort: dash?.nodePort });
    }
    if (svc.spec?.clusterIP && svc.spec.clusterIP !== 'None') candidates.push({ host: svc.spec.clusterIP, port: comm.port, dashPort: dash?.port });
    for (const c of candidates) {
      tried.push(`${c.host}:${c.port}`);
      if (await answers(c.host, c.port)) {
        return { address: `${scheme}://${c.host}:${c.port}`, dashboard: c.dashPort ? `${web}://${c.host}:${c.dashPort}/status` : '', connection: 'direct' };
      }
    }
    if (o.portForward === false) throw new SchedulerUnreachableError(o.service, tried, 'nothing answered and portForward is false');
  }
  const target = (p: k8s.V1ServicePort) => (typeof p.targetPort === 'number' ? p.targetPort : p.port);
  const fwd = new PortForwarder(o.kc, o.namespace, o.pod, target(comm));
  o.forwards.push(fwd);
  const port = await fwd.listen();
  let dashboard = '';
  if (dash) {
    const d = new PortForwarder(o.kc, o.namespace, o.pod, target(dash));
    o.forwards.push(d);
    dashboard = `${web}://127.0.0.1:${await d.listen()}/status`;
  }
  tried.push(`port-forward 127.0.0.1:${port} to pod ${o.pod()}`);
  if (!(await answers('127.0.0.1', port, 5_000))) throw new SchedulerUnreachableError(o.service, tried, 'the port-forward does not answer either');
  return { address: `${scheme}://127.0.0.1:${port}`, dashboard, connection: 'port-forward' };
}

import { randomBytes } from 'node:crypto';
import { userInfo } from 'node:os';
import * as k8s from '@kubernetes/client-node';
import { Cluster, type ClusterBackend, type SchedulerHandle, type StartWorkerOptions, type WorkerHandle } from '@skein/cluster';
import { InvalidArgumentError, Security, SkeinError, parseReadyLine } from '@skein/common';
import { ClusterExistsError, PodCrashedError, PodImagePullError, PodStartError, PodUnschedulableError, ResourceTimeoutError, SchedulerUnreachableError } from './errors.js';
import { PodWatcher, PortForwarder, apiError, reachScheduler, call, contextNamespace, isConflict, isNotFound, loadKubeConfig, mergePatch, type KubeConfigSource } from './kube.js';
import {
  LABEL_CLUSTER,
  credentialsSecret,
  credentialsSecretName,
  schedulerLaunchOf,
  schedulerPod,
  schedulerPodName,
  schedulerService,
  serviceName,
  workerLaunchOf,
  workerPod,
  type PodResources,
  type SpecInput,
  type KubeWorkerOptions,
} from './specs.js';


export interface KubeClusterOptions {
  /** The cluster's name: its pods are `<name>-scheduler` and `<name>-worker-<n>` (default `skein-<user>-<random>`). */
  name?: string;
  /** Default: the namespace of the kubeconfig's current context, else 'default'. */
  namespace?: string;
  /** The image of the scheduler and the workers (its entrypoint is `skein`; default DEFAULT_IMAGE). */
  image?: string;
  imagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never';
  /** Workers to start (default 0). */
  nWorkers?: number;
  /** Kubernetes requests and limits of every pod, e.g. { requests: { cpu: '1', memory: '2Gi' } }. */
  resources?: PodResources;
  /** Environment of every pod. */
  env?: Record<string, string> | k8s.V1EnvVar[];
  workerOptions?: KubeWorkerOptions;
  /** More `skein scheduler` flags. */
  schedulerArgs?: string[];
  /** Serve the dashboard on 8787 (default true). */
  dashboard?: boolean;
  /** The scheduler Service's type (default ClusterIP). */
  schedulerServiceType?: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  /**
   * How this process reaches the scheduler: 'auto' (default) connects directly when the Service
   * address answers and port-forwards through the API server otherwise; true always
   * port-forwards; false never does.
   */
  portForward?: boolean | 'auto';
  /**
   * Dask's idle_timeout: the scheduler exits once it has had no client and no task to run for
   * this long (ms); its pod is left Succeeded and the workers stop once they lose it (after their
   * death timeout). Default: never.
   */
  idleTimeoutMs?: number;
  /** How long each wait on Kubernetes may take (pods running, the service address, deletions), ms (default 60 s). */
  resourceTimeoutMs?: number;
  /** close() deletes the cluster's objects (default true; false for KubeCluster.fromName). */
  shutdownOnClose?: boolean;
  /** Merged into the scheduler pod's spec (containers by name: 'scheduler'): nodeSelector, tolerations, ... */
  schedulerSpec?: Partial<k8s.V1PodSpec>;
  /** Merged into every worker pod's spec (containers by name: 'worker'). */
  workerSpec?: Partial<k8s.V1PodSpec>;
  /**
   * TLS credentials and/or a token, delivered to the pods as Secrets mounted as 0600 files at
   * /etc/skein/credentials (never in their args or env); `true` is `Security.temporary()`.
   * `Client.connect(cluster)` uses `cluster.security`. Default: none (plaintext).
   */
  security?: Security | boolean;
  /** The kubeconfig: a KubeConfig, a path or YAML (default: KUBECONFIG, ~/.kube/config, or in-cluster). */
  kubeconfig?: KubeConfigSource;
  /** Grace of a stopping pod, s (default 10). */
  terminationGracePeriodSeconds?: number;
  /** Give up on a worker not running this long after it was requested (ms; default: resourceTimeout). */
  workerStartTimeoutMs?: number;
}

/** The image the pods run unless `image` says otherwise (the Dockerfile at the repository root). */
export const DEFAULT_IMAGE = 'ghcr.io/skein-dev/skein:0.1.0';

interface Compiled extends SpecInput {
  nWorkers: number;
  portForward: boolean | 'auto';
  resourceTimeoutMs: number;
  shutdownOnClose: boolean;
  kc: k8s.KubeConfig;
  workerStartTimeoutMs: number | undefined;
  /** fromName without an image: the workers it adds run the scheduler pod's image. */
  adoptImage: boolean;
}

const NAME_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function compile(o: KubeClusterOptions, connectOnly: boolean): Compiled {
  if (o.idleTimeoutMs !== undefined && !(typeof o.idleTimeoutMs === 'number' && o.idleTimeoutMs > 0)) {
    throw new InvalidArgumentError(`KubeCluster idleTimeoutMs must be a number of ms above 0, got ${String(o.idleTimeoutMs)}.`);
  }
  const kc = loadKubeConfig(o.kubeconfig);
  const user = (() => {
    try {
      return userInfo().username.toLowerCase().replace(/[^a-z0-9-]/g, '');
    } catch {
      return 'user';
    }
  })();
  const name = o.name ?? `skein-${user || 'user'}-${randomBytes(3).toString('hex')}`;
  if (!NAME_RE.test(name) || name.length > 40) {
    throw new InvalidArgumentError(`KubeCluster name must be lower case letters, digits and '-', at most 40 characters, starting and ending with a letter or digit (it names pods), got ${JSON.stringify(name)}.`);
  }
  const nWorkers = o.nWorkers ?? 0;
  if (!Number.isInteger(nWorkers) || nWorkers < 0) throw new InvalidArgumentError(`KubeCluster nWorkers must be a whole number ≥ 0, got ${nWorkers}.`);
  const serviceType = o.schedulerServiceType ?? 'ClusterIP';
  if (!['ClusterIP', 'NodePort', 'LoadBalancer'].includes(serviceType)) {
    throw new InvalidArgumentError(`KubeCluster schedulerServiceType must be ClusterIP, NodePort or LoadBalancer, got ${JSON.stringify(serviceType)}.`);
  }
  const resourceTimeoutMs = o.resourceTimeoutMs ?? 60_000;
  if (!(resourceTimeoutMs > 0)) throw new InvalidArgumentError(`KubeCluster resourceTimeoutMs must be a number of ms > 0, got ${resourceTimeoutMs}.`);
  if (o.security !== undefined && typeof o.security !== 'boolean' && typeof (o.security as Partial<Security>).launchFiles !== 'function') {
    throw new InvalidArgumentError('KubeCluster security must be a Security (Security.temporary(), Security.fromFiles(...)) or true (a temporary one), got another object.');
  }
  if (connectOnly && o.security === true) {
    throw new InvalidArgumentError(
      `KubeCluster.fromName(${JSON.stringify(name)}) cannot take security: true: a new temporary CA would not be trusted by the running cluster. Pass the Security the cluster was started with (the one of KubeCluster.start, or Security.fromFiles with credentials its CA signed).`,
    );
  }
  const env: k8s.V1EnvVar[] = Array.isArray(o.env) ? o.env : Object.entries(o.env ?? {}).map(([k, v]) => ({ name: k, value: String(v) }));
  const compiled: Compiled = {
    name,
    namespace: o.namespace ?? contextNamespace(kc),
    image: o.image ?? DEFAULT_IMAGE,
    imagePullPolicy: o.imagePullPolicy,
    resources: o.resources,
    env,
    security: o.security === true ? Security.temporary() : o.security ? o.security : undefined,
    serviceType,
    schedulerArgs: o.schedulerArgs ?? [],
    ...(o.idleTimeoutMs !== undefined ? { idleTimeoutMs: o.idleTimeoutMs } : {}),
    dashboard: o.dashboard ?? true,
    worker: { ...(o.workerOptions ?? {}) },
    schedulerSpec: o.schedulerSpec,
    workerSpec: o.workerSpec,
    terminationGracePeriodSeconds: o.terminationGracePeriodSeconds ?? 10,
    nWorkers,
    portForward: o.portForward ?? 'auto',
    resourceTimeoutMs,
    shutdownOnClose: o.shutdownOnClose ?? !connectOnly,
    kc,
    workerStartTimeoutMs: o.workerStartTimeoutMs,
    adoptImage: connectOnly && o.image === undefined,
  };
  // The launch specs check the worker and scheduler flags now, not at the first pod.
  schedulerLaunchOf(compiled);
  workerLaunchOf(compiled, `${name}-worker-0`);
  return compiled;
}

type PodState = { kind: 'pending'; reason: string } | { kind: 'running' } | { kind: 'ready' } | { kind: 'failed'; error: Error } | { kind: 'gone' };

/** What a pod's status says: still pending (why), running, or a failure to report (a typed error). */
export function podState(pod: k8s.V1Pod | undefined, logs: string[] = []): PodState {
  if (!pod) return { kind: 'gone' };
  const name = pod.metadata?.name ?? '?';
  const ns = pod.metadata?.namespace ?? '?';
  const st = pod.status ?? {};
  for (const c of st.containerStatuses ?? []) {
    const w = c.state?.waiting;
    if (w && ['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName', 'ErrImageNeverPull'].includes(w.reason ?? '')) {
      return { kind: 'failed', error: new PodImagePullError(name, ns, w.reason!, w.message ?? '', c.image ?? '') };
    }
    if (w && w.reason === 'CrashLoopBackOff') return { kind: 'failed', error: new PodCrashedError(name, ns, 'CrashLoopBackOff', c.lastState?.terminated?.exitCode, logs) };
    if (w && ['CreateContainerConfigError', 'CreateContainerError', 'RunContainerError'].includes(w.reason ?? '')) {
      return { kind: 'failed', error: new PodStartError(name, ns, w.reason!, w.message ?? '', 'Check the pod spec (env, volumes, secrets, command).') };
    }
  }
  if (st.phase === 'Failed' || st.phase === 'Succeeded') {
    const t = st.containerStatuses?.[0]?.state?.terminated;
    return { kind: 'failed', error: new PodCrashedError(name, ns, st.phase === 'Failed' ? (t?.reason ?? st.reason ?? 'Failed') : 'Completed', t?.exitCode, logs) };
  }
  if (st.phase === 'Running') {
    return st.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ? { kind: 'ready' } : { kind: 'running' };
  }
  const unsched = st.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
  if (unsched) return { kind: 'pending', reason: `pod ${name} is Pending: ${unsched.reason ?? 'Unschedulable'}: ${unsched.message ?? ''}`.trim() };
  const waiting = st.containerStatuses?.find((c) => c.state?.waiting)?.state?.waiting;
  return { kind: 'pending', reason: `pod ${name} is Pending${waiting?.reason ? `: ${waiting.reason}` : st.conditions?.length ? ': scheduled, starting' : ': waiting for a node'}` };
}

/** A scheduler or worker pod, as the Cluster base sees it. */
class PodHandle implements SchedulerHandle {
  #logs: string[] = [];
  #exited: Promise<number | null>;
  #resolveExit!: (code: number | null) => void;
  #closing: Promise<void> | undefined;
  dashboardLink = '';

  constructor(
    readonly backend: KubeBackend,
    readonly name: string,
    readonly pod: string,
    public address: string,
    readonly owned: boolean,
  ) {
    this.#exited = new Promise((r) => (this.#resolveExit = r));
  }

  get exited(): Promise<number | null> {
    return this.#exited;
  }

  /** Resolves `exited` (the pod ended or went away). */
  ended(code: number | null): void {
    this.#resolveExit(code);
  }

  setLogs(lines: string[]): void {
    this.#logs = lines;
  }

  logs(): string[] {
    return this.#logs;
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#logs = await this.backend.podLogs(this.pod).catch(() => this.#logs);
      // A cluster closed with shutdownOnClose: false leaves its pods running (detaches).
      if (this.owned && !this.backend.detaching) await this.backend.deletePod(this.pod);
      this.ended(0);
    })();
    return this.#closing;
  }
}

export class KubeBackend implements ClusterBackend<PodHandle, PodHandle> {
  readonly core: k8s.CoreV1Api;
  readonly watcher: PodWatcher;
  readonly #labels: Record<string, string>;
  #owner: k8s.V1OwnerReference | undefined;
  readonly #handles = new Map<string, PodHandle>();
  readonly #forwards: PortForwarder[] = [];
  #unwatch: () => void;
  /** Set by close() without shutdownOnClose: handles stop watching their pods instead of deleting them. */
  detaching = false;
  /** How the scheduler was reached: 'direct' or 'port-forward'. */
  connection: 'direct' | 'port-forward' | '' = '';

  /** The Security the pods use (`cluster.security`; Client.connect(cluster) uses it). */
  get security(): Security | undefined {
    return this.o.security;
  }

  constructor(
    readonly o: Compiled,
    readonly connectOnly: boolean,
  ) {
    this.core = o.kc.makeApiClient(k8s.CoreV1Api);
    this.#labels = { [LABEL_CLUSTER]: o.name, 'app.kubernetes.io/managed-by': 'skein-kubernetes', 'app.kubernetes.io/name': 'skein' };
    this.watcher = new PodWatcher(o.kc, o.namespace, `${LABEL_CLUSTER}=${o.name}`);
    // A pod that ends or goes away ends its handle (the base then replaces a wanted worker).
    this.#unwatch = this.watcher.onChange(() => {
      for (const h of this.#handles.values()) {
        const pod = this.watcher.pods.get(h.pod);
        const s = podState(pod);
        if (s.kind === 'gone') h.ended(null);
        else if (pod?.status?.phase === 'Failed' || pod?.status?.phase === 'Succeeded') h.ended(pod.status.containerStatuses?.[0]?.state?.terminated?.exitCode ?? 1);
      }
    });
  }

  #what(verb: string, kind: string, name: string): string {
    return `${verb} ${kind} ${name} in namespace ${this.o.namespace}`;
  }

  async podLogs(pod: string, tailLines?: number, previous = false): Promise<string[]> {
    const text = await call(this.#what('read the log of', 'pod', pod), () =>
      this.core.readNamespacedPodLog({ name: pod, namespace: this.o.namespace, ...(tailLines ? { tailLines } : {}), ...(previous ? { previous } : {}) }),
    );
    return String(text ?? '').split('\n').filter((l) => l !== '');
  }

  /** Waits, event-driven through the watcher, until `done` returns a value for the pod, bounded by resourceTimeout and `signal`. */
  async #waitPod<T>(pod: string, what: string, done: (p: k8s.V1Pod | undefined) => T | undefined, options?: { signal?: AbortSignal; report?: (reason: string) => void; timeoutMs?: number }): Promise<T> {
    await this.watcher.ready;
    const timeoutMs = options?.timeoutMs ?? this.o.resourceTimeoutMs;
    return await new Promise<T>((resolve, reject) => {
      let last = '';
      // A pod just created may not have reached the watch yet: it is gone only once it was seen.
      let seen = false;
      const finish = (fn: () => void) => {
        clearTimeout(timer);
        off();
        options?.signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const check = () => {
        const p = this.watcher.pods.get(pod);
        if (p) seen = true;
        else if (!seen) return;
        const s = podState(p);
        if (s.kind === 'pending' && s.reason !== last) {
          last = s.reason;
          options?.report?.(s.reason);
        }
        try {
          const v = done(p);
          if (v !== undefined) finish(() => resolve(v));
        } catch (err) {
          finish(() => reject(err as Error));
        }
        if (this.watcher.error && isForbidden(this.watcher.error)) finish(() => reject(this.watcher.error!));
      };
      const onAbort = () => finish(() => reject(new SkeinError('cancelled', `The start of pod ${pod} was cancelled.`)));
      const timer = setTimeout(() => {
        const p = this.watcher.pods.get(pod);
        const s = podState(p);
        const unsched = p?.status?.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False');
        finish(() => reject(unsched ? new PodUnschedulableError(pod, this.o.namespace, unsched.message ?? '', timeoutMs) : new ResourceTimeoutError(`${what} (pod ${this.o.namespace}/${pod})`, timeoutMs, s.kind === 'pending' ? s.reason : s.kind)));
      }, timeoutMs);
      const off = this.watcher.onChange(check);
      options?.signal?.addEventListener('abort', onAbort);
      if (options?.signal?.aborted) onAbort();
      else check();
    });
  }

  /** Fails with the pod's trouble (with its log) instead of waiting on. */
  async #troubleWithLogs(pod: string, p: k8s.V1Pod | undefined): Promise<never> {
    let logs = await this.podLogs(pod, 40).catch(() => [] as string[]);
    // A container in CrashLoopBackOff has restarted: its output is the previous run's.
    if (logs.length === 0) logs = await this.podLogs(pod, 40, true).catch(() => [] as string[]);
    const s = podState(p, logs);
    throw s.kind === 'failed' ? s.error : new SkeinError('internal', `pod ${pod}: unexpected state ${s.kind}`);
  }

  async #createPod(body: k8s.V1Pod): Promise<k8s.V1Pod> {
    const name = body.metadata!.name!;
    try {
      return await call(this.#what('create', 'pod', name), () => this.core.createNamespacedPod({ namespace: this.o.namespace, body }));
    } catch (err) {
      if (!isConflict(err)) throw err;
      // A pod of that name from an earlier run of this worker (ended, or still terminating): remove it first.
      const old = await call(this.#what('read', 'pod', name), () => this.core.readNamespacedPod({ name, namespace: this.o.namespace })).catch(() => undefined);
      const ended = !old || old.metadata?.deletionTimestamp || old.status?.phase === 'Failed' || old.status?.phase === 'Succeeded';
      if (!ended) throw err;
      await this.deletePod(name, 0);
      return await call(this.#what('create', 'pod', name), () => this.core.createNamespacedPod({ namespace: this.o.namespace, body }));
    }
  }

  /** Deletes a pod and waits until it is gone (bounded by resourceTimeout). */
  async deletePod(name: string, gracePeriodSeconds?: number): Promise<void> {
    try {
      await call(this.#what('delete', 'pod', name), () => this.core.deleteNamespacedPod({ name, namespace: this.o.namespace, ...(gracePeriodSeconds !== undefined ? { gracePeriodSeconds } : {}) }));
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    await this.#waitForGone(name);
  }

  async #waitForGone(name: string): Promise<void> {
    const end = Date.now() + this.o.resourceTimeoutMs;
    for (;;) {
      const p = await this.core.readNamespacedPod({ name, namespace: this.o.namespace }).catch((e: unknown) => (apiError('read pod', e) instanceof Error && isNotFound(apiError('read pod', e)) ? undefined : null));
      if (p === undefined) return;
      if (Date.now() > end) throw new ResourceTimeoutError(`the deletion of pod ${this.o.namespace}/${name}`, this.o.resourceTimeoutMs, p?.metadata?.deletionTimestamp ? 'terminating' : 'still there');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The ready line the process printed, read from its log while the pod runs. */
  async #readyLine(pod: string, options?: { signal?: AbortSignal; report?: (reason: string) => void }): Promise<{ address: string; dashboard?: string; lines: string[] }> {
    const end = Date.now() + this.o.resourceTimeoutMs;
    let reported = false;
    for (;;) {
      if (options?.signal?.aborted) throw new SkeinError('cancelled', `The start of pod ${pod} was cancelled.`);
      const p = this.watcher.pods.get(pod);
      const s = podState(p);
      if (s.kind === 'failed') await this.#troubleWithLogs(pod, p);
      if (s.kind === 'gone') throw new PodStartError(pod, this.o.namespace, 'Deleted', 'the pod was deleted while it started', 'Something else deleted it (kubectl delete, a namespace deletion, an eviction).');
      const lines = await this.podLogs(pod).catch(() => [] as string[]);
      for (const l of lines) {
        const r = parseReadyLine(l);
        if (r) return { address: r.address, ...(r.role === 'scheduler' ? { dashboard: r.dashboard } : {}), lines };
      }
      if (!reported) {
        options?.report?.(`pod ${pod} is Running, waiting for its ready line`);
        reported = true;
      }
      if (Date.now() > end) throw new ResourceTimeoutError(`the ready line of pod ${this.o.namespace}/${pod}`, this.o.resourceTimeoutMs, lines.slice(-3).join(' | '));
      await new Promise((r) => setTimeout(r, 150));
    }
  }

  // ---- the scheduler ----
  async startScheduler(): Promise<PodHandle> {
    const o = this.o;
    await this.watcher.ready.catch((err: unknown) => {
      throw err;
    });
    const podName = schedulerPodName(o.name);
    let pod: k8s.V1Pod;
    if (this.connectOnly) {
      pod = await call(this.#what('read', 'pod', podName), () => this.core.readNamespacedPod({ name: podName, namespace: o.namespace })).catch((err: unknown) => {
        if (isNotFound(err)) throw new SkeinError('not_found', `No Skein cluster named ${o.name} in namespace ${o.namespace} (no pod ${podName}). List them with: skein kubernetes list, or kubectl get pods -l ${LABEL_CLUSTER}.`);
        throw err;
      });
      const container = pod.spec?.containers.find((c) => c.name === 'scheduler');
      if (o.adoptImage && container?.image) o.image = container.image;
      // Reaching a TLS scheduler without credentials fails with a gRPC error that does not say why.
      const args = container?.args ?? [];
      const missing = [args.includes('--tls-cert') && !o.security?.tls ? 'TLS credentials' : '', args.includes('--auth-token-file') && !o.security?.token ? 'its token' : ''].filter(Boolean);
      if (missing.length) {
        throw new InvalidArgumentError(
          `Cluster ${o.name} in namespace ${o.namespace} runs with security (its scheduler has ${args.includes('--tls-cert') ? '--tls-cert' : '--auth-token-file'}), and no ${missing.join(' or ')} were given: pass security (Security.fromFiles({ caFile, certFile, keyFile, tokenFile }), or the Security it was started with); on the command line --tls-ca-file, --tls-cert, --tls-key, --auth-token-file.`,
        );
      }
    } else {
      if (o.security?.enabled) {
        const files = schedulerLaunchOf(o).files;
        await call(this.#what('create', 'secret', credentialsSecretName(o.name, 'scheduler')), () => this.core.createNamespacedSecret({ namespace: o.namespace, body: credentialsSecret(o, 'scheduler', files, this.#labels) }));
      }
      try {
        pod = await call(this.#what('create', 'pod', podName), () => this.core.createNamespacedPod({ namespace: o.namespace, body: schedulerPod(o, this.#labels) }));
      } catch (err) {
        if (isConflict(err)) throw new ClusterExistsError(o.name, o.namespace);
        await this.deleteAll().catch(() => undefined);
        throw err;
      }
    }
    this.#owner = { apiVersion: 'v1', kind: 'Pod', name: podName, uid: pod.metadata!.uid!, controller: true, blockOwnerDeletion: true };
    const handle = new PodHandle(this, 'scheduler', podName, '', o.shutdownOnClose);
    try {
      if (!this.connectOnly) {
        await call(this.#what('create', 'service', serviceName(o.name)), () => this.core.createNamespacedService({ namespace: o.namespace, body: schedulerService(o, this.#labels, this.#owner!) }));
        if (o.security?.enabled) {
          await call(this.#what('update', 'secret', credentialsSecretName(o.name, 'scheduler')), () =>
            this.core.patchNamespacedSecret({ name: credentialsSecretName(o.name, 'scheduler'), namespace: o.namespace, body: { metadata: { ownerReferences: [this.#owner] } } }, mergePatch),
          );
          const files = workerLaunchOf(o, `${o.name}-worker-0`).files;
          const secret = credentialsSecret(o, 'worker', files, this.#labels);
          secret.metadata!.ownerReferences = [this.#owner];
          await call(this.#what('create', 'secret', secret.metadata!.name!), () => this.core.createNamespacedSecret({ namespace: o.namespace, body: secret }));
        }
      }
      await this.#waitPod(podName, 'the scheduler to be ready', (p) => {
        const s = podState(p);
        if (s.kind === 'failed' || s.kind === 'gone') return 'trouble' as const;
        return s.kind === 'ready' ? ('ready' as const) : undefined;
      }).then(async (r) => {
        if (r === 'trouble') await this.#troubleWithLogs(podName, this.watcher.pods.get(podName));
      });
      const ready = await this.#readyLine(podName).catch(() => undefined);
      if (ready) handle.setLogs(ready.lines);
      const reach = await this.#reach(podName);
      handle.address = reach.address;
      handle.dashboardLink = reach.dashboard;
      this.#handles.set('scheduler', handle);
      return handle;
    } catch (err) {
      if (!this.connectOnly) await this.deleteAll().catch(() => undefined);
      throw err;
    }
  }

  /** The scheduler's address from here: the Service directly when it answers, else a port-forward. */
  async #reach(podName: string): Promise<{ address: string; dashboard: string }> {
    const r = await reachScheduler({
      kc: this.o.kc,
      namespace: this.o.namespace,
      service: serviceName(this.o.name),
      pod: () => podName,
      portForward: this.o.portForward,
      timeoutMs: this.o.resourceTimeoutMs,
      tls: !!this.o.security?.tls,
      forwards: this.#forwards,
    });
    this.connection = r.connection;
    return r;
  }

  // ---- workers ----
  async startWorker(name: string, _schedulerAddress: string, options?: StartWorkerOptions): Promise<PodHandle> {
    // The workers reach the scheduler through its Service inside the cluster, not the address this process uses.
    const o = this.o;
    options?.report(`creating pod ${name}`);
    await this.#createPod(workerPod(o, name, this.#labels, this.#owner));
    try {
      await this.#waitPod(
        name,
        `worker ${name} to run`,
        (p) => {
          const s = podState(p);
          if (s.kind === 'failed' || s.kind === 'gone') return 'trouble' as const;
          return s.kind === 'running' || s.kind === 'ready' ? ('running' as const) : undefined;
        },
        { ...(options ? { signal: options.signal, report: options.report } : {}) },
      ).then(async (r) => {
        if (r === 'trouble') await this.#troubleWithLogs(name, this.watcher.pods.get(name));
      });
      const ready = await this.#readyLine(name, options);
      const handle = new PodHandle(this, name, name, ready.address, true);
      handle.setLogs(ready.lines);
      this.#handles.set(name, handle);
      void handle.exited.then(() => this.#handles.get(name) === handle && this.#handles.delete(name));
      // It may have ended between the ready line and now.
      const s = podState(this.watcher.pods.get(name));
      if (s.kind === 'gone' || s.kind === 'failed') handle.ended(null);
      return handle;
    } catch (err) {
      await this.deletePod(name, 0).catch(() => undefined);
      throw err;
    }
  }

  /** Deletes every object of the cluster (the label selector) and waits until none is left. */
  async deleteAll(): Promise<void> {
    const o = this.o;
    const sel = `${LABEL_CLUSTER}=${o.name}`;
    const ns = o.namespace;
    await call(`delete the services of cluster ${o.name} in namespace ${ns}`, async () => {
      for (const s of (await this.core.listNamespacedService({ namespace: ns, labelSelector: sel })).items) {
        await this.core.deleteNamespacedService({ name: s.metadata!.name!, namespace: ns }).catch((e: unknown) => (isNotFound(apiError('', e)) ? undefined : Promise.reject(e)));
      }
    });
    await call(`delete the secrets of cluster ${o.name} in namespace ${ns}`, () => this.core.deleteCollectionNamespacedSecret({ namespace: ns, labelSelector: sel }));
    await call(`delete the pods of cluster ${o.name} in namespace ${ns}`, () => this.core.deleteCollectionNamespacedPod({ namespace: ns, labelSelector: sel }));
    const end = Date.now() + o.resourceTimeoutMs;
    for (;;) {
      const left = (await call(`list the pods of cluster ${o.name}`, () => this.core.listNamespacedPod({ namespace: ns, labelSelector: sel }))).items;
      if (left.length === 0) return;
      if (Date.now() > end) throw new ResourceTimeoutError(`the deletion of cluster ${o.name}'s pods`, o.resourceTimeoutMs, left.map((p) => p.metadata?.name).join(', '));
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async close(): Promise<void> {
    try {
      if (this.o.shutdownOnClose) await this.deleteAll();
    } finally {
      for (const f of this.#forwards) f.close();
      this.#unwatch();
      this.watcher.close();
    }
  }
}

function isForbidden(err: Error): boolean {
  return (err as { httpStatus?: number }).httpStatus === 403;
}

/**
 * A Skein cluster on Kubernetes: a scheduler pod and Service, and one pod per worker (so scaling
 * down retires exactly the workers the scheduler picks), all owned by the scheduler pod and
 * labelled `skein.dev/cluster=<name>`. Scales and adapts through the `Cluster` base; `close()`
 * deletes everything it created and waits until it is gone.
 *
 * @example
 * await using cluster = await KubeCluster.start({ name: 'demo', image: 'ghcr.io/skein-dev/skein:0.1.0', nWorkers: 3 });
 * await using client = await Client.connect(cluster);
 */
export class KubeCluster extends Cluster<PodHandle, PodHandle> {
  readonly options: Readonly<Compiled>;
  readonly #backend: KubeBackend;

  constructor(options: KubeClusterOptions = {}, connectOnly = false) {
    const compiled = compile(options, connectOnly);
    const backend = new KubeBackend(compiled, connectOnly);
    super(backend, {
      nWorkers: compiled.nWorkers,
      // Workers added by a KubeCluster.fromName session get their own names.
      namePrefix: connectOnly ? `${compiled.name}-worker-${randomBytes(2).toString('hex')}` : `${compiled.name}-worker`,
      name: `KubeCluster ${compiled.name}`,
      workerStartTimeoutMs: compiled.workerStartTimeoutMs ?? compiled.resourceTimeoutMs,
    });
    this.options = compiled;
    this.#backend = backend;
    // A watcher failure before start (no API server, 403 on list) is reported by start().
    void backend.watcher.ready.catch(() => undefined);
  }

  /** Creates the cluster's pods and Service; resolves once the scheduler and the first workers run. */
  static async start(options: KubeClusterOptions = {}): Promise<KubeCluster> {
    return new KubeCluster(options).start();
  }

  /** Deletes every object of the cluster `name` (pods, service, secrets) and waits until they are gone, without connecting to it. */
  static async delete(name: string, options: Omit<KubeClusterOptions, 'name'> = {}): Promise<void> {
    const backend = new KubeBackend(compile({ ...options, name }, true), true);
    try {
      await backend.deleteAll();
    } finally {
      backend.detaching = true;
      await backend.close();
    }
  }

  /** Connects to a running cluster by name without owning it (close() leaves it running unless shutdownOnClose). */
  static async fromName(name: string, options: Omit<KubeClusterOptions, 'name' | 'nWorkers'> = {}): Promise<KubeCluster> {
    return new KubeCluster({ ...options, name, nWorkers: 0 }, true).start();
  }

  get name(): string {
    return this.options.name;
  }

  /** Stops everything; with shutdownOnClose: false the pods stay (the cluster runs on without this process). */
  override close(): Promise<void> {
    if (!this.options.shutdownOnClose) this.#backend.detaching = true;
    return super.close();
  }

  /** The pod behind a worker of this session, for kubectl (the pod has the worker's name). */
  podOf(worker: string): string | undefined {
    return this.#backend.watcher.pods.has(worker) ? worker : undefined;
  }

  get namespace(): string {
    return this.options.namespace;
  }

  /** How this process reaches the scheduler: 'direct' (the Service address answered) or 'port-forward'. */
  get connection(): string {
    return this.#backend.connection;
  }

  /** The output of every pod of the cluster, read from Kubernetes: { scheduler: [...], <worker>: [...] }. */
  async getLogs(): Promise<Record<string, string[]>> {
    const out: Record<string, string[]> = {};
    const pods = (await call(`list the pods of cluster ${this.name}`, () => this.#backend.core.listNamespacedPod({ namespace: this.namespace, labelSelector: `${LABEL_CLUSTER}=${this.name}` }))).items;
    for (const p of pods) {
      const podName = p.metadata!.name!;
      const key = podName === schedulerPodName(this.name) ? 'scheduler' : podName;
      out[key] = await this.#backend.podLogs(podName).catch((err: unknown) => [`(no log: ${(err as Error).message})`]);
    }
    return out;
  }

  /** The names of this cluster's pods now (from the API server). */
  podNames(): string[] {
    return [...this.#backend.watcher.pods.keys()].sort();
  }
}

export type { PodHandle, WorkerHandle };

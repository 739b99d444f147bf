import * as k8s from '@kubernetes/client-node';
import { SchedulerAdmin } from '@skein/cluster';
import { InvalidArgumentError, SkeinError, type Security } from '@skein/common';
import { ResourceTimeoutError } from './errors.js';
import { call, contextNamespace, isNotFound, loadKubeConfig, mergePatch, reachScheduler, type KubeConfigSource, type PortForwarder } from './kube.js';

export interface HelmClusterOptions {
  /** The Helm release of the charts/skein chart (`helm install RELEASE charts/skein`). */
  releaseName: string;
  /** Default: the kubeconfig context's namespace, else 'default'. */
  namespace?: string;
  kubeconfig?: KubeConfigSource;
  /** 'auto' (default): directly when the Service answers, else a port-forward; true: always; false: never. */
  portForward?: boolean | 'auto';
  /** How long each wait on Kubernetes may take, ms (default 60 s). */
  resourceTimeoutMs?: number;
  security?: Security;
}

const LABEL_INSTANCE = 'app.kubernetes.io/instance';
const LABEL_NAME = 'app.kubernetes.io/name';
const LABEL_COMPONENT = 'app.kubernetes.io/component';
const LABEL_GROUP = 'skein.dev/worker-group';
const DELETION_COST = 'controller.kubernetes.io/pod-deletion-cost';

/**
 * The workers to remove, as the Cluster base picks them: the ones the scheduler names to close,
 * then the idle ones holding the least data, then the newest pods.
 */
export async function pickVictims(admin: SchedulerAdmin, pods: k8s.V1Pod[], count: number): Promise<string[]> {
  const created = new Map(pods.map((p) => [p.metadata!.name!, String(p.metadata?.creationTimestamp instanceof Date ? p.metadata.creationTimestamp.toISOString() : p.metadata?.creationTimestamp ?? '')]));
  const info = new Map((await admin.workers()).map((w) => [w.name, w]));
  const suggested = new Set((await admin.adaptiveTarget(5_000)).workersToClose);
  const score = (n: string) => [suggested.has(n) ? 0 : 1, info.get(n)?.processing ?? 0, info.get(n)?.managedBytes ?? 0] as const;
  return [...created.keys()]
    .sort((a, b) => {
      const x = score(a);
      const y = score(b);
      return x[0] - y[0] || x[1] - y[1] || x[2] - y[2] || created.get(b)!.localeCompare(created.get(a)!);
    })
    .slice(0, count);
}

/** The chart's object names: the release name when it already says skein, else `<release>-skein` (charts/skein/templates/_helpers.tpl). */
export function helmFullname(releaseName: string): string {
  const full = releaseName.includes('skein') ? releaseName : `${releaseName}-skein`;
  return full.slice(0, 40).replace(/-+$/, '');
}

/**
 * A Skein cluster installed with the project's Helm chart (charts/skein). It connects to the
 * release's scheduler Service (directly or through a port-forward) and scales its worker
 * Deployments; it never creates or deletes the release (`helm install` / `helm uninstall` do).
 *
 * `scale(n)` retires the workers it removes through the scheduler first (the scheduler's choice:
 * idle ones holding the least data), marks exactly those pods with the lowest
 * `controller.kubernetes.io/pod-deletion-cost`, then lowers the Deployment's replicas, so the
 * ReplicaSet deletes those pods and not others. There is no `adapt()`: see the README.
 */
export class HelmCluster {
  readonly #core: k8s.CoreV1Api;
  readonly #apps: k8s.AppsV1Api;
  readonly #forwards: PortForwarder[] = [];
  #admin: SchedulerAdmin | undefined;
  schedulerAddress = '';
  dashboardLink = '';
  connection: 'direct' | 'port-forward' | '' = '';

  private constructor(
    readonly releaseName: string,
    readonly namespace: string,
    readonly kc: k8s.KubeConfig,
    readonly resourceTimeoutMs: number,
    readonly security: Security | undefined,
  ) {
    this.#core = kc.makeApiClient(k8s.CoreV1Api);
    this.#apps = kc.makeApiClient(k8s.AppsV1Api);
  }

  /** Connects to the scheduler of an installed release. */
  static async connect(options: HelmClusterOptions): Promise<HelmCluster> {
    if (!options?.releaseName) throw new InvalidArgumentError('HelmCluster.connect needs releaseName: the name given to helm install.');
    const kc = loadKubeConfig(options.kubeconfig);
    const c = new HelmCluster(options.releaseName, options.namespace ?? contextNamespace(kc), kc, options.resourceTimeoutMs ?? 60_000, options.security);
    const service = `${helmFullname(c.releaseName)}-scheduler`;
    await call(`read service ${service} in namespace ${c.namespace}`, () => c.#core.readNamespacedService({ name: service, namespace: c.namespace })).catch((err: unknown) => {
      if (isNotFound(err)) {
        throw new SkeinError('not_found', `No Skein Helm release ${c.releaseName} in namespace ${c.namespace} (no service ${service}). Install it with: helm install ${c.releaseName} charts/skein --namespace ${c.namespace}`);
      }
      throw err;
    });
    const schedulerPod = await c.#readySchedulerPod();
    const r = await reachScheduler({
      kc,
      namespace: c.namespace,
      service,
      pod: () => schedulerPod,
      portForward: options.portForward ?? 'auto',
      timeoutMs: c.resourceTimeoutMs,
      tls: !!options.security?.tls,
      forwards: c.#forwards,
    });
    c.schedulerAddress = r.address;
    c.dashboardLink = r.dashboard;
    c.connection = r.connection;
    c.#admin = new SchedulerAdmin(r.address, options.security ? { security: options.security } : {});
    return c;
  }

  async #readySchedulerPod(): Promise<string> {
    const sel = `${LABEL_INSTANCE}=${this.releaseName},${LABEL_NAME}=skein,${LABEL_COMPONENT}=scheduler`;
    const end = Date.now() + this.resourceTimeoutMs;
    for (;;) {
      const pods = (await call(`list the scheduler pods of release ${this.releaseName}`, () => this.#core.listNamespacedPod({ namespace: this.namespace, labelSelector: sel }))).items;
      const ready = pods.find((p) => !p.metadata?.deletionTimestamp && p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'));
      if (ready) return ready.metadata!.name!;
      if (Date.now() > end) throw new ResourceTimeoutError(`a ready scheduler pod of release ${this.releaseName}`, this.resourceTimeoutMs, pods.map((p) => `${p.metadata?.name} ${p.status?.phase}`).join(', '));
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** The worker Deployment of a group: `<fullname>-worker` (the default group) or `<fullname>-worker-<group>`. */
  deploymentName(group?: string): string {
    return `${helmFullname(this.releaseName)}-worker${group ? `-${group}` : ''}`;
  }

  #pods(group: string | undefined): Promise<k8s.V1Pod[]> {
    const sel = `${LABEL_INSTANCE}=${this.releaseName},${LABEL_COMPONENT}=worker,${LABEL_GROUP}=${group ?? 'default'}`;
    return call(`list the worker pods of release ${this.releaseName}`, () => this.#core.listNamespacedPod({ namespace: this.namespace, labelSelector: sel })).then((l) => l.items.filter((p) => !p.metadata?.deletionTimestamp));
  }

  /** The replicas of a worker group's Deployment. */
  async replicas(group?: string): Promise<number> {
    const d = await call(`read deployment ${this.deploymentName(group)}`, () => this.#apps.readNamespacedDeployment({ name: this.deploymentName(group), namespace: this.namespace }));
    return d.spec?.replicas ?? 0;
  }

  /**
   * Sets the number of workers of a group (default: the chart's `worker` group). Scaling down
   * retires the scheduler's choice first and makes the Deployment delete exactly those pods.
   */
  async scale(n: number, group?: string): Promise<void> {
    if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(`HelmCluster.scale needs a whole number of workers ≥ 0, got ${n}.`);
    const name = this.deploymentName(group);
    const current = await this.replicas(group);
    if (n < current) {
      const pods = await this.#pods(group);
      const byName = new Set(pods.map((p) => p.metadata!.name!));
      const victims = await pickVictims(this.#admin!, pods, current - n);
      // The ReplicaSet deletes the pods of the lowest deletion cost first: exactly these.
      for (const v of victims) {
        await call(`annotate pod ${v}`, () => this.#core.patchNamespacedPod({ name: v, namespace: this.namespace, body: { metadata: { annotations: { [DELETION_COST]: '-1000' } } } }, mergePatch));
      }
      await this.#admin!.retireWorkers(victims);
    }
    await call(`scale deployment ${name} in namespace ${this.namespace}`, () => this.#apps.patchNamespacedDeploymentScale({ name, namespace: this.namespace, body: { spec: { replicas: n } } }, mergePatch));
  }

  /** Not offered: see the README ("Why HelmCluster has no adapt"). */
  adapt(): never {
    throw new SkeinError(
      'unimplemented',
      'HelmCluster has no adapt(): the release\'s worker Deployment belongs to Helm (helm upgrade resets its replicas) and Kubernetes, not the scheduler, would pick the pods to remove. Use KubeCluster for adaptive clusters, or scale(n) here.',
    );
  }

  /** Resolves once `n` workers are registered with the scheduler. */
  async waitForWorkers(n: number, options: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = options.timeoutMs ?? this.resourceTimeoutMs;
    const end = Date.now() + timeoutMs;
    for (;;) {
      const have = (await this.#admin!.workers()).length;
      if (have >= n) return;
      if (Date.now() > end) throw new ResourceTimeoutError(`${n} workers of release ${this.releaseName} registering`, timeoutMs, `${have} registered`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** The output of the release's pods, by pod name. */
  async getLogs(): Promise<Record<string, string[]>> {
    const pods = (await call(`list the pods of release ${this.releaseName}`, () => this.#core.listNamespacedPod({ namespace: this.namespace, labelSelector: `${LABEL_INSTANCE}=${this.releaseName},${LABEL_NAME}=skein` }))).items;
    const out: Record<string, string[]> = {};
    for (const p of pods) {
      const name = p.metadata!.name!;
      const text = await this.#core.readNamespacedPodLog({ name, namespace: this.namespace }).catch(() => '');
      out[name] = String(text).split('\n').filter(Boolean);
    }
    return out;
  }

  /** Closes this connection (port-forwards, the scheduler channel). The release keeps running: `helm uninstall` removes it. */
  async close(): Promise<void> {
    this.#admin?.close();
    for (const f of this.#forwards) f.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

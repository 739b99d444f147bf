import type * as k8s from '@kubernetes/client-node';
import { schedulerLaunch, workerLaunch, type Launch, type WorkerLaunchSpec } from '@skein/cluster';
import type { LaunchFile, Security } from '@skein/common';

/** Labels on every object of a cluster: one label-selector delete removes them all. */
export const LABEL_CLUSTER = 'skein.dev/cluster';
export const LABEL_COMPONENT = 'skein.dev/component';
export const LABEL_WORKER = 'skein.dev/worker';
export const SCHEDULER_PORT = 8786;
export const DASHBOARD_PORT = 8787;
/** Where the credential Secrets are mounted in the pods. */
export const CREDENTIALS_DIR = '/etc/skein/credentials';
/**
 * The group of the image's `node` user (image/Dockerfile: USER node, uid and gid 1000). Secret
 * files are root's; with the pod's fsGroup set to it, the kubelet lets that group read them
 * (mode 0600 becomes 0640), so the non-root processes can read their credentials.
 */
export const IMAGE_GID = 1000;

export interface PodResources {
  requests?: Record<string, string>;
  limits?: Record<string, string>;
}

/** What the pod builders need (compiled KubeCluster options). */
/**
 * The `skein worker` options of every worker pod: the deployment contract's own (memoryLimit may be
 * a fraction of the pod's memory, modules are paths inside the image).
 */
export type KubeWorkerOptions = Pick<WorkerLaunchSpec, 'nthreads' | 'memoryLimit' | 'resources' | 'modules' | 'nanny' | 'deathTimeoutMs' | 'extraArgs'>;

export interface SpecInput {
  name: string;
  namespace: string;
  image: string;
  imagePullPolicy: string | undefined;
  resources: PodResources | undefined;
  env: k8s.V1EnvVar[];
  security: Security | undefined;
  serviceType: 'ClusterIP' | 'NodePort' | 'LoadBalancer';
  schedulerArgs: string[];
  /** The scheduler's idle timeout (ms): it exits 0 after that long with no client and no task. */
  idleTimeoutMs?: number;
  dashboard: boolean;
  worker: KubeWorkerOptions;
  schedulerSpec: Partial<k8s.V1PodSpec> | undefined;
  workerSpec: Partial<k8s.V1PodSpec> | undefined;
  /** Grace of a stopping pod, s. */
  terminationGracePeriodSeconds: number;
}

export const schedulerPodName = (name: string) => `${name}-scheduler`;
export const serviceName = (name: string) => `${name}-scheduler`;
export const credentialsSecretName = (name: string, role: 'scheduler' | 'worker') => `${name}-${role}-credentials`;

/** The in-cluster address of the scheduler (the Service's DNS name). */
export function inClusterAddress(s: Pick<SpecInput, 'name' | 'namespace' | 'security'>): string {
  return `${s.security?.tls ? 'tls' : 'tcp'}://${serviceName(s.name)}.${s.namespace}.svc.cluster.local:${SCHEDULER_PORT}`;
}

const podIPEnv: k8s.V1EnvVar = { name: 'SKEIN_POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } };

function envOf(launch: Launch, user: k8s.V1EnvVar[]): k8s.V1EnvVar[] {
  return [podIPEnv, ...Object.entries(launch.env).map(([name, value]) => ({ name, value })), ...user];
}

/** A Secret holding a launch's credential files (file name → contents). */
export function credentialsSecret(s: SpecInput, role: 'scheduler' | 'worker', files: LaunchFile[], labels: Record<string, string>): k8s.V1Secret {
  const data: Record<string, string> = {};
  for (const f of files) {
    const base = f.path.slice(f.path.lastIndexOf('/') + 1);
    data[base] = Buffer.from(f.contents).toString('base64');
  }
  return { apiVersion: 'v1', kind: 'Secret', metadata: { name: credentialsSecretName(s.name, role), namespace: s.namespace, labels }, type: 'Opaque', data };
}

function credentialsVolume(s: SpecInput, role: 'scheduler' | 'worker'): { volumes: k8s.V1Volume[]; mounts: k8s.V1VolumeMount[]; podSpec: Partial<k8s.V1PodSpec> } {
  if (!s.security?.enabled) return { volumes: [], mounts: [], podSpec: {} };
  return {
    volumes: [{ name: 'skein-credentials', secret: { secretName: credentialsSecretName(s.name, role), defaultMode: 0o600 } }],
    mounts: [{ name: 'skein-credentials', mountPath: CREDENTIALS_DIR, readOnly: true }],
    // schedulerSpec / workerSpec replace it (an image whose user has another group).
    podSpec: { securityContext: { fsGroup: IMAGE_GID } },
  };
}

/** A pod spec with the user's overrides merged in: lists of containers by name, everything else replaced. */
export function mergePodSpec(base: k8s.V1PodSpec, extra: Partial<k8s.V1PodSpec> | undefined): k8s.V1PodSpec {
  if (!extra) return base;
  const out: k8s.V1PodSpec = { ...base, ...extra, containers: base.containers };
  for (const c of extra.containers ?? []) {
    const i = out.containers.findIndex((x) => x.name === c.name);
    if (i < 0) out.containers = [...out.containers, c];
    else {
      const cur = out.containers[i]!;
      out.containers = out.containers.map((x, j) =>
        j === i ? { ...cur, ...c, env: [...(cur.env ?? []), ...(c.env ?? [])], volumeMounts: [...(cur.volumeMounts ?? []), ...(c.volumeMounts ?? [])] } : x,
      );
    }
  }
  if (extra.volumes) out.volumes = [...(base.volumes ?? []), ...extra.volumes];
  return out;
}

export function schedulerLaunchOf(s: SpecInput): Launch {
  return schedulerLaunch({
    host: '0.0.0.0',
    port: SCHEDULER_PORT,
    dashboardAddress: s.dashboard ? `:${DASHBOARD_PORT}` : null,
    ...(s.idleTimeoutMs !== undefined ? { idleTimeoutMs: s.idleTimeoutMs } : {}),
    extraArgs: s.schedulerArgs,
    ...(s.security?.enabled ? { security: s.security, credentialsDir: CREDENTIALS_DIR } : {}),
  });
}

export function schedulerPod(s: SpecInput, labels: Record<string, string>): k8s.V1Pod {
  const launch = schedulerLaunchOf(s);
  const cred = credentialsVolume(s, 'scheduler');
  const ports: k8s.V1ContainerPort[] = [{ name: 'tcp-comm', containerPort: SCHEDULER_PORT, protocol: 'TCP' }];
  if (s.dashboard) ports.push({ name: 'http-dashboard', containerPort: DASHBOARD_PORT, protocol: 'TCP' });
  const spec: k8s.V1PodSpec = {
    // With an idle timeout the scheduler's exit 0 is the end (the pod stays Succeeded, its
    // workers lose it and stop); a crash is still restarted.
    restartPolicy: s.idleTimeoutMs !== undefined ? 'OnFailure' : 'Always',
    terminationGracePeriodSeconds: s.terminationGracePeriodSeconds,
    containers: [
      {
        name: 'scheduler',
        image: s.image,
        ...(s.imagePullPolicy ? { imagePullPolicy: s.imagePullPolicy } : {}),
        args: launch.argv,
        env: envOf(launch, s.env),
        ports,
        readinessProbe: { tcpSocket: { port: 'tcp-comm' }, periodSeconds: 2, failureThreshold: 3 },
        ...(s.resources ? { resources: s.resources } : {}),
        ...(cred.mounts.length ? { volumeMounts: cred.mounts } : {}),
      },
    ],
    ...(cred.volumes.length ? { volumes: cred.volumes } : {}),
    ...cred.podSpec,
  };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: schedulerPodName(s.name), namespace: s.namespace, labels: { ...labels, [LABEL_COMPONENT]: 'scheduler' } },
    spec: mergePodSpec(spec, s.schedulerSpec),
  };
}

export function schedulerService(s: SpecInput, labels: Record<string, string>, owner: k8s.V1OwnerReference): k8s.V1Service {
  const ports: k8s.V1ServicePort[] = [{ name: 'tcp-comm', port: SCHEDULER_PORT, targetPort: 'tcp-comm' as unknown as k8s.IntOrString, protocol: 'TCP' }];
  if (s.dashboard) ports.push({ name: 'http-dashboard', port: DASHBOARD_PORT, targetPort: 'http-dashboard' as unknown as k8s.IntOrString, protocol: 'TCP' });
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: serviceName(s.name), namespace: s.namespace, labels: { ...labels, [LABEL_COMPONENT]: 'scheduler' }, ownerReferences: [owner] },
    spec: { type: s.serviceType, selector: { [LABEL_CLUSTER]: s.name, [LABEL_COMPONENT]: 'scheduler' }, ports },
  };
}

export function workerLaunchOf(s: SpecInput, workerName: string): Launch {
  const w = s.worker;
  return workerLaunch({
    scheduler: inClusterAddress(s),
    name: workerName,
    // Kubernetes expands $(SKEIN_POD_IP) from the env: the worker listens on and advertises its pod IP.
    host: '$(SKEIN_POD_IP)',
    ...(w.nthreads !== undefined ? { nthreads: w.nthreads } : {}),
    ...(w.memoryLimit !== undefined ? { memoryLimit: w.memoryLimit } : {}),
    ...(w.resources ? { resources: w.resources } : {}),
    ...(w.modules ? { modules: w.modules } : {}),
    ...(w.nanny !== undefined ? { nanny: w.nanny } : {}),
    ...(w.deathTimeoutMs !== undefined ? { deathTimeoutMs: w.deathTimeoutMs } : {}),
    ...(w.extraArgs ? { extraArgs: w.extraArgs } : {}),
    ...(s.security?.enabled ? { security: s.security, credentialsDir: CREDENTIALS_DIR } : {}),
  });
}

/** One pod per worker, owned by the scheduler pod (deleting it deletes the workers). */
export function workerPod(s: SpecInput, workerName: string, labels: Record<string, string>, owner: k8s.V1OwnerReference | undefined): k8s.V1Pod {
  const launch = workerLaunchOf(s, workerName);
  const cred = credentialsVolume(s, 'worker');
  const spec: k8s.V1PodSpec = {
    // A worker that dies is replaced by the Cluster base (it decides whether it is still wanted).
    restartPolicy: 'Never',
    terminationGracePeriodSeconds: s.terminationGracePeriodSeconds,
    containers: [
      {
        name: 'worker',
        image: s.image,
        ...(s.imagePullPolicy ? { imagePullPolicy: s.imagePullPolicy } : {}),
        args: launch.argv,
        env: envOf(launch, s.env),
        ...(s.resources ? { resources: s.resources } : {}),
        ...(cred.mounts.length ? { volumeMounts: cred.mounts } : {}),
      },
    ],
    ...(cred.volumes.length ? { volumes: cred.volumes } : {}),
    ...cred.podSpec,
  };
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: workerName,
      namespace: s.namespace,
      labels: { ...labels, [LABEL_COMPONENT]: 'worker', [LABEL_WORKER]: workerName },
      ...(owner ? { ownerReferences: [owner] } : {}),
    },
    spec: mergePodSpec(spec, s.workerSpec),
  };
}

/**
 * @module @skein/deploy-kubernetes
 * Skein on Kubernetes: `KubeCluster` (a scheduler pod and Service, one pod per worker, scale and
 * adapt through the scheduler) and `HelmCluster` (a release of the charts/skein chart), built on
 * `@kubernetes/client-node`. The `skein-kubernetes` command (`skein kubernetes`) starts, scales and
 * closes clusters.
 *
 * @example
 * import { KubeCluster } from '@skein/deploy-kubernetes';
 * import { Client } from '@skein/client';
 *
 * await using cluster = await KubeCluster.start({ name: 'demo', nWorkers: 2 });
 * await using client = await Client.connect(cluster);
 * await cluster.scale(5);
 */
export { KubeCluster, KubeBackend, DEFAULT_IMAGE, podState, type KubeClusterOptions } from './kube-cluster.js';
export type { KubeWorkerOptions } from './specs.js';
export {
  KubernetesApiError,
  KubernetesForbiddenError,
  PodStartError,
  PodImagePullError,
  PodUnschedulableError,
  PodCrashedError,
  ResourceTimeoutError,
  SchedulerUnreachableError,
  ClusterExistsError,
} from './errors.js';
export { loadKubeConfig, contextNamespace, type KubeConfigSource } from './kube.js';
export {
  LABEL_CLUSTER,
  LABEL_COMPONENT,
  LABEL_WORKER,
  CREDENTIALS_DIR,
  IMAGE_GID,
  schedulerPod,
  schedulerService,
  workerPod,
  inClusterAddress,
  mergePodSpec,
  type PodResources,
} from './specs.js';
export { runKubernetesCli, parseKubernetesArgs, scaleCluster } from './cli-main.js';
export { HelmCluster, helmFullname, type HelmClusterOptions } from './helm-cluster.js';

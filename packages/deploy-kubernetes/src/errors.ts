import { SkeinError, type SkeinErrorOptions } from '@skein/common';

/** A Kubernetes API call failed (the API server's Status: code, reason, message). */
export class KubernetesApiError extends SkeinError {
  readonly httpStatus: number;
  readonly reason: string;
  readonly what: string;
  constructor(what: string, httpStatus: number, reason: string, message: string, options?: SkeinErrorOptions) {
    const code = httpStatus === 404 ? 'not_found' : httpStatus === 409 ? 'already_exists' : httpStatus === 401 ? 'unauthenticated' : httpStatus === 403 ? 'permission_denied' : httpStatus === 422 || httpStatus === 400 ? 'invalid_argument' : httpStatus === 0 ? 'unavailable' : 'internal';
    super(code, `Kubernetes refused to ${what}: ${httpStatus ? `HTTP ${httpStatus} ${reason}` : reason}: ${message}`, { ...options, details: { what, httpStatus, reason, message } });
    this.httpStatus = httpStatus;
    this.reason = reason;
    this.what = what;
  }
}

/** RBAC: the account of the kubeconfig may not do this (HTTP 403 Forbidden). */
export class KubernetesForbiddenError extends KubernetesApiError {
  constructor(what: string, message: string, options?: SkeinErrorOptions) {
    super(what, 403, 'Forbidden', `${message}. Grant the account of your kubeconfig a Role with this verb on this resource in the namespace (pods, services, secrets: create, get, list, watch, delete; pods/log: get; pods/portforward: create), or use another namespace.`, options);
  }
}

/** A pod did not start: its image cannot be pulled, it cannot be scheduled, it crashes, its config is wrong. */
export class PodStartError extends SkeinError {
  readonly pod: string;
  readonly namespace: string;
  /** Kubernetes' reason: ErrImagePull, ImagePullBackOff, Unschedulable, CrashLoopBackOff, Error, CreateContainerConfigError... */
  readonly reason: string;
  constructor(pod: string, namespace: string, reason: string, message: string, hint: string, options?: SkeinErrorOptions & { logs?: string[] }) {
    const tail = options?.logs?.length ? `\nLast output:\n${options.logs.slice(-15).join('\n')}` : '';
    super('failed_precondition', `Pod ${namespace}/${pod} did not start: ${reason}${message ? `: ${message}` : ''}. ${hint}${tail}`, { ...options, details: { pod, namespace, reason, message } });
    this.pod = pod;
    this.namespace = namespace;
    this.reason = reason;
  }
}

/** The image cannot be pulled (ErrImagePull, ImagePullBackOff, InvalidImageName). */
export class PodImagePullError extends PodStartError {
  readonly image: string;
  constructor(pod: string, namespace: string, reason: string, message: string, image: string) {
    super(pod, namespace, reason, message, `Check the image name and tag (${image}), that the registry is reachable from the cluster, and imagePullSecrets for a private registry.`);
    this.image = image;
  }
}

/** No node can take the pod (PodScheduled=False, reason Unschedulable) within resourceTimeout. */
export class PodUnschedulableError extends PodStartError {
  constructor(pod: string, namespace: string, message: string, timeoutMs: number) {
    super(pod, namespace, 'Unschedulable', message, `It stayed unschedulable for ${timeoutMs} ms (resourceTimeout): lower its resources requests, add nodes, or check node selectors and taints.`);
  }
}

/** The container keeps crashing (CrashLoopBackOff), or exited for good (phase Failed). */
export class PodCrashedError extends PodStartError {
  readonly exitCode: number | undefined;
  constructor(pod: string, namespace: string, reason: string, exitCode: number | undefined, logs: string[]) {
    super(pod, namespace, reason, exitCode === undefined ? '' : `exit code ${exitCode}`, 'Its output is below (and in kubectl logs); check the command, the arguments and the image.', { logs });
    this.exitCode = exitCode;
  }
}

/** Something did not reach the wanted state within resourceTimeout. */
export class ResourceTimeoutError extends SkeinError {
  constructor(what: string, timeoutMs: number, last: string) {
    super('deadline_exceeded', `${what} did not happen within ${timeoutMs} ms (resourceTimeout)${last ? `; last seen: ${last}` : ''}. Raise resourceTimeout, or look at the pods with kubectl describe.`, {
      details: { what, timeoutMs, last },
    });
  }
}

/** The scheduler's service answers neither directly nor through a port-forward. */
export class SchedulerUnreachableError extends SkeinError {
  constructor(service: string, tried: string[], why: string) {
    super('unavailable', `Cannot reach the scheduler of service ${service} (tried ${tried.join(', ') || 'nothing'}): ${why}. Use portForward: true from outside the cluster, or schedulerServiceType: 'LoadBalancer'.`, {
      details: { service, tried, why },
    });
  }
}

/** A cluster of that name already runs in the namespace. */
export class ClusterExistsError extends SkeinError {
  constructor(name: string, namespace: string) {
    super('already_exists', `A Skein cluster named ${name} already runs in namespace ${namespace} (pod ${name}-scheduler). Connect to it with KubeCluster.fromName('${name}'), or choose another name.`, {
      details: { name, namespace },
    });
  }
}

/**
 * @module @skein/kube-emulator
 * A Kubernetes API server emulator (node:http) that the real `@kubernetes/client-node` and
 * `kubectl` talk to, and a kubelet emulator that runs each pod as local processes on its own
 * loopback address. For tests only; not published.
 *
 * @example
 * const emu = await KubeEmulator.start({ images: { 'skein:*': { entrypoint: [process.execPath, cli] } } });
 * const kc = new KubeConfig();
 * kc.loadFromString(emu.kubeconfig());
 * await emu.close();
 */
import { ApiServer, type ApiServerOptions, type Fault } from './server.js';
import { Kubelet, type ImageSpec, type KubeletOptions } from './kubelet.js';
import type { Obj } from './util.js';

export interface KubeEmulatorOptions extends ApiServerOptions, Partial<KubeletOptions> {}

/** The API server and one node's kubelet, started together. */
export class KubeEmulator {
  private constructor(
    readonly api: ApiServer,
    readonly kubelet: Kubelet,
  ) {}

  static async start(options: KubeEmulatorOptions = {}): Promise<KubeEmulator> {
    const api = new ApiServer(options);
    await api.listen();
    const kubelet = new Kubelet(api, { images: {}, ...options });
    kubelet.start();
    return new KubeEmulator(api, kubelet);
  }

  get url(): string {
    return this.api.url;
  }

  /** A kubeconfig (YAML) pointing at the emulator. */
  kubeconfig(namespace = 'default'): string {
    return this.api.kubeconfig(namespace);
  }

  writeKubeconfig(path: string, namespace = 'default'): string {
    return this.api.writeKubeconfig(path, namespace);
  }

  /** Answers matching requests with an error (403 Forbidden for RBAC, ...) until removed. */
  fault(f: Fault): () => void {
    this.api.faults.push(f);
    return () => {
      const i = this.api.faults.indexOf(f);
      if (i >= 0) this.api.faults.splice(i, 1);
    };
  }

  /** Keeps the pods this returns a message for Pending and Unschedulable (the message is the scheduler's reason). */
  unschedulable(fn: ((pod: Obj) => string | undefined) | undefined): void {
    this.api.unschedulable = fn;
  }

  /** The objects of a resource (all namespaces, or one). */
  list(resource: string, namespace?: string, labelSelector?: string): Obj[] {
    return this.api.list(resource, namespace, labelSelector);
  }

  async close(): Promise<void> {
    await this.kubelet.close();
    await this.api.close();
  }
}

export { ApiServer, RESOURCES, isReady } from './server.js';
export { Kubelet, expand } from './kubelet.js';
export type { ApiServerOptions, Fault, ImageSpec, KubeletOptions, Obj };

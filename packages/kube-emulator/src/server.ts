import { randomUUID, createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import {
  ApiError,
  applyJsonPatch,
  applyMergePatch,
  applyStrategicMergePatch,
  checkName,
  clone,
  fieldsMatch,
  labelsMatch,
  now,
  parseFieldSelector,
  parseLabelSelector,
  randomSuffix,
  selectorObject,
  selectorString,
  status,
  type Obj,
} from './util.js';

/** One kind the emulator serves. */
interface ResourceType {
  resource: string;
  group: string; // '' for the core group
  version: string;
  kind: string;
  namespaced: boolean;
  shortNames?: string[];
  subresources?: string[];
}

export const RESOURCES: ResourceType[] = [
  { resource: 'namespaces', group: '', version: 'v1', kind: 'Namespace', namespaced: false, shortNames: ['ns'], subresources: ['status'] },
  { resource: 'pods', group: '', version: 'v1', kind: 'Pod', namespaced: true, shortNames: ['po'], subresources: ['status', 'log', 'portforward'] },
  { resource: 'services', group: '', version: 'v1', kind: 'Service', namespaced: true, shortNames: ['svc'], subresources: ['status'] },
  { resource: 'secrets', group: '', version: 'v1', kind: 'Secret', namespaced: true },
  { resource: 'configmaps', group: '', version: 'v1', kind: 'ConfigMap', namespaced: true, shortNames: ['cm'] },
  { resource: 'serviceaccounts', group: '', version: 'v1', kind: 'ServiceAccount', namespaced: true, shortNames: ['sa'] },
  { resource: 'events', group: '', version: 'v1', kind: 'Event', namespaced: true, shortNames: ['ev'] },
  { resource: 'deployments', group: 'apps', version: 'v1', kind: 'Deployment', namespaced: true, shortNames: ['deploy'], subresources: ['status', 'scale'] },
];
const byPath = new Map(RESOURCES.map((r) => [`${r.group}/${r.resource}`, r]));
const apiVersionOf = (r: ResourceType) => (r.group ? `${r.group}/${r.version}` : r.version);

/** A fault to answer instead of the real reply (RBAC 403s and the like), for tests. */
export interface Fault {
  verb?: 'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'deletecollection';
  resource?: string;
  namespace?: string;
  code: number;
  reason: string;
  message?: string;
  /** Answer this many times (default: until removed). */
  times?: number;
}

export type StoreEvent = { type: 'ADDED' | 'MODIFIED' | 'DELETED'; rv: number; res: ResourceType; obj: Obj };
type Watcher = { res: ResourceType; ns: string | undefined; match: (o: Obj) => boolean; send: (e: { type: string; object: Obj }) => void; end: () => void };

export interface ApiServerOptions {
  /** How often a watch with allowWatchBookmarks gets a BOOKMARK (default 5 s). */
  bookmarkIntervalMs?: number;
  /** Watch events kept for resuming from a resourceVersion (default 5000): older ones answer 410. */
  historySize?: number;
}

/**
 * The API server: objects in a Map keyed by (resource, namespace, name), one resourceVersion
 * counter, a bounded event history for watches, the deployment controller and the garbage
 * collector. The kubelet emulator subscribes to it (`onEvent`).
 */
export class ApiServer {
  readonly objects = new Map<string, Obj>();
  #rv = 0;
  #history: StoreEvent[] = [];
  #watchers = new Set<Watcher>();
  #listeners = new Set<(e: StoreEvent) => void>();
  readonly faults: Fault[] = [];
  /** Every request, as `VERB path` (for tests that check what a client did). */
  readonly requests: string[] = [];
  #server: Server | undefined;
  #open = new Set<ServerResponse>();
  url = '';
  /** Handlers of the upgrade (WebSocket) requests: the kubelet's port-forward. */
  onUpgrade: ((req: IncomingMessage, socket: import('node:stream').Duplex, head: Buffer) => void) | undefined;
  /** The kubelet answers `pods/{name}/log`. */
  onLogs: ((pod: Obj, query: URLSearchParams, res: ServerResponse) => void) | undefined;
  /** Decides whether a new pod can be scheduled: a message (the Unschedulable reason) or undefined. */
  unschedulable: ((pod: Obj) => string | undefined) | undefined;
  /** Says whether a pod being deleted still runs (the kubelet then removes it once it stopped). */
  podRunning: ((pod: Obj) => boolean) | undefined;
  readonly #bookmarkMs: number;
  readonly #historySize: number;

  constructor(options: ApiServerOptions = {}) {
    this.#bookmarkMs = options.bookmarkIntervalMs ?? 5_000;
    this.#historySize = options.historySize ?? 5_000;
    for (const ns of ['default', 'kube-system']) this.create(this.type('namespaces'), undefined, { metadata: { name: ns } });
  }

  type(resource: string): ResourceType {
    const r = RESOURCES.find((t) => t.resource === resource);
    if (!r) throw new Error(`kube-emulator: unknown resource ${resource}`);
    return r;
  }

  get resourceVersion(): number {
    return this.#rv;
  }

  async listen(): Promise<string> {
    const server = createServer((req, res) => {
      this.#open.add(res);
      res.on('close', () => this.#open.delete(res));
      this.#handle(req, res).catch((err: unknown) => this.#fail(res, err));
    });
    server.on('upgrade', (req, socket, head) => {
      if (this.onUpgrade) this.onUpgrade(req, socket, head);
      else socket.destroy();
    });
    this.#server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    this.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return this.url;
  }

  async close(): Promise<void> {
    for (const w of this.#watchers) this.#watchers.delete(w);
    for (const res of this.#open) res.destroy();
    const s = this.#server;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }

  /** Subscribes to every change (the kubelet and kube-proxy emulators use this). */
  onEvent(fn: (e: StoreEvent) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Ends every open watch stream (as an API server restart or a load balancer timeout does). */
  dropWatches(): number {
    const n = this.#watchers.size;
    for (const w of [...this.#watchers]) w.end();
    return n;
  }

  /** Drops the watch history, so a watch resuming from an older resourceVersion gets 410 Expired. */
  compact(): void {
    this.#history = [];
  }

  // Service IPs: 127.43.0.0/16 from a random start, so emulators in parallel test processes rarely meet.
  #serviceIPs = Math.floor(Math.random() * 60_000) + 256;
  #allocateServiceIP(): string {
    const n = this.#serviceIPs++ % 65_024;
    return `127.43.${(n >> 8) + 1}.${(n & 255) || 1}`;
  }
  #nodePorts = new Set<number>();
  #allocateNodePort(): number {
    for (;;) {
      const p = 30000 + Math.floor(Math.random() * 2768);
      if (!this.#nodePorts.has(p)) {
        this.#nodePorts.add(p);
        return p;
      }
    }
  }

  // ---- the store ----
  #key(res: ResourceType, ns: string | undefined, name: string): string {
    return `${res.group}/${res.resource}/${ns ?? ''}/${name}`;
  }

  get(res: ResourceType | string, ns: string | undefined, name: string): Obj | undefined {
    const r = typeof res === 'string' ? this.type(res) : res;
    const o = this.objects.get(this.#key(r, r.namespaced ? ns : undefined, name));
    return o ? clone(o) : undefined;
  }

  #mustGet(res: ResourceType, ns: string | undefined, name: string): Obj {
    const o = this.objects.get(this.#key(res, res.namespaced ? ns : undefined, name));
    if (!o) throw new ApiError(404, 'NotFound', `${res.resource}${res.group ? '.' + res.group : ''} "${name}" not found`, { name, kind: res.resource, ...(res.group ? { group: res.group } : {}) });
    return o;
  }

  list(res: ResourceType | string, ns?: string, labelSelector?: string, fieldSelector?: string): Obj[] {
    const r = typeof res === 'string' ? this.type(res) : res;
    const ls = parseLabelSelector(labelSelector);
    const fs = parseFieldSelector(fieldSelector);
    const out: Obj[] = [];
    const prefix = `${r.group}/${r.resource}/`;
    for (const [k, o] of this.objects) {
      if (!k.startsWith(prefix)) continue;
      if (r.namespaced && ns !== undefined && o['metadata']['namespace'] !== ns) continue;
      if (!labelsMatch(ls, o['metadata']['labels']) || !fieldsMatch(fs, o)) continue;
      out.push(clone(o));
    }
    return out;
  }

  #emit(type: StoreEvent['type'], res: ResourceType, obj: Obj): void {
    const e: StoreEvent = { type, rv: this.#rv, res, obj: clone(obj) };
    this.#history.push(e);
    if (this.#history.length > this.#historySize) this.#history.splice(0, this.#history.length - this.#historySize);
    for (const w of this.#watchers) {
      if (w.res !== res) continue;
      if (w.ns !== undefined && obj['metadata']['namespace'] !== w.ns) continue;
      if (w.match(obj)) w.send({ type, object: withKind(res, e.obj) });
    }
    for (const l of this.#listeners) l(e);
  }

  #write(res: ResourceType, obj: Obj, type: 'ADDED' | 'MODIFIED'): Obj {
    this.#rv++;
    obj['metadata']['resourceVersion'] = String(this.#rv);
    const stored = withKind(res, obj);
    this.objects.set(this.#key(res, obj['metadata']['namespace'], obj['metadata']['name']), stored);
    this.#emit(type, res, stored);
    return clone(stored);
  }

  /** Creates an object (the POST path, also used by the controllers). */
  create(res: ResourceType, ns: string | undefined, body: Obj): Obj {
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ApiError(400, 'BadRequest', 'the request body must be a JSON object');
    const obj = clone(body);
    const md = (obj['metadata'] ??= {}) as Obj;
    if (res.namespaced) {
      if (md['namespace'] !== undefined && md['namespace'] !== ns) {
        throw new ApiError(400, 'BadRequest', `the namespace of the provided object (${md['namespace']}) does not match the namespace sent on the request (${ns})`);
      }
      md['namespace'] = ns;
      if (!this.objects.has(this.#key(this.type('namespaces'), undefined, ns!))) {
        throw new ApiError(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });
      }
      const nsObj = this.objects.get(this.#key(this.type('namespaces'), undefined, ns!))!;
      if (nsObj['metadata']['deletionTimestamp']) {
        throw new ApiError(403, 'Forbidden', `${res.resource} "${md['name'] ?? md['generateName']}" is forbidden: unable to create new content in namespace ${ns} because it is being terminated`);
      }
    } else delete md['namespace'];
    if (!md['name'] && md['generateName']) md['name'] = `${md['generateName']}${randomSuffix()}`;
    checkName(res.kind, md['name']);
    if (this.objects.has(this.#key(res, md['namespace'], md['name']))) {
      throw new ApiError(409, 'AlreadyExists', `${res.resource}${res.group ? '.' + res.group : ''} "${md['name']}" already exists`, { name: md['name'], kind: res.resource, ...(res.group ? { group: res.group } : {}) });
    }
    md['uid'] = randomUUID();
    md['creationTimestamp'] = now();
    delete md['deletionTimestamp'];
    if (res.resource === 'deployments') md['generation'] = 1;
    this.#validate(res, obj);
    this.#defaults(res, obj);
    const created = this.#write(res, obj, 'ADDED');
    this.#afterWrite(res, created);
    return created;
  }

  #validate(res: ResourceType, obj: Obj): void {
    const name = obj['metadata']['name'];
    const invalid = (field: string, msg: string) => {
      throw new ApiError(422, 'Invalid', `${res.kind} "${name}" is invalid: ${field}: ${msg}`, { name, kind: res.kind, causes: [{ reason: 'FieldValueInvalid', field, message: msg }] });
    };
    if (res.resource === 'pods' || res.resource === 'deployments') {
      const spec = res.resource === 'pods' ? obj['spec'] : obj['spec']?.['template']?.['spec'];
      const containers = spec?.['containers'];
      if (!Array.isArray(containers) || containers.length === 0) invalid(res.resource === 'pods' ? 'spec.containers' : 'spec.template.spec.containers', 'Required value');
      for (const [i, c] of (containers as Obj[]).entries()) {
        if (!c['name']) invalid(`spec.containers[${i}].name`, 'Required value');
        if (!c['image']) invalid(`spec.containers[${i}].image`, 'Required value');
      }
    }
    if (res.resource === 'deployments') {
      const sel = obj['spec']?.['selector'];
      if (!sel) invalid('spec.selector', 'Required value');
      if (!labelsMatch(selectorObject(sel), obj['spec']?.['template']?.['metadata']?.['labels'])) {
        invalid('spec.template.metadata.labels', '`selector` does not match template `labels`');
      }
    }
    if (res.resource === 'services') {
      for (const p of (obj['spec']?.['ports'] ?? []) as Obj[]) if (!(Number(p['port']) > 0)) invalid('spec.ports.port', 'must be between 1 and 65535');
    }
  }

  #defaults(res: ResourceType, obj: Obj): void {
    if (res.resource === 'pods') {
      obj['spec']['restartPolicy'] ??= 'Always';
      obj['spec']['terminationGracePeriodSeconds'] ??= 30;
      obj['status'] = { phase: 'Pending', conditions: [], qosClass: 'BestEffort' };
    }
    if (res.resource === 'namespaces') obj['status'] = { phase: 'Active' };
    if (res.resource === 'deployments') {
      obj['spec']['replicas'] ??= 1;
      obj['status'] = { observedGeneration: 0, replicas: 0, readyReplicas: 0, availableReplicas: 0, updatedReplicas: 0 };
    }
    if (res.resource === 'services') {
      const spec = (obj['spec'] ??= {}) as Obj;
      spec['type'] ??= 'ClusterIP';
      for (const p of (spec['ports'] ?? []) as Obj[]) {
        p['protocol'] ??= 'TCP';
        p['targetPort'] ??= p['port'];
      }
      if (spec['clusterIP'] !== 'None') {
        spec['clusterIP'] = this.#allocateServiceIP();
        spec['clusterIPs'] = [spec['clusterIP']];
      }
      if (spec['type'] === 'NodePort' || spec['type'] === 'LoadBalancer') {
        for (const p of (spec['ports'] ?? []) as Obj[]) p['nodePort'] ??= this.#allocateNodePort();
      }
      obj['status'] = { loadBalancer: {} };
    }
    if (res.resource === 'secrets') {
      obj['type'] ??= 'Opaque';
      if (obj['stringData']) {
        obj['data'] ??= {};
        for (const [k, v] of Object.entries(obj['stringData'] as Obj)) obj['data'][k] = Buffer.from(String(v)).toString('base64');
        delete obj['stringData'];
      }
    }
  }

  /** Replaces an object (PUT, patches, the controllers' status writes). */
  update(res: ResourceType, ns: string | undefined, name: string, body: Obj, opts: { subresource?: string; checkVersion?: boolean } = {}): Obj {
    const cur = this.#mustGet(res, ns, name);
    if (!body || typeof body !== 'object' || Array.isArray(body)) throw new ApiError(400, 'BadRequest', 'the request body must be a JSON object');
    const next = clone(body);
    const md = (next['metadata'] ??= {}) as Obj;
    if (md['name'] !== undefined && md['name'] !== name) throw new ApiError(400, 'BadRequest', `the name of the object (${md['name']}) does not match the name on the URL (${name})`);
    if (opts.checkVersion !== false && md['resourceVersion'] !== undefined && md['resourceVersion'] !== cur['metadata']['resourceVersion']) {
      throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on ${res.resource}${res.group ? '.' + res.group : ''} "${name}": the object has been modified; please apply your changes to the latest version and try again`, {
        name,
        kind: res.resource,
      });
    }
    // Identity and server-owned fields stay.
    for (const k of ['uid', 'creationTimestamp', 'namespace', 'name', 'deletionTimestamp', 'deletionGracePeriodSeconds', 'generation']) {
      if (cur['metadata'][k] !== undefined) md[k] = cur['metadata'][k];
      else delete md[k];
    }
    if (opts.subresource === 'status') {
      const merged = clone(cur);
      merged['status'] = next['status'];
      return this.#commit(res, cur, merged);
    }
    if (res.resource !== 'namespaces' && res.resource !== 'secrets' && res.resource !== 'configmaps' && res.resource !== 'serviceaccounts' && res.resource !== 'events') {
      next['status'] = cur['status']; // the main resource cannot change the status
    }
    if (res.resource === 'deployments' && JSON.stringify(next['spec']) !== JSON.stringify(cur['spec'])) md['generation'] = (cur['metadata']['generation'] ?? 1) + 1;
    if (res.resource === 'services') {
      next['spec']['clusterIP'] = cur['spec']['clusterIP'];
      next['spec']['clusterIPs'] = cur['spec']['clusterIPs'];
    }
    this.#validate(res, next);
    return this.#commit(res, cur, next);
  }

  #commit(res: ResourceType, cur: Obj, next: Obj): Obj {
    const written = this.#write(res, next, 'MODIFIED');
    // A terminating object whose last finalizer went away is removed now.
    if (cur['metadata']['deletionTimestamp'] && !(written['metadata']['finalizers']?.length) && !this.podRunning?.(written)) {
      this.#remove(res, written);
    } else this.#afterWrite(res, written);
    return written;
  }

  /** Writes a status (the controllers and the kubelet). */
  setStatus(res: ResourceType | string, ns: string | undefined, name: string, mutate: (status: Obj, obj: Obj) => void): Obj | undefined {
    const r = typeof res === 'string' ? this.type(res) : res;
    const cur = this.objects.get(this.#key(r, r.namespaced ? ns : undefined, name));
    if (!cur) return undefined;
    const next = clone(cur);
    next['status'] ??= {};
    mutate(next['status'], next);
    if (JSON.stringify(next) === JSON.stringify(cur)) return clone(cur);
    const written = this.#write(r, next, 'MODIFIED');
    if (r.resource === 'pods') this.#reconcileOwnerOf(written);
    return written;
  }

  /** Deletes an object: graceful for running pods (the kubelet removes them), cascading to its dependents. */
  delete(res: ResourceType, ns: string | undefined, name: string, opts: { gracePeriodSeconds?: number; propagationPolicy?: string } = {}): Obj {
    const cur = this.#mustGet(res, ns, name);
    if (opts.propagationPolicy === 'Orphan') {
      for (const dep of this.#dependents(cur['metadata']['uid'])) {
        const o = this.objects.get(dep.key)!;
        const next = clone(o);
        next['metadata']['ownerReferences'] = (next['metadata']['ownerReferences'] as Obj[]).filter((r) => r['uid'] !== cur['metadata']['uid']);
        this.#write(dep.res, next, 'MODIFIED');
      }
    }
    const graceful = (res.resource === 'pods' && this.podRunning?.(cur) && opts.gracePeriodSeconds !== 0) || (cur['metadata']['finalizers']?.length ?? 0) > 0 || res.resource === 'namespaces';
    if (!graceful) {
      if (res.resource === 'pods' && cur['metadata']['deletionTimestamp'] === undefined) {
        // Tell the kubelet (a MODIFIED with the deletion stamp), then remove.
        const next = clone(cur);
        next['metadata']['deletionTimestamp'] = now();
        next['metadata']['deletionGracePeriodSeconds'] = 0;
        this.#write(res, next, 'MODIFIED');
      }
      return this.#remove(res, this.objects.get(this.#key(res, cur['metadata']['namespace'], name))!);
    }
    if (cur['metadata']['deletionTimestamp'] && !(res.resource === 'pods' && opts.gracePeriodSeconds === 0)) return clone(cur);
    const next = clone(cur);
    next['metadata']['deletionTimestamp'] = now();
    if (res.resource === 'pods') next['metadata']['deletionGracePeriodSeconds'] = opts.gracePeriodSeconds ?? cur['spec']['terminationGracePeriodSeconds'] ?? 30;
    if (res.resource === 'namespaces') next['status'] = { phase: 'Terminating' };
    const written = this.#write(res, next, 'MODIFIED');
    if (res.resource === 'namespaces') {
      // Delete everything in it, then the namespace once it is empty.
      for (const r of RESOURCES) if (r.namespaced) for (const o of this.list(r, name)) this.#tryDelete(r, name, o['metadata']['name'], opts.gracePeriodSeconds);
      this.#maybeFinishNamespace(name);
    }
    return written;
  }

  #tryDelete(res: ResourceType, ns: string | undefined, name: string, gracePeriodSeconds?: number): void {
    try {
      this.delete(res, ns, name, gracePeriodSeconds === undefined ? {} : { gracePeriodSeconds });
    } catch (err) {
      if (!(err instanceof ApiError && err.code === 404)) throw err;
    }
  }

  #maybeFinishNamespace(ns: string): void {
    const nsObj = this.objects.get(this.#key(this.type('namespaces'), undefined, ns));
    if (!nsObj?.['metadata']['deletionTimestamp']) return;
    for (const r of RESOURCES) if (r.namespaced && this.list(r, ns).length > 0) return;
    this.#remove(this.type('namespaces'), nsObj);
  }

  /** Removes a terminating pod once its process stopped (the kubelet calls this). */
  finishPod(ns: string, name: string): void {
    const o = this.objects.get(this.#key(this.type('pods'), ns, name));
    if (o?.['metadata']['deletionTimestamp']) this.#remove(this.type('pods'), o);
  }

  #remove(res: ResourceType, obj: Obj): Obj {
    const key = this.#key(res, obj['metadata']['namespace'], obj['metadata']['name']);
    if (!this.objects.has(key)) return clone(obj);
    this.objects.delete(key);
    this.#rv++;
    const gone = clone(obj);
    gone['metadata']['resourceVersion'] = String(this.#rv);
    this.#emit('DELETED', res, gone);
    // The garbage collector: dependents whose owner is gone go too (background propagation).
    for (const dep of this.#dependents(obj['metadata']['uid'])) {
      const d = this.objects.get(dep.key);
      if (d) this.#tryDelete(dep.res, d['metadata']['namespace'], d['metadata']['name']);
    }
    if (res.namespaced) {
      this.#reconcileOwnerOf(gone);
      this.#maybeFinishNamespace(obj['metadata']['namespace']);
    }
    return gone;
  }

  #dependents(uid: string): Array<{ key: string; res: ResourceType }> {
    const out: Array<{ key: string; res: ResourceType }> = [];
    for (const [k, o] of this.objects) {
      if ((o['metadata']['ownerReferences'] as Obj[] | undefined)?.some((r) => r['uid'] === uid)) {
        const [group, resource] = k.split('/');
        out.push({ key: k, res: byPath.get(`${group}/${resource}`)! });
      }
    }
    return out;
  }

  // ---- controllers: the scheduler (node assignment), the deployment controller ----
  #afterWrite(res: ResourceType, obj: Obj): void {
    if (res.resource === 'pods' && !obj['spec']['nodeName'] && !obj['metadata']['deletionTimestamp']) this.#schedule(obj);
    if (res.resource === 'deployments') this.#reconcileDeployment(obj['metadata']['namespace'], obj['metadata']['name']);
    if (res.resource === 'pods') this.#reconcileOwnerOf(obj);
  }

  #schedule(pod: Obj): void {
    const why = this.unschedulable?.(pod);
    const ns = pod['metadata']['namespace'];
    const name = pod['metadata']['name'];
    if (why) {
      this.setStatus('pods', ns, name, (s) => {
        s['conditions'] = [{ type: 'PodScheduled', status: 'False', reason: 'Unschedulable', message: why, lastTransitionTime: now() }];
      });
      return;
    }
    const cur = this.objects.get(this.#key(this.type('pods'), ns, name))!;
    const next = clone(cur);
    next['spec']['nodeName'] = 'emulator-node';
    next['status']['conditions'] = [{ type: 'PodScheduled', status: 'True', lastTransitionTime: now() }];
    this.#write(this.type('pods'), next, 'MODIFIED');
  }

  #reconcileOwnerOf(pod: Obj): void {
    for (const ref of (pod['metadata']['ownerReferences'] ?? []) as Obj[]) {
      if (ref['kind'] === 'Deployment') this.#reconcileDeployment(pod['metadata']['namespace'], ref['name']);
    }
  }

  #reconciling = new Set<string>();
  #reconcileDeployment(ns: string, name: string): void {
    const key = `${ns}/${name}`;
    if (this.#reconciling.has(key)) return;
    this.#reconciling.add(key);
    try {
      const d = this.objects.get(this.#key(this.type('deployments'), ns, name));
      if (!d || d['metadata']['deletionTimestamp']) return;
      const uid = d['metadata']['uid'];
      const owned = this.list('pods', ns).filter((p) => (p['metadata']['ownerReferences'] as Obj[] | undefined)?.some((r) => r['uid'] === uid));
      const live = owned.filter((p) => !p['metadata']['deletionTimestamp']);
      const want = Number(d['spec']['replicas'] ?? 1);
      const template = d['spec']['template'] as Obj;
      const hash = createHash('sha256').update(JSON.stringify(template)).digest('hex').slice(0, 10);
      for (let i = live.length; i < want; i++) {
        const md = clone(template['metadata'] ?? {});
        md['labels'] = { ...(md['labels'] ?? {}), 'pod-template-hash': hash };
        md['generateName'] = `${name}-${hash}-`;
        md['ownerReferences'] = [{ apiVersion: 'apps/v1', kind: 'Deployment', name, uid, controller: true, blockOwnerDeletion: true }];
        delete md['name'];
        this.create(this.type('pods'), ns, { apiVersion: 'v1', kind: 'Pod', metadata: md, spec: clone(template['spec']) });
      }
      if (live.length > want) {
        // The ReplicaSet's order: unscheduled, then pending, then not ready, then the newest.
        const rank = (p: Obj) => (!p['spec']['nodeName'] ? 0 : p['status']['phase'] === 'Pending' ? 1 : !isReady(p) ? 2 : 3);
        // then the lower controller.kubernetes.io/pod-deletion-cost, then the newest.
        const cost = (p: Obj) => Number(p['metadata']['annotations']?.['controller.kubernetes.io/pod-deletion-cost'] ?? 0) || 0;
        const victims = [...live].sort((a, b) => rank(a) - rank(b) || cost(a) - cost(b) || String(b['metadata']['creationTimestamp']).localeCompare(String(a['metadata']['creationTimestamp'])) || Number(b['metadata']['resourceVersion']) - Number(a['metadata']['resourceVersion']));
        for (const p of victims.slice(0, live.length - want)) this.#tryDelete(this.type('pods'), ns, p['metadata']['name']);
      }
      const pods = this.list('pods', ns).filter((p) => (p['metadata']['ownerReferences'] as Obj[] | undefined)?.some((r) => r['uid'] === uid) && !p['metadata']['deletionTimestamp']);
      const ready = pods.filter(isReady).length;
      this.setStatus('deployments', ns, name, (s, o) => {
        s['observedGeneration'] = o['metadata']['generation'];
        s['replicas'] = pods.length;
        s['updatedReplicas'] = pods.length;
        s['readyReplicas'] = ready;
        s['availableReplicas'] = ready;
        s['unavailableReplicas'] = Math.max(0, pods.length - ready);
        s['conditions'] = [{ type: 'Available', status: ready >= want ? 'True' : 'False', reason: ready >= want ? 'MinimumReplicasAvailable' : 'MinimumReplicasUnavailable' }];
      });
    } finally {
      this.#reconciling.delete(key);
    }
  }

  // ---- HTTP ----
  #fail(res: ServerResponse, err: unknown): void {
    const e = err instanceof ApiError ? err : new ApiError(500, 'InternalError', `Internal error occurred: ${(err as Error)?.stack ?? String(err)}`);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.writeHead(e.code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(status(e.code, e.reason, e.message, e.details)));
  }

  #json(res: ServerResponse, code: number, body: unknown): void {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  }

  async #body(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    if (!text) return undefined;
    try {
      return JSON.parse(text);
    } catch {
      throw new ApiError(400, 'BadRequest', `the request body is not valid JSON: ${text.slice(0, 100)}`);
    }
  }

  #fault(verb: Fault['verb'], res: ResourceType | undefined, ns: string | undefined): void {
    const i = this.faults.findIndex((f) => (!f.verb || f.verb === verb) && (!f.resource || f.resource === res?.resource) && (!f.namespace || f.namespace === ns));
    if (i < 0) return;
    const f = this.faults[i]!;
    if (f.times !== undefined && --f.times <= 0) this.faults.splice(i, 1);
    const message =
      f.message ??
      (f.code === 403
        ? `${res?.resource ?? 'resource'} is forbidden: User "system:serviceaccount:${ns ?? 'default'}:default" cannot ${verb} resource "${res?.resource}" in API group "${res?.group ?? ''}"${ns ? ` in the namespace "${ns}"` : ''}`
        : f.reason);
    throw new ApiError(f.code, f.reason, message, { kind: res?.resource });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const q = url.searchParams;
    const method = req.method ?? 'GET';
    this.requests.push(`${method} ${url.pathname}${url.search}`);
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    // Discovery.
    if (url.pathname === '/version') return this.#json(res, 200, { major: '1', minor: '32', gitVersion: 'v1.32.0-kube-emulator', platform: 'linux/amd64', goVersion: 'go1.23' });
    if (url.pathname === '/healthz' || url.pathname === '/readyz' || url.pathname === '/livez') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok');
      return;
    }
    if (url.pathname === '/api') return this.#json(res, 200, { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: this.url.slice(7) }] });
    if (url.pathname === '/apis') {
      return this.#json(res, 200, {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: [{ name: 'apps', versions: [{ groupVersion: 'apps/v1', version: 'v1' }], preferredVersion: { groupVersion: 'apps/v1', version: 'v1' } }],
      });
    }
    let group = '';
    let rest: string[];
    if (parts[0] === 'api' && parts[1] === 'v1') rest = parts.slice(2);
    else if (parts[0] === 'apis' && parts[1] === 'apps' && parts[2] === 'v1') {
      group = 'apps';
      rest = parts.slice(3);
    } else throw new ApiError(404, 'NotFound', `the server could not find the requested resource (${method} ${url.pathname})`);
    if (rest.length === 0) return this.#json(res, 200, discovery(group));
    // /namespaces/{ns}/{resource}/... or /{resource}/...
    let ns: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3 && byPath.has(`${group}/${rest[2]}`)) {
      ns = rest[1];
      rest = rest.slice(2);
    }
    const [resource, name, sub] = rest;
    const type = byPath.get(`${group}/${resource}`);
    if (!type) throw new ApiError(404, 'NotFound', `the server could not find the requested resource (${method} ${url.pathname})`);
    if (!type.namespaced) ns = undefined;
    if (sub !== undefined && !(type.subresources ?? []).includes(sub)) throw new ApiError(404, 'NotFound', `the server could not find the requested resource (${method} ${url.pathname})`);
    const watch = q.get('watch') === 'true' || q.get('watch') === '1';
    const verb: Fault['verb'] =
      method === 'GET' ? (name ? 'get' : watch ? 'watch' : 'list') : method === 'POST' ? 'create' : method === 'PUT' ? 'update' : method === 'PATCH' ? 'patch' : name ? 'delete' : 'deletecollection';
    this.#fault(verb, type, ns);

    if (method === 'GET' && !name) {
      if (watch) return this.#watch(req, res, type, ns, q);
      return this.#list(res, type, ns, q);
    }
    if (method === 'GET' && name) {
      const o = clone(this.#mustGet(type, ns, name));
      if (sub === 'log') {
        if (!this.onLogs) throw new ApiError(400, 'BadRequest', 'no kubelet: logs are not available');
        return this.onLogs(o, q, res);
      }
      if (sub === 'scale') return this.#json(res, 200, scaleOf(o));
      return this.#json(res, 200, withKind(type, o));
    }
    if (method === 'POST' && !name) {
      const body = (await this.#body(req)) as Obj;
      if (q.get('dryRun')) return this.#json(res, 201, body);
      return this.#json(res, 201, this.create(type, ns, body));
    }
    if (method === 'PUT' && name) {
      const body = (await this.#body(req)) as Obj;
      if (sub === 'scale') {
        const cur = this.#mustGet(type, ns, name);
        if (body?.['metadata']?.['resourceVersion'] && body['metadata']['resourceVersion'] !== cur['metadata']['resourceVersion']) {
          throw new ApiError(409, 'Conflict', `Operation cannot be fulfilled on deployments.apps "${name}": the object has been modified; please apply your changes to the latest version and try again`);
        }
        return this.#json(res, 200, scaleOf(this.#setReplicas(type, ns, name, body?.['spec']?.['replicas'])));
      }
      return this.#json(res, 200, this.update(type, ns, name, body, sub ? { subresource: sub } : {}));
    }
    if (method === 'PATCH' && name) {
      const ct = String(req.headers['content-type'] ?? '').split(';')[0]!.trim();
      const body = await this.#body(req);
      const cur = clone(this.#mustGet(type, ns, name));
      const base = sub === 'scale' ? scaleOf(cur) : cur;
      let next: Obj;
      if (ct === 'application/json-patch+json') next = applyJsonPatch(base, body);
      else if (ct === 'application/merge-patch+json') next = applyMergePatch(base, body) as Obj;
      else if (ct === 'application/strategic-merge-patch+json') next = applyStrategicMergePatch(base, body) as Obj;
      else if (ct === 'application/apply-patch+yaml') throw new ApiError(415, 'UnsupportedMediaType', 'server-side apply is not supported by the emulator');
      else throw new ApiError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got ${ct || 'none'})`);
      if (sub === 'scale') return this.#json(res, 200, scaleOf(this.#setReplicas(type, ns, name, next['spec']?.['replicas'])));
      return this.#json(res, 200, this.update(type, ns, name, next, { ...(sub ? { subresource: sub } : {}), checkVersion: false }));
    }
    if (method === 'DELETE') {
      const body = ((await this.#body(req)) ?? {}) as Obj;
      const grace = q.get('gracePeriodSeconds') ?? body['gracePeriodSeconds'];
      const opts = {
        ...(grace !== undefined && grace !== null ? { gracePeriodSeconds: Number(grace) } : {}),
        ...((q.get('propagationPolicy') ?? body['propagationPolicy']) ? { propagationPolicy: String(q.get('propagationPolicy') ?? body['propagationPolicy']) } : {}),
      };
      if (name) return this.#json(res, 200, withKind(type, this.delete(type, ns, name, opts)));
      const items = this.list(type, ns, q.get('labelSelector') ?? undefined, q.get('fieldSelector') ?? undefined);
      const deleted = items.map((o) => this.delete(type, o['metadata']['namespace'], o['metadata']['name'], opts));
      return this.#json(res, 200, { kind: `${type.kind}List`, apiVersion: apiVersionOf(type), metadata: { resourceVersion: String(this.#rv) }, items: deleted });
    }
    throw new ApiError(405, 'MethodNotAllowed', `${method} is not supported on ${url.pathname}`);
  }

  #setReplicas(type: ResourceType, ns: string | undefined, name: string, replicas: unknown): Obj {
    if (!Number.isInteger(replicas) || (replicas as number) < 0) {
      throw new ApiError(422, 'Invalid', `Scale.autoscaling "${name}" is invalid: spec.replicas: Invalid value: ${JSON.stringify(replicas)}: must be greater than or equal to 0`);
    }
    const cur = clone(this.#mustGet(type, ns, name));
    cur['spec']['replicas'] = replicas;
    delete cur['metadata']['resourceVersion'];
    return this.update(type, ns, name, cur);
  }

  #list(res: ServerResponse, type: ResourceType, ns: string | undefined, q: URLSearchParams): void {
    let items = this.list(type, ns, q.get('labelSelector') ?? undefined, q.get('fieldSelector') ?? undefined);
    items.sort((a, b) => `${a['metadata']['namespace']}/${a['metadata']['name']}`.localeCompare(`${b['metadata']['namespace']}/${b['metadata']['name']}`));
    const md: Obj = { resourceVersion: String(this.#rv) };
    const limit = Number(q.get('limit') ?? 0);
    const start = q.get('continue') ? Number(Buffer.from(q.get('continue')!, 'base64').toString()) : 0;
    if (limit > 0) {
      const page = items.slice(start, start + limit);
      if (start + limit < items.length) {
        md['continue'] = Buffer.from(String(start + limit)).toString('base64');
        md['remainingItemCount'] = items.length - start - limit;
      }
      items = page;
    }
    this.#json(res, 200, { kind: `${type.kind}List`, apiVersion: apiVersionOf(type), metadata: md, items: items.map((o) => stripKind(o)) });
  }

  #watch(req: IncomingMessage, res: ServerResponse, type: ResourceType, ns: string | undefined, q: URLSearchParams): void {
    const ls = parseLabelSelector(q.get('labelSelector'));
    const fs = parseFieldSelector(q.get('fieldSelector'));
    const match = (o: Obj) => labelsMatch(ls, o['metadata']?.['labels']) && fieldsMatch(fs, o);
    const rvParam = q.get('resourceVersion');
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    const send = (e: { type: string; object: Obj }) => res.write(JSON.stringify(e) + '\n');
    if (rvParam && rvParam !== '0') {
      const from = Number(rvParam);
      const oldest = this.#history[0]?.rv ?? this.#rv + 1;
      if (!(from >= oldest - 1) && from < this.#rv) {
        send({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${from} (${oldest - 1})`) });
        res.end();
        return;
      }
      for (const e of this.#history) {
        if (e.rv <= from || e.res !== type) continue;
        if (ns !== undefined && e.obj['metadata']['namespace'] !== ns) continue;
        if (match(e.obj)) send({ type: e.type, object: withKind(type, e.obj) });
      }
    } else {
      for (const o of this.list(type, ns)) if (match(o)) send({ type: 'ADDED', object: withKind(type, o) });
    }
    const w: Watcher = { res: type, ns, match, send, end: () => res.end() };
    this.#watchers.add(w);
    const timers: NodeJS.Timeout[] = [];
    if (q.get('allowWatchBookmarks') === 'true') {
      timers.push(
        setInterval(() => send({ type: 'BOOKMARK', object: { kind: type.kind, apiVersion: apiVersionOf(type), metadata: { resourceVersion: String(this.#rv), annotations: { 'k8s.io/initial-events-end': 'true' } } } }), this.#bookmarkMs),
      );
    }
    const t = Number(q.get('timeoutSeconds') ?? 0);
    if (t > 0) timers.push(setTimeout(() => res.end(), t * 1000));
    const stop = () => {
      this.#watchers.delete(w);
      for (const x of timers) clearTimeout(x);
    };
    res.on('close', stop);
    req.on('close', stop);
  }

  /** A kubeconfig for this server (as YAML), for kubectl and client-node. */
  kubeconfig(namespace = 'default'): string {
    return [
      'apiVersion: v1',
      'kind: Config',
      'clusters:',
      '- name: emulator',
      '  cluster:',
      `    server: ${this.url}`,
      '    insecure-skip-tls-verify: true',
      'users:',
      '- name: emulator',
      '  user:',
      '    token: emulator-token',
      'contexts:',
      '- name: emulator',
      '  context:',
      '    cluster: emulator',
      '    user: emulator',
      `    namespace: ${namespace}`,
      'current-context: emulator',
      '',
    ].join('\n');
  }

  writeKubeconfig(path: string, namespace = 'default'): string {
    writeFileSync(path, this.kubeconfig(namespace), { mode: 0o600 });
    return path;
  }
}

export function isReady(pod: Obj): boolean {
  return ((pod['status']?.['conditions'] ?? []) as Obj[]).some((c) => c['type'] === 'Ready' && c['status'] === 'True');
}

function withKind(res: ResourceType, o: Obj): Obj {
  return { apiVersion: apiVersionOf(res), kind: res.kind, ...o };
}
function stripKind(o: Obj): Obj {
  const { kind: _k, apiVersion: _a, ...rest } = o;
  return rest;
}

function scaleOf(d: Obj): Obj {
  return {
    kind: 'Scale',
    apiVersion: 'autoscaling/v1',
    metadata: { name: d['metadata']['name'], namespace: d['metadata']['namespace'], uid: d['metadata']['uid'], resourceVersion: d['metadata']['resourceVersion'], creationTimestamp: d['metadata']['creationTimestamp'] },
    spec: { replicas: d['spec']['replicas'] },
    status: { replicas: d['status']?.['replicas'] ?? 0, selector: selectorString(d['spec']['selector']) },
  };
}

function discovery(group: string): Obj {
  const verbs = ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'];
  const resources: Obj[] = [];
  for (const r of RESOURCES) {
    if (r.group !== group) continue;
    resources.push({ name: r.resource, singularName: r.kind.toLowerCase(), namespaced: r.namespaced, kind: r.kind, verbs, ...(r.shortNames ? { shortNames: r.shortNames } : {}) });
    for (const s of r.subresources ?? []) {
      if (s === 'scale') resources.push({ name: `${r.resource}/scale`, singularName: '', namespaced: true, group: 'autoscaling', version: 'v1', kind: 'Scale', verbs: ['get', 'patch', 'update'] });
      else if (s === 'status') resources.push({ name: `${r.resource}/status`, singularName: '', namespaced: r.namespaced, kind: r.kind, verbs: ['get', 'patch', 'update'] });
      else if (s === 'log') resources.push({ name: 'pods/log', singularName: '', namespaced: true, kind: 'Pod', verbs: ['get'] });
      else if (s === 'portforward') resources.push({ name: 'pods/portforward', singularName: '', namespaced: true, kind: 'PodPortForwardOptions', verbs: ['create', 'get'] });
    }
  }
  return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group ? `${group}/v1` : 'v1', resources };
}

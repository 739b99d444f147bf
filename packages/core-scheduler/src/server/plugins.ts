/**
 * The scheduler's plugin registry (client.registerPlugin, Dask's register_plugin): worker and
 * nanny plugins are kept here and handed to every worker / nanny present and to each one that
 * joins later; scheduler plugins run in this process (PluginHost).
 */
import { randomUUID } from 'node:crypto';
import { Metadata, type ServiceError } from '@grpc/grpc-js';
import { NannyServiceClient, WorkerServiceClient, type PluginResult, type PluginSpec, type RegisterPluginResponse, type UnregisterPluginResponse } from '@skein/protocol';
import {
  PluginHost,
  InvalidArgumentError,
  SkeinError,
  checkPluginKind,
  checkPluginSpecSize,
  createLogger,
  runPreloads,
  toSkeinError,
  type Logger,
  type PluginKind,
  type Security,
} from '@skein/common';

/** What a scheduler plugin's hooks (and a scheduler preload module's setup/teardown) get as `ctx`. */
export interface SchedulerPluginContext {
  name: string;
  options: unknown;
  scheduler: { address: string; id: string };
  log: Logger;
}

/** A worker as the registry sees it. */
export interface PluginWorker {
  address: string;
  name: string;
  nannyAddress: string;
}

export interface SchedulerPluginsDeps {
  security: Security;
  log: Logger;
  address: () => string;
  id: string;
  /** The registered workers. */
  workers: () => Iterable<PluginWorker>;
  /** Called when the scheduler plugins changed (attach or detach the state's transition hook). */
  changed: () => void;
}

const DEFAULT_TIMEOUT_MS = 60_000;

export class SchedulerPlugins {
  /** Registered plugins by name (every kind). */
  private readonly registry = new Map<string, PluginSpec>();
  /** The scheduler plugins and preload modules running here. */
  readonly host: PluginHost<SchedulerPluginContext>;

  constructor(private readonly d: SchedulerPluginsDeps) {
    this.host = new PluginHost<SchedulerPluginContext>({
      kind: 'scheduler',
      target: () => ({ target: d.address(), targetName: 'scheduler' }),
      context: (name, options) => ({ name, options, scheduler: { address: d.address(), id: d.id }, log: createLogger(`scheduler plugin ${name}`) }),
      importer: (specifier) => import(specifier),
      log: d.log,
      changed: d.changed,
    });
  }

  /** Runs the preload modules (one that cannot be loaded throws: the scheduler does not start; a setup that throws is logged). */
  preload(modules: readonly string[]): Promise<void> {
    return runPreloads(this.host, modules, 'scheduler');
  }

  /** The registered plugins of a kind (GetPlugins). */
  ofKind(kind: string): PluginSpec[] {
    return [...this.registry.values()].filter((p) => p.kind === kind);
  }

  async register(spec: PluginSpec | undefined, idempotent: boolean, timeoutMs: number): Promise<RegisterPluginResponse> {
    if (!spec) throw new InvalidArgumentError('RegisterPluginRequest.plugin is missing.');
    if (!spec.name) throw new InvalidArgumentError('RegisterPluginRequest.plugin.name is empty: a plugin needs a name.');
    const kind = checkPluginKind(spec.kind, 'RegisterPluginRequest.plugin.kind');
    if (!spec.module === !spec.source) {
      throw new InvalidArgumentError(`Plugin ${JSON.stringify(spec.name)}: give exactly one of module (a path or package name) and source (the module's text).`);
    }
    let options: unknown;
    if (spec.optionsJson) {
      try {
        options = JSON.parse(spec.optionsJson);
      } catch (err) {
        throw new InvalidArgumentError(`Plugin ${JSON.stringify(spec.name)}: options_json is not valid JSON (${(err as Error).message}).`);
      }
    }
    checkPluginSpecSize(spec, options);
    const old = this.registry.get(spec.name);
    if (old && idempotent) return { results: [], skipped: true };
    const registered: PluginSpec = { ...spec, id: randomUUID() };
    this.registry.set(spec.name, registered);
    // The same name as another kind: the old one goes everywhere first.
    if (old && old.kind !== kind) await this.teardownEverywhere(old, timeoutMs || DEFAULT_TIMEOUT_MS);
    this.d.log.info(`register ${kind} plugin ${JSON.stringify(spec.name)}${old ? ' (replacing the one of this name)' : ''}`);
    return { results: await this.apply(registered, kind, timeoutMs || DEFAULT_TIMEOUT_MS), skipped: false };
  }

  async unregister(name: string, timeoutMs: number): Promise<UnregisterPluginResponse> {
    const spec = this.registry.get(name);
    if (!spec) {
      const names = [...this.registry.keys()];
      throw new SkeinError('not_found', `No plugin named ${JSON.stringify(name)} is registered (registered: ${names.length ? names.map((n) => JSON.stringify(n)).join(', ') : 'none'}).`);
    }
    this.registry.delete(name);
    this.d.log.info(`unregister ${spec.kind} plugin ${JSON.stringify(name)}`);
    return { results: await this.teardownEverywhere(spec, timeoutMs || DEFAULT_TIMEOUT_MS) };
  }

  /**
   * A worker registered: it gets every registered worker plugin, and its nanny every nanny plugin
   * (each skips, by registration id, the ones it applied when it started: GetPlugins). This
   * covers a plugin registered between its GetPlugins and its registration. Failures are logged;
   * the worker runs on (unless a plugin says failWorker).
   */
  workerAdded(w: PluginWorker): void {
    if (this.registry.size === 0) return;
    for (const spec of this.registry.values()) {
      let p: Promise<PluginResult> | undefined;
      if (spec.kind === 'worker') p = this.setupOnWorker(w, spec, DEFAULT_TIMEOUT_MS);
      else if (spec.kind === 'nanny' && w.nannyAddress) p = this.onNanny(w, spec, 'setup', DEFAULT_TIMEOUT_MS);
      void p?.then((r) => {
        if (!r.ok) this.d.log.warn(`${spec.kind} plugin ${JSON.stringify(spec.name)} failed its setup on ${r.target}: ${r.error?.type}: ${r.error?.message}`);
      });
    }
  }

  close(): Promise<void> {
    return this.host.closeAll();
  }

  private async apply(spec: PluginSpec, kind: PluginKind, timeoutMs: number): Promise<PluginResult[]> {
    if (kind === 'scheduler') return [wire(await this.host.setup(spec))];
    if (kind === 'worker') return Promise.all([...this.d.workers()].map((w) => this.setupOnWorker(w, spec, timeoutMs)));
    return Promise.all(this.nannies().map((w) => this.onNanny(w, spec, 'setup', timeoutMs)));
  }

  private async teardownEverywhere(spec: PluginSpec, timeoutMs: number): Promise<PluginResult[]> {
    if (spec.kind === 'scheduler') return [wire(await this.host.teardown(spec.name))];
    if (spec.kind === 'worker') return Promise.all([...this.d.workers()].map((w) => this.teardownOnWorker(w, spec.name, timeoutMs)));
    return Promise.all(this.nannies().map((w) => this.onNanny(w, spec, 'teardown', timeoutMs)));
  }

  /** One worker per nanny (a nanny supervises one worker). */
  private nannies(): PluginWorker[] {
    const seen = new Map<string, PluginWorker>();
    for (const w of this.d.workers()) if (w.nannyAddress && !seen.has(w.nannyAddress)) seen.set(w.nannyAddress, w);
    return [...seen.values()];
  }

  private workerClient(address: string): WorkerServiceClient {
    const dial = this.d.security.dial(address, 'scheduler', 'worker');
    return new WorkerServiceClient(dial.target, dial.credentials, dial.options);
  }

  private setupOnWorker(w: PluginWorker, spec: PluginSpec, timeoutMs: number): Promise<PluginResult> {
    const c = this.workerClient(w.address);
    return call(spec.name, 'worker', w.address, w.name, timeoutMs, (md, opts, cb) => c.setupPlugin({ plugin: spec }, md, opts, (err, res) => cb(err, res?.result)), () => c.close());
  }

  private teardownOnWorker(w: PluginWorker, name: string, timeoutMs: number): Promise<PluginResult> {
    const c = this.workerClient(w.address);
    return call(name, 'worker', w.address, w.name, timeoutMs, (md, opts, cb) => c.teardownPlugin({ name }, md, opts, (err, res) => cb(err, res?.result)), () => c.close());
  }

  private onNanny(w: PluginWorker, spec: PluginSpec, what: 'setup' | 'teardown', timeoutMs: number): Promise<PluginResult> {
    const dial = this.d.security.dial(w.nannyAddress, 'scheduler', 'nanny');
    const c = new NannyServiceClient(dial.target, dial.credentials, dial.options);
    return call(
      spec.name,
      'nanny',
      w.nannyAddress,
      w.name,
      timeoutMs,
      (md, opts, cb) =>
        what === 'setup'
          ? c.setupPlugin({ plugin: spec }, md, opts, (err, res) => cb(err, res?.result))
          : c.teardownPlugin({ name: spec.name }, md, opts, (err, res) => cb(err, res?.result)),
      () => c.close(),
    );
  }
}

function wire(o: { name: string; kind: string; target: string; targetName: string; ok: boolean; error?: { type: string; message: string; stack: string } }): PluginResult {
  return { ...o, error: o.error ? { ...o.error, code: '', key: '', detailsJson: '' } : undefined };
}

/** One plugin RPC to a worker or nanny; a failed call is that target's result (never a throw). */
function call(
  name: string,
  kind: 'worker' | 'nanny',
  target: string,
  targetName: string,
  timeoutMs: number,
  send: (md: Metadata, opts: { deadline: number }, cb: (err: ServiceError | null, res: PluginResult | undefined) => void) => void,
  close: () => void,
): Promise<PluginResult> {
  return new Promise((resolve) => {
    send(new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      close();
      if (!err && res) return resolve({ ...res, targetName: res.targetName || targetName });
      const e = err ? toSkeinError(err) : new SkeinError('internal', 'empty answer');
      resolve({
        name,
        kind,
        target,
        targetName,
        ok: false,
        error: { type: e.name, message: `the ${kind} did not answer the plugin call: ${e.message}`, stack: '', code: e.code, key: '', detailsJson: '' },
      });
    });
  });
}

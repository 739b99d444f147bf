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
  pluginResultToWire,
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
const CALL_SLACK_MS = 2_000;
/** How many unregistered worker/nanny plugin names are remembered for late joiners (see workerAdded). */
const MAX_REMOVED = 64;

export class SchedulerPlugins {
  /** Registered plugins by name (every kind). */
  private readonly registry = new Map<string, PluginSpec>();
  /**
   * Per plugin name, the tail of its chain of steps (register, unregister, a joiner's setup): one
   * name's steps run one at a time, in the order they came, so their RPCs cannot overtake each
   * other on the workers and nannies.
   */
  private readonly chains = new Map<string, Promise<unknown>>();
  /** Worker and nanny plugins unregistered lately, by name, newest last (their kind). */
  private readonly removed = new Map<string, 'worker' | 'nanny'>();
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
    if (spec.name.startsWith('preload:')) {
      throw new InvalidArgumentError(`Plugin ${JSON.stringify(spec.name)}: names starting with "preload:" are kept for --preload modules; choose another name.`);
    }
    return this.serial(spec.name, async () => {
      const old = this.registry.get(spec.name);
      if (old && idempotent) return { results: [], skipped: true };
      // Each process waits this long for the setup; the calls to them wait a little longer (`call`).
      const registered: PluginSpec = { ...spec, id: randomUUID(), timeoutMs: timeoutMs || DEFAULT_TIMEOUT_MS };
      this.registry.set(spec.name, registered);
      this.removed.delete(spec.name);
      // The same name as another kind: the old one goes everywhere first.
      if (old && old.kind !== kind) await this.teardownEverywhere(old, timeoutMs || DEFAULT_TIMEOUT_MS);
      this.d.log.info(`register ${kind} plugin ${JSON.stringify(spec.name)}${old ? ' (replacing the one of this name)' : ''}`);
      return { results: await this.apply(registered, kind, timeoutMs || DEFAULT_TIMEOUT_MS), skipped: false };
    });
  }

  unregister(name: string, timeoutMs: number): Promise<UnregisterPluginResponse> {
    return this.serial(name, async () => {
      const spec = this.registry.get(name);
      if (!spec) {
        const names = [...this.registry.keys()];
        throw new SkeinError('not_found', `No plugin named ${JSON.stringify(name)} is registered (registered: ${names.length ? names.map((n) => JSON.stringify(n)).join(', ') : 'none'}).`);
      }
      this.registry.delete(name);
      if (spec.kind === 'worker' || spec.kind === 'nanny') {
        this.removed.delete(name);
        this.removed.set(name, spec.kind);
        if (this.removed.size > MAX_REMOVED) this.removed.delete(this.removed.keys().next().value!);
      }
      this.d.log.info(`unregister ${spec.kind} plugin ${JSON.stringify(name)}`);
      return { results: await this.teardownEverywhere(spec, timeoutMs || DEFAULT_TIMEOUT_MS) };
    });
  }

  /** Runs `fn` after every step of this plugin name that came before (see `chains`). */
  private serial<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const p = (this.chains.get(name) ?? Promise.resolve()).then(fn);
    const tail = p.catch(() => undefined);
    this.chains.set(name, tail);
    void tail.then(() => {
      if (this.chains.get(name) === tail) this.chains.delete(name);
    });
    return p;
  }

  /**
   * A worker registered: it gets every registered worker plugin, and its nanny every nanny plugin
   * (each skips, by registration id, the ones it applied when it started: GetPlugins). This
   * covers a plugin registered between its GetPlugins and its registration. Failures are logged;
   * the worker runs on (unless a plugin says failWorker).
   */
  workerAdded(w: PluginWorker): void {
    if (this.registry.size === 0 && this.removed.size === 0) return;
    for (const [name, spec] of this.registry) {
      if (spec.kind === 'scheduler' || (spec.kind === 'nanny' && !w.nannyAddress)) continue;
      void this.serial(name, () => this.joinerStep(w, name));
    }
    // One unregistered while it started (after its GetPlugins, before it registered) may be
    // applied there: it is torn down (a no-op where it is not applied).
    for (const [name, kind] of this.removed) {
      if (kind === 'nanny' && !w.nannyAddress) continue;
      void this.serial(name, () => this.joinerStep(w, name));
    }
  }

  /** A joiner's setup (or teardown) of one name, in that name's chain: what is registered when it runs. */
  private async joinerStep(w: PluginWorker, name: string): Promise<void> {
    const spec = this.registry.get(name);
    const removedKind = spec ? undefined : this.removed.get(name);
    if (!spec && !removedKind) return;
    const kind = spec ? spec.kind : removedKind!;
    let r: PluginResult | undefined;
    if (kind === 'worker') r = spec ? await this.setupOnWorker(w, spec, spec.timeoutMs || DEFAULT_TIMEOUT_MS) : await this.teardownOnWorker(w, name, DEFAULT_TIMEOUT_MS);
    else if (kind === 'nanny' && w.nannyAddress) r = await this.onNanny(w, spec ?? { name, kind, module: '', source: '', optionsJson: '', id: '', failWorker: false, timeoutMs: 0 }, spec ? 'setup' : 'teardown', DEFAULT_TIMEOUT_MS);
    if (r && !r.ok) this.d.log.warn(`${kind} plugin ${JSON.stringify(name)} failed its ${spec ? 'setup' : 'teardown'} on ${r.target}: ${r.error?.type}: ${r.error?.message}`);
  }

  close(): Promise<void> {
    return this.host.closeAll();
  }

  private async apply(spec: PluginSpec, kind: PluginKind, timeoutMs: number): Promise<PluginResult[]> {
    if (kind === 'scheduler') return [pluginResultToWire(await this.host.setup(spec))];
    if (kind === 'worker') return Promise.all([...this.d.workers()].map((w) => this.setupOnWorker(w, spec, timeoutMs)));
    // A worker without a nanny cannot take a nanny plugin: that is its result, not a silent skip.
    const without: PluginResult[] = [];
    for (const w of this.d.workers()) {
      if (!w.nannyAddress) without.push(failed(spec.name, 'nanny', w.address, w.name, new SkeinError('failed_precondition', `worker ${w.address} has no nanny: start workers with a nanny to use nanny plugins.`)));
    }
    return [...(await Promise.all(this.nannies().map((w) => this.onNanny(w, spec, 'setup', timeoutMs)))), ...without];
  }

  private async teardownEverywhere(spec: PluginSpec, timeoutMs: number): Promise<PluginResult[]> {
    if (spec.kind === 'scheduler') return [pluginResultToWire(await this.host.teardown(spec.name))];
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
    // A little past the process's own setup timeout (PluginSpec.timeout_ms), so its timed-out
    // result comes back rather than a deadline error.
    send(new Metadata(), { deadline: Date.now() + timeoutMs + CALL_SLACK_MS }, (err, res) => {
      close();
      if (!err && res) return resolve({ ...res, targetName: res.targetName || targetName });
      const e = err ? toSkeinError(err) : new SkeinError('internal', 'empty answer');
      resolve(failed(name, kind, target, targetName, e, `the ${kind} did not answer the plugin call: ${e.message}`));
    });
  });
}

/** A target's failed result from an error the scheduler saw itself. */
function failed(name: string, kind: 'worker' | 'nanny', target: string, targetName: string, e: SkeinError, message = e.message): PluginResult {
  return { name, kind, target, targetName, ok: false, error: { type: e.name, message, stack: '', code: e.code, key: '', detailsJson: '' }, stage: '' };
}

/**
 * Plugins (client.registerPlugin) and preload modules: loading a plugin module, instantiating it,
 * and the per-process registry of applied plugins (PluginHost) that the worker, the nanny and the
 * scheduler each keep. The module contract is in packages/client/README.md ("Plugins").
 */
import { createHash } from 'node:crypto';
import { chmodSync, lstatSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir, userInfo } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { InvalidArgumentError, TimeoutError, toRemoteError, type PluginOutcome } from './errors.js';
import type { PluginResult } from '@skein/protocol';
import type { Logger } from './log.js';
import { resolveModuleArg } from './module-path.js';

export type PluginKind = 'worker' | 'scheduler' | 'nanny';

export const PLUGIN_KINDS: readonly PluginKind[] = ['worker', 'scheduler', 'nanny'];

/** A plugin as it travels (the protocol's PluginSpec). */
export interface PluginSpecData {
  name: string;
  kind: string;
  module: string;
  source: string;
  optionsJson: string;
  id: string;
  failWorker: boolean;
  /** How long setup may take here (ms; 0 or absent: DEFAULT_SETUP_TIMEOUT_MS). */
  timeoutMs?: number;
}

/** How long a plugin's setup may run before it is reported as timed out (PluginSpec.timeout_ms 0). */
export const DEFAULT_SETUP_TIMEOUT_MS = 60_000;

/** What a plugin instance may have; every hook is optional. */
export interface PluginHooks {
  setup?: (ctx: unknown) => unknown;
  teardown?: (ctx: unknown) => unknown;
  transition?: (key: string, from: string, to: string, info: unknown) => void;
  start?: (ctx: unknown) => unknown;
  close?: (ctx: unknown) => unknown;
  updateGraph?: (info: unknown) => unknown;
  addWorker?: (info: unknown) => unknown;
  removeWorker?: (info: unknown) => unknown;
  addClient?: (clientId: string) => unknown;
  removeClient?: (clientId: string) => unknown;
  /** Nanny plugins: restart the worker after setup on a running nanny (Dask's NannyPlugin.restart). */
  restart?: boolean;
}

/** `import()` as seen from the package that runs the plugin (bare specifiers resolve from there). */
export type Importer = (specifier: string) => Promise<unknown>;

const HOOKS = ['setup', 'teardown', 'transition', 'start', 'close', 'updateGraph', 'addWorker', 'removeWorker', 'addClient', 'removeClient'] as const;

/** Checks a kind string from the wire or a user. */
export function checkPluginKind(kind: string, where: string): PluginKind {
  if ((PLUGIN_KINDS as readonly string[]).includes(kind)) return kind as PluginKind;
  throw new InvalidArgumentError(`${where}: plugin kind ${JSON.stringify(kind)} is not one of ${PLUGIN_KINDS.join(', ')}.`);
}

/**
 * This user's directory for plugin sources: `<tmpdir>/skein-plugins-<uid>`, created 0700 and
 * checked on every use (a directory, not a symlink, owned by this user, no access for others), so
 * no other user of the host can plant a module under a hash name.
 */
function sourceDirectory(): string {
  const uid = process.getuid?.();
  const dir = join(tmpdir(), `skein-plugins-${uid ?? userInfo().username}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  const problem = st.isSymbolicLink()
    ? 'is a symbolic link'
    : !st.isDirectory()
      ? 'is not a directory'
      : uid !== undefined && st.uid !== uid
        ? `belongs to uid ${st.uid}, not this user (${uid})`
        : undefined;
  if (problem) {
    throw new InvalidArgumentError(`The plugin source directory ${dir} ${problem}: refusing to import plugin sources from it. Remove it (it is recreated) or set TMPDIR to a directory of your own.`);
  }
  if (uid !== undefined && (st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
  return dir;
}

/** The file a plugin's source text is imported from: written once per distinct source, its content checked against its hash before each import. */
function sourceFile(source: string): string {
  const hash = createHash('sha256').update(source).digest('hex');
  const file = join(sourceDirectory(), `${hash}.mjs`);
  let current: string | undefined;
  try {
    current = readFileSync(file, 'utf8');
  } catch {
    current = undefined;
  }
  if (current === undefined || createHash('sha256').update(current).digest('hex') !== hash) {
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
    writeFileSync(tmp, source, { mode: 0o600 });
    renameSync(tmp, file);
  }
  return file;
}

/**
 * Imports a plugin or preload module: source text (written to a file first), an absolute or
 * relative path (relative to the cwd), a file: URL, or a package specifier, tried through
 * `importer` (the calling package's resolution) and then from the cwd.
 */
export async function importPluginModule(spec: { module: string; source: string }, importer: Importer): Promise<Record<string, unknown>> {
  if (spec.source) return (await import(pathToFileURL(sourceFile(spec.source)).href)) as Record<string, unknown>;
  const m = spec.module;
  if (!m) throw new InvalidArgumentError('A plugin needs a module (a path or package name) or its source text; both are empty.');
  if (m.startsWith('file:')) return (await import(m)) as Record<string, unknown>;
  // The one rule of what names a path (resolveModuleArg), as for --preload and --module.
  const path = resolveModuleArg(m);
  if (isAbsolute(path)) return (await import(pathToFileURL(path).href)) as Record<string, unknown>;
  try {
    return (await importer(m)) as Record<string, unknown>;
  } catch (err) {
    if ((err as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND' && (err as { code?: string }).code !== 'MODULE_NOT_FOUND') throw err;
    let file: string;
    try {
      file = createRequire(join(process.cwd(), 'noop.js')).resolve(m);
    } catch {
      throw new InvalidArgumentError(
        `Cannot find the plugin module ${JSON.stringify(m)} from this process (nor from its cwd ${process.cwd()}): install the package where this process runs, or give an absolute path.`,
        { cause: err },
      );
    }
    return (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  }
}

/**
 * A plugin instance from its module: the default export called as a factory with the options,
 * else the module's named hook exports.
 */
export async function instantiatePlugin(mod: Record<string, unknown>, options: unknown, what: string): Promise<PluginHooks> {
  const factory = mod['default'];
  if (typeof factory === 'function') {
    const made: unknown = await (factory as (o: unknown) => unknown)(options);
    if (made === null || typeof made !== 'object') {
      throw new InvalidArgumentError(`${what}: its default export must return a plugin object (with setup, teardown, ... hooks), got ${made === null ? 'null' : typeof made}.`);
    }
    return made as PluginHooks;
  }
  const hooks: Record<string, unknown> = {};
  for (const h of HOOKS) if (typeof mod[h] === 'function') hooks[h] = mod[h];
  if (typeof mod['restart'] === 'boolean') hooks['restart'] = mod['restart'];
  if (Object.keys(hooks).length === 0) {
    throw new InvalidArgumentError(`${what} exports no plugin: export a default factory \`(options) => ({ setup, teardown, ... })\` or named hooks (setup, teardown, ...).`);
  }
  return hooks as PluginHooks;
}

/** Parses PluginSpec.options_json. */
export function pluginOptions(spec: Pick<PluginSpecData, 'name' | 'optionsJson'>): unknown {
  if (!spec.optionsJson) return undefined;
  try {
    return JSON.parse(spec.optionsJson);
  } catch (err) {
    throw new InvalidArgumentError(`Plugin ${JSON.stringify(spec.name)}: its options are not valid JSON (${(err as Error).message}).`, { cause: err });
  }
}

interface Applied {
  id: string;
  spec: PluginSpecData;
  plugin: PluginHooks;
  ctx: unknown;
}

export interface PluginHostOptions<C> {
  kind: PluginKind;
  /** This process's address and name, for results. */
  target: () => { target: string; targetName: string };
  /** The context a plugin's hooks get. */
  context: (name: string, options: unknown) => C;
  importer: Importer;
  log: Logger;
  /** Called after the set of plugins changed (e.g. to attach or detach a transition hook). */
  changed?: () => void;
}

/**
 * The plugins applied in one process, by name. Setup and teardown run one at a time, in order;
 * a plugin of a name already applied is torn down first (Dask: plugin_add replaces). Errors of
 * hooks are caught: setup and teardown report them as a PluginOutcome, others are logged.
 */
export class PluginHost<C> {
  private readonly applied = new Map<string, Applied>();
  private chain: Promise<unknown> = Promise.resolve();
  /** The transition hooks of the applied plugins (empty: nothing to call). */
  transitionHooks: Array<(key: string, from: string, to: string, info: unknown) => void> = [];
  private hookErrors = 0;

  constructor(private readonly o: PluginHostOptions<C>) {}

  /** Ids of the applied registrations. */
  ids(): string[] {
    return [...this.applied.values()].map((a) => a.id);
  }

  /** How many plugins are applied. */
  get size(): number {
    return this.applied.size;
  }

  names(): string[] {
    return [...this.applied.keys()];
  }

  has(name: string): boolean {
    return this.applied.has(name);
  }

  /** The applied plugin instance (tests, built-ins reading their own state). */
  instance(name: string): PluginHooks | undefined {
    return this.applied.get(name)?.plugin;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn, fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  private outcome(name: string, err?: unknown, stage?: 'load' | 'setup'): PluginOutcome {
    const t = this.o.target();
    const base = { name, kind: this.o.kind, target: t.target, targetName: t.targetName };
    if (err === undefined) return { ...base, ok: true };
    const e = toRemoteError(err);
    const details = parseJsonObject(e.detailsJson);
    return {
      ...base,
      ok: false,
      error: { type: e.type, message: e.message, stack: e.stack ?? '', ...(e.code ? { code: e.code } : {}), ...(details ? { details } : {}) },
      ...(stage ? { stage } : {}),
    };
  }

  /**
   * Applies a plugin: imports it, instantiates it, runs setup. A registration id already applied
   * is skipped (ok). `afterSetup` runs once setup succeeded (a nanny's restart).
   */
  setup(spec: PluginSpecData, afterSetup?: (plugin: PluginHooks) => Promise<void>): Promise<PluginOutcome> {
    return this.serial(async () => {
      const old = this.applied.get(spec.name);
      if (old && spec.id && old.id === spec.id) return this.outcome(spec.name);
      // A teardown that throws (logged by teardownApplied) does not keep the new one out (Dask's
      // plugin_add logs it and goes on with the setup).
      if (old) await this.teardownApplied(old).catch(() => undefined);
      let stage: 'load' | 'setup' = 'load';
      try {
        const options = pluginOptions(spec);
        const what = `Plugin ${JSON.stringify(spec.name)} (${spec.source ? 'from source' : spec.module})`;
        const plugin = await instantiatePlugin(await importPluginModule(spec, this.o.importer), options, what);
        const ctx = this.o.context(spec.name, options);
        stage = 'setup';
        // Applied before its setup runs, as in Dask (Worker.plugin_add): one whose setup throws
        // stays, so its teardown still runs (unregister, replace, close) and its id is not set
        // up again.
        this.applied.set(spec.name, { id: spec.id, spec, plugin, ctx });
        this.refresh();
        // A setup that never settles must not hold up this process's other plugins: after the
        // timeout it is reported as timed out and the chain goes on (it stays applied).
        const timeoutMs = spec.timeoutMs || DEFAULT_SETUP_TIMEOUT_MS;
        await withTimeout(
          (async () => {
            await plugin.setup?.(ctx);
            // A scheduler plugin starts once added (Dask's SchedulerPlugin.start).
            if (this.o.kind === 'scheduler') await plugin.start?.(ctx);
          })(),
          timeoutMs,
          () => new TimeoutError(`Plugin ${JSON.stringify(spec.name)}: its setup did not finish within ${timeoutMs} ms (raise the registration's timeoutMs if it needs longer).`),
        );
        this.o.log.info(`plugin ${JSON.stringify(spec.name)} set up`);
        if (afterSetup) await afterSetup(plugin);
        return this.outcome(spec.name);
      } catch (err) {
        this.o.log.error(`plugin ${JSON.stringify(spec.name)} failed its ${stage === 'load' ? 'loading' : 'setup'}: ${(err as Error)?.stack ?? String(err)}`);
        return this.outcome(spec.name, err, stage);
      }
    });
  }

  /** Tears a plugin down and forgets it; not applied here: ok, nothing done. */
  teardown(name: string): Promise<PluginOutcome> {
    return this.serial(async () => {
      const a = this.applied.get(name);
      if (!a) return this.outcome(name);
      try {
        await this.teardownApplied(a);
        return this.outcome(name);
      } catch (err) {
        return this.outcome(name, err);
      }
    });
  }

  private async teardownApplied(a: Applied): Promise<void> {
    this.applied.delete(a.spec.name);
    this.refresh();
    try {
      if (this.o.kind === 'scheduler') await a.plugin.close?.(a.ctx);
      await a.plugin.teardown?.(a.ctx);
    } catch (err) {
      this.o.log.error(`plugin ${JSON.stringify(a.spec.name)} failed its teardown: ${(err as Error)?.stack ?? String(err)}`);
      throw err;
    }
  }

  /** Tears every plugin down (the process closes), newest first; errors are logged. */
  closeAll(): Promise<void> {
    return this.serial(async () => {
      for (const a of [...this.applied.values()].reverse()) await this.teardownApplied(a).catch(() => undefined);
    });
  }

  /** Calls a hook of every applied plugin that has it; errors and rejections are logged. */
  call(hook: Exclude<(typeof HOOKS)[number], 'setup' | 'teardown' | 'transition'>, ...args: unknown[]): void {
    for (const a of this.applied.values()) {
      const fn = a.plugin[hook] as ((...x: unknown[]) => unknown) | undefined;
      if (typeof fn !== 'function') continue;
      try {
        const r = hook === 'start' || hook === 'close' ? fn.call(a.plugin, a.ctx) : fn.apply(a.plugin, args);
        if (r && typeof (r as Promise<unknown>).then === 'function') (r as Promise<unknown>).then(undefined, (err: unknown) => this.hookError(a.spec.name, hook, err));
      } catch (err) {
        this.hookError(a.spec.name, hook, err);
      }
    }
  }

  /** Calls every transition hook (sync; a throw is logged, the rest still run). */
  transition(key: string, from: string, to: string, info: unknown): void {
    for (const fn of this.transitionHooks) {
      try {
        fn(key, from, to, info);
      } catch (err) {
        this.hookError('(a plugin)', 'transition', err);
      }
    }
  }

  private hookError(name: string, hook: string, err: unknown): void {
    const n = ++this.hookErrors;
    if (n <= 10 || n % 1000 === 0) this.o.log.error(`plugin ${JSON.stringify(name)}: its ${hook} hook threw${n > 1 ? ` (${n} hook errors so far)` : ''}: ${(err as Error)?.stack ?? String(err)}`);
  }

  private refresh(): void {
    this.transitionHooks = [];
    for (const a of this.applied.values()) {
      const fn = a.plugin.transition;
      if (typeof fn === 'function') this.transitionHooks.push(fn.bind(a.plugin));
    }
    this.o.changed?.();
  }
}

/** `p`, or a rejection with `error()` after `ms` (the timer goes with it; `p` runs on). */
function withTimeout<T>(p: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(error()), ms);
    timer.unref?.();
  });
  p.catch(() => undefined);
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** A preload module (--preload): its spec as a local plugin, named after the module. */
export function preloadSpec(module: string, kind: PluginKind): PluginSpecData {
  return { name: `preload:${module}`, kind, module, source: '', optionsJson: '', id: `preload:${module}`, failWorker: false };
}

/**
 * Runs preload modules (--preload) in `host`, in order, as Dask does: a module that cannot be
 * imported (or exports no hooks) fails the start with an error naming it; a setup that throws is
 * logged (error level, with its stack) and the process starts all the same; teardowns run at
 * close (a throw there is logged too).
 */
export async function runPreloads<C>(host: PluginHost<C>, modules: readonly string[], kind: PluginKind): Promise<void> {
  for (const m of modules) {
    const r = await host.setup(preloadSpec(m, kind));
    if (!r.ok && r.stage !== 'setup') {
      throw new InvalidArgumentError(`The ${kind} preload module ${m} could not be loaded: ${r.error?.type}: ${r.error?.message}. Give a path or a package this process can import.`);
    }
  }
}

/** A PluginOutcome as the protocol's PluginResult (with the error's code, details and the stage). */
export function pluginResultToWire(o: PluginOutcome): PluginResult {
  const e = o.error;
  return {
    name: o.name,
    kind: o.kind,
    target: o.target,
    targetName: o.targetName,
    ok: o.ok,
    error: e ? { type: e.type, message: e.message, stack: e.stack, code: e.code ?? '', key: '', detailsJson: e.details ? JSON.stringify(e.details) : '' } : undefined,
    stage: o.stage ?? '',
  };
}

/** The protocol's PluginResult as a PluginOutcome. */
export function pluginResultFromWire(r: PluginResult): PluginOutcome {
  const kind = (PLUGIN_KINDS as readonly string[]).includes(r.kind) ? (r.kind as PluginKind) : 'worker';
  const base = { name: r.name, kind, target: r.target, targetName: r.targetName, ok: r.ok };
  if (r.ok) return base;
  const details = parseJsonObject(r.error?.detailsJson ?? '');
  const stage = r.stage === 'load' || r.stage === 'setup' ? r.stage : undefined;
  return {
    ...base,
    error: { type: r.error?.type || 'Error', message: r.error?.message ?? '', stack: r.error?.stack ?? '', ...(r.error?.code ? { code: r.error.code } : {}), ...(details ? { details } : {}) },
    ...(stage ? { stage } : {}),
  };
}

/** A JSON object's text as the object; '' or anything else: undefined. */
function parseJsonObject(json: string): Record<string, unknown> | undefined {
  if (!json) return undefined;
  try {
    const v: unknown = JSON.parse(json);
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

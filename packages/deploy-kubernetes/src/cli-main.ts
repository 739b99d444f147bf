import yargs from 'yargs';
import * as k8s from '@kubernetes/client-node';
import { SchedulerAdmin } from '@skein/cluster';
import { SECURITY_FLAGS, Security, SkeinError, readyJsonWanted, readyLine, toSkeinError, type SecurityFlags } from '@skein/common';
import { pickVictims } from './helm-cluster.js';
import { KubeCluster, type KubeClusterOptions } from './kube-cluster.js';
import { call, contextNamespace, loadKubeConfig } from './kube.js';
import { LABEL_CLUSTER, LABEL_COMPONENT } from './specs.js';

interface CommonArgs extends SecurityFlags {
  namespace?: string;
  kubeconfig?: string;
  portForward?: boolean;
  resourceTimeout: number;
  readyJson: boolean;
}

type Parsed =
  | { command: 'start'; options: KubeClusterOptions; readyJson: boolean }
  | { command: 'scale'; name: string; n: number; options: KubeClusterOptions }
  | { command: 'close'; name: string; options: KubeClusterOptions }
  | { command: 'list'; options: KubeClusterOptions }
  | 'help';

function common(a: CommonArgs): KubeClusterOptions {
  const security = Security.fromFlags(a);
  return {
    ...(security.enabled ? { security } : {}),
    ...(a.namespace !== undefined ? { namespace: a.namespace } : {}),
    ...(a.kubeconfig !== undefined ? { kubeconfig: a.kubeconfig } : {}),
    ...(a.portForward !== undefined ? { portForward: a.portForward } : {}),
    resourceTimeoutMs: a.resourceTimeout * 1000,
  };
}

/** Parses `skein-kubernetes` arguments (exported for tests). */
export async function parseKubernetesArgs(argv: string[], prog = 'skein-kubernetes'): Promise<Parsed> {
  let parsed: Parsed | undefined;
  const y = yargs(argv)
    .scriptName(prog)
    .usage(`$0 <command> [options]\n\nSkein clusters on Kubernetes (the kubeconfig's current context).`)
    .option('namespace', { type: 'string', describe: "Namespace (default: the kubeconfig context's, else default)" })
    .option('kubeconfig', { type: 'string', describe: 'kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)' })
    .option('port-forward', { type: 'boolean', describe: 'Always (--port-forward) or never (--no-port-forward) reach the scheduler through a port-forward (default: only when the service does not answer)' })
    .option('resource-timeout', { type: 'number', default: 60, describe: 'Seconds each wait on Kubernetes may take' })
    .option('ready-json', { type: 'boolean', default: false, describe: 'Print one JSON line {"event":"ready","role":"cluster",...} once the cluster runs' });
  for (const f of SECURITY_FLAGS) {
    y.option(f.flag, {
      type: f.value ? 'string' : 'boolean',
      describe: `${f.describe} (env ${f.env}). start: put into the pods' Secrets (one certificate for the scheduler and the workers); scale: how this command reaches the scheduler`,
    });
  }
  y.command(
      'start',
      'start a cluster and leave it running (close it with: close NAME)',
      (c) =>
        c
          .option('name', { type: 'string', describe: 'Cluster name (default skein-USER-RANDOM)' })
          .option('image', { type: 'string', describe: 'Image of the scheduler and workers' })
          .option('n-workers', { type: 'number', default: 0, describe: 'Workers to start' })
          .option('nthreads', { type: 'number', describe: 'Threads per worker' })
          .option('memory-limit', { type: 'string', describe: "Memory limit per worker: '4GB', '0.5', 'auto'" })
          .option('cpu', { type: 'string', describe: "CPU request and limit of each pod, e.g. '1'" })
          .option('memory', { type: 'string', describe: "Memory request and limit of each pod, e.g. '2Gi'" })
          .option('service-type', { type: 'string', choices: ['ClusterIP', 'NodePort', 'LoadBalancer'], default: 'ClusterIP', describe: 'Type of the scheduler Service' })
          .option('env', { type: 'string', array: true, describe: 'NAME=VALUE for every pod (repeatable)' }),
      (a) => {
        const env: Record<string, string> = {};
        for (const e of (a.env as string[] | undefined) ?? []) {
          const i = e.indexOf('=');
          if (i <= 0) throw new SkeinError('invalid_argument', `--env takes NAME=VALUE, got ${JSON.stringify(e)}`);
          env[e.slice(0, i)] = e.slice(i + 1);
        }
        const limits: Record<string, string> = {};
        if (a.cpu) limits['cpu'] = String(a.cpu);
        if (a.memory) limits['memory'] = String(a.memory);
        parsed = {
          command: 'start',
          readyJson: Boolean(a.readyJson),
          options: {
            ...common(a as unknown as CommonArgs),
            ...(a.name !== undefined ? { name: String(a.name) } : {}),
            ...(a.image !== undefined ? { image: String(a.image) } : {}),
            nWorkers: Number(a.nWorkers),
            schedulerServiceType: a.serviceType as KubeClusterOptions['schedulerServiceType'],
            workerOptions: { ...(a.nthreads !== undefined ? { nthreads: Number(a.nthreads) } : {}), ...(a.memoryLimit !== undefined ? { memoryLimit: String(a.memoryLimit) } : {}) },
            ...(Object.keys(limits).length ? { resources: { requests: limits, limits } } : {}),
            ...(Object.keys(env).length ? { env } : {}),
            shutdownOnClose: false,
          },
        };
      },
    )
    .command(
      'scale <name> <workers>',
      'set the number of workers (retires the workers the scheduler picks)',
      (c) => c.positional('name', { type: 'string', demandOption: true }).positional('workers', { type: 'number', demandOption: true }),
      (a) => {
        const n = Number(a.workers);
        if (!Number.isInteger(n) || n < 0) throw new SkeinError('invalid_argument', `the number of workers must be a whole number ≥ 0, got ${String(a.workers)}`);
        parsed = { command: 'scale', name: String(a.name), n, options: common(a as unknown as CommonArgs) };
      },
    )
    .command(
      'close <name>',
      'delete a cluster (its scheduler, workers, service and secrets)',
      (c) => c.positional('name', { type: 'string', demandOption: true }),
      (a) => {
        parsed = { command: 'close', name: String(a.name), options: common(a as unknown as CommonArgs) };
      },
    )
    .command('list', 'list the clusters in the namespace', {}, (a) => {
      parsed = { command: 'list', options: common(a as unknown as CommonArgs) };
    })
    .demandCommand(1, 'give a command: start, scale, close or list')
    .strict()
    .help()
    .version(false)
    .exitProcess(false)
    .fail((msg, err) => {
      throw new SkeinError('invalid_argument', msg || err?.message || 'bad arguments');
    });
  const out = (await y.parseAsync()) as { help?: boolean };
  if (out.help || !parsed) return 'help';
  return parsed;
}

/** Scales a running cluster to `n` workers: new worker pods, or the scheduler's choice retired first. */
export async function scaleCluster(name: string, n: number, options: KubeClusterOptions): Promise<{ before: number; after: number }> {
  const cluster = await KubeCluster.fromName(name, options);
  try {
    const core = cluster.options.kc.makeApiClient(k8s.CoreV1Api);
    const sel = `${LABEL_CLUSTER}=${name},${LABEL_COMPONENT}=worker`;
    const pods = (await call(`list the workers of ${name}`, () => core.listNamespacedPod({ namespace: cluster.namespace, labelSelector: sel }))).items.filter((p) => !p.metadata?.deletionTimestamp);
    const before = pods.length;
    if (n > before) {
      await cluster.scale(n - before);
      await cluster.waitForWorkers(n - before, { timeoutMs: cluster.options.resourceTimeoutMs });
    } else if (n < before) {
      const admin = new SchedulerAdmin(cluster.schedulerAddress, cluster.security ? { security: cluster.security } : {});
      try {
        // The scheduler's choice first, then idle workers holding the least data, then the newest pods.
        const victims = await pickVictims(admin, pods, before - n);
        await admin.retireWorkers(victims);
        for (const v of victims) await core.deleteNamespacedPod({ name: v, namespace: cluster.namespace }).catch(() => undefined);
      } finally {
        admin.close();
      }
    }
    return { before, after: n };
  } finally {
    await cluster.close();
  }
}

/**
 * `skein-kubernetes` / `skein kubernetes`: start, scale, close and list clusters. A started cluster
 * keeps running after the command exits. Returns the process exit code.
 */
export async function runKubernetesCli(argv: string[], prog = 'skein-kubernetes'): Promise<number> {
  let parsed: Parsed;
  try {
    parsed = await parseKubernetesArgs(argv, prog);
  } catch (err) {
    process.stderr.write(`${prog}: ${(err as Error).message}. Run ${prog} --help for the options.\n`);
    return 2;
  }
  if (parsed === 'help') return 0;
  try {
    switch (parsed.command) {
      case 'start': {
        const cluster = await KubeCluster.start(parsed.options);
        const workers = cluster.workerStatus().running.map((w) => w.name);
        process.stdout.write(`Cluster ${cluster.name} in namespace ${cluster.namespace}\nScheduler at:   ${cluster.schedulerAddress} (${cluster.connection})\n`);
        if (cluster.dashboardLink) process.stdout.write(`Dashboard at:   ${cluster.dashboardLink}\n`);
        process.stdout.write(`Workers: ${workers.join(', ') || 'none'}\nClose it with:  ${prog} close ${cluster.name}\n`);
        if (readyJsonWanted(parsed.readyJson)) {
          process.stdout.write(readyLine({ event: 'ready', role: 'cluster', address: cluster.schedulerAddress, dashboard: cluster.dashboardLink, name: cluster.name, namespace: cluster.namespace, workers, tls: cluster.security.tls } as never) + '\n');
        }
        await cluster.close(); // shutdownOnClose: false: the pods stay
        return 0;
      }
      case 'scale': {
        const r = await scaleCluster(parsed.name, parsed.n, parsed.options);
        process.stdout.write(`Cluster ${parsed.name}: ${r.before} → ${r.after} workers\n`);
        return 0;
      }
      case 'close': {
        await KubeCluster.delete(parsed.name, parsed.options);
        process.stdout.write(`Cluster ${parsed.name} deleted\n`);
        return 0;
      }
      case 'list': {
        const kc = loadKubeConfig(parsed.options.kubeconfig);
        const ns = parsed.options.namespace ?? contextNamespace(kc);
        const core = kc.makeApiClient(k8s.CoreV1Api);
        const pods = (await call(`list the pods in namespace ${ns}`, () => core.listNamespacedPod({ namespace: ns, labelSelector: LABEL_CLUSTER }))).items;
        const clusters = new Map<string, { workers: number; phase: string }>();
        for (const p of pods) {
          const c = p.metadata?.labels?.[LABEL_CLUSTER] ?? '';
          const e = clusters.get(c) ?? { workers: 0, phase: '?' };
          if (p.metadata?.labels?.[LABEL_COMPONENT] === 'worker') e.workers++;
          else e.phase = p.status?.phase ?? '?';
          clusters.set(c, e);
        }
        for (const [c, e] of [...clusters].sort()) process.stdout.write(`${c}\tscheduler ${e.phase}\t${e.workers} workers\n`);
        return 0;
      }
    }
  } catch (err) {
    process.stderr.write(`${prog}: ${toSkeinError(err).message}\n`);
    return 1;
  }
}

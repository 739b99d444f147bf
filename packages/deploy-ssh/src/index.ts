/**
 * @module @skein/deploy-ssh
 * SSHCluster (Dask's SSHCluster): a Skein scheduler on the first host and workers on the others,
 * started over SSH, with their output streamed back; scale and adapt come from `@skein/cluster`.
 * Also the `skein-ssh` command (`skein ssh`).
 *
 * @example
 * import { SSHCluster } from '@skein/deploy-ssh';
 * import { Client } from '@skein/client';
 *
 * await using cluster = await SSHCluster.start({
 *   hosts: ['node1', 'node2', 'node3'],                 // scheduler on node1, a worker on node2 and node3
 *   connectOptions: { username: 'me', privateKey: '/home/me/.ssh/id_ed25519' },
 *   remoteCommand: 'skein',                              // how Skein is started on the hosts
 * });
 * await using client = await Client.connect(cluster);
 * console.log(await client.submit((x: number) => x + 1, 1).result()); // 2
 * await cluster.scale(4);                               // two workers per worker host
 * cluster.adapt({ minimum: 2, maximum: 8 });
 */
export { SSHCluster, type SSHClusterOptions, type SSHHost, type SSHSchedulerOptions, type SSHWorkerOptions, type SSHWorkerHandle } from './ssh-cluster.js';
export { RemoteProcess, parseKnownHosts, shellQuote, type SSHConnectOptions } from './ssh.js';
export {
  SSHAuthenticationError,
  SSHHostUnreachableError,
  HostKeyVerificationError,
  SkeinNotInstalledError,
  SchedulerPortInUseError,
  RemoteProcessError,
} from './errors.js';
export { runSshCli, parseSshArgs } from './cli-main.js';

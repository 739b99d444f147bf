/**
 * @module skein
 * Distributed task scheduling for TypeScript and Node.js: the client, a LocalCluster on this
 * machine, and the `skein` command.
 *
 * @example
 * import { LocalCluster, Client } from 'skein';
 * await using cluster = await LocalCluster.start();
 * await using client = await Client.connect(cluster);
 * const squares = client.map((x: number) => x * x, [1, 2, 3]);
 * console.log(await client.gather(squares)); // [1, 4, 9]
 */
export { LocalCluster, type LocalClusterOptions, type LocalWorkerHandle } from './local-cluster.js';
export { runSkeinCli } from './dispatch.js';
// Managing environments (README): the built-in plugins and the version check.
export {
  NpmInstall,
  UploadFile,
  UploadDirectory,
  Environ,
  VersionMismatchError,
  type NpmInstallOptions,
  type UploadDirectoryOptions,
  type ClusterVersions,
  type GetVersionsOptions,
  type Versions,
} from '@skein/client';
export {
  Client,
  Future,
  Delayed,
  delayed,
  registered,
  AsCompleted,
  asCompleted,
  wait,
  CancelledError,
  CommClosedError,
  KilledWorkerError,
  ProtocolVersionError,
  SkeinError,
  TaskError,
  TimeoutError,
  PluginSetupError,
  workerPlugin,
  nannyPlugin,
  schedulerPlugin,
  type PluginDescription,
  type RegisterPluginOptions,
  type PluginRegistration,
  type PluginOutcome,
  type ClientOptions,
  type TaskOptions,
  type SchedulerInfo,
  type WorkerInfo,
  type FutureStatus,
  type Transition,
} from '@skein/client';

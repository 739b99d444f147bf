/**
 * @module @skein/client
 * The Skein client (Dask's Client for Node.js): submit functions to a cluster, map over data,
 * build lazy graphs with `delayed`, and gather results as futures complete.
 *
 * @example
 * import { Client, delayed, asCompleted, registered } from '@skein/client';
 *
 * await using client = await Client.connect('tcp://127.0.0.1:8786');
 * const inc = (x: number) => x + 1;
 * const a = client.submit(inc, 1);                        // Future<number>
 * const b = client.submit((x: number, y: number) => x + y, a, 10);  // futures as arguments
 * console.log(await b.result());                           // 12
 *
 * const squares = client.map((x: number) => x * x, [1, 2, 3, 4]);
 * console.log(await client.gather(squares));              // [1, 4, 9, 16]
 *
 * const add = delayed((x: number, y: number) => x + y);
 * const total = add(add(1, 2), add(3, 4));                // nothing runs yet
 * console.log(await client.compute(total).result());      // 10
 *
 * for await (const f of asCompleted(squares)) console.log(f.key, f.status);
 * client.submit(registered<[string], number>('wordCount'), 'a b c');  // worker --module function
 */
import './polyfill.js';

export { Client, type Gathered, type ComputedFutures, type ScatterOptions, type RunOptions, type StoryOptions, type RetireOptions, type AdaptiveTarget } from './client.js';
export { Future } from './future.js';
export { NpmInstall, UploadFile, UploadDirectory, Environ, type BuiltinPlugin, type NpmInstallOptions, type UploadDirectoryOptions } from './environments.js';
export { workerPlugin, nannyPlugin, schedulerPlugin, type PluginDescription, type RegisterPluginOptions, type PluginRegistration } from './plugins.js';
export {
  Delayed,
  delayed,
  registered,
  type DelayedFunction,
  type Lazy,
  type LazyArgs,
  type RegisteredFunction,
  type TaskFunction,
} from './graph.js';
export {
  AsCompleted,
  asCompleted,
  wait,
  type AsCompletedOptions,
  type DoneAndNotDone,
  type ReturnWhen,
  type WaitOptions,
} from './waiting.js';
export type { ClientOptions, ClientStatus, ClusterVersions, FutureStatus, GetVersionsOptions, SchedulerInfo, Story, StorySkip, TaskOptions, Transition, WorkerInfo } from './types.js';
export {
  CancelledError,
  CommClosedError,
  InternalError,
  KilledWorkerError,
  PluginSetupError,
  pluginErrorOf,
  ProtocolVersionError,
  SkeinError,
  TaskError,
  TimeoutError,
  VersionMismatchError,
  NpmInstallError,
  makeRef,
  type TaskRef,
  type Versions,
  type VersionDifference,
  type PluginOutcome,
} from '@skein/common';

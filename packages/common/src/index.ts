/**
 * @module @skein/common
 * Shared pieces of Skein used by the client, scheduler and worker: typed errors with codes,
 * value codecs, addresses, defaults, gRPC helpers, the service lifecycle.
 *
 * @example
 * import { encodeValue, decodeValue, parseAddress } from '@skein/common';
 * decodeValue(encodeValue(new Map([[1, 2]])));   // Map { 1 => 2 }
 * parseAddress('tcp://10.0.0.5:8786');           // { host: '10.0.0.5', port: 8786 }
 */
export {
  SkeinError,
  InvalidArgumentError,
  CommClosedError,
  ProtocolVersionError,
  TaskError,
  KilledWorkerError,
  CancelledError,
  TimeoutError,
  UnauthenticatedError,
  PermissionDeniedError,
  toSkeinError,
  fromGrpcStatus,
  toRemoteError,
  fromRemoteError,
  pluginErrorOf,
  errorInfoFromWire,
  taskError,
  InternalError,
  InvalidTransitionError,
  VersionMismatchError,
  NpmInstallError,
  describeDifferences,
  type VersionDifference,
  PluginSetupError,
  type PluginOutcome,
  type ErrorCode,
  type ErrorInfo,
  type ErrorType,
  type SkeinErrorType,
  type SkeinErrorOptions,
} from './errors.js';
export {
  REF_KEY,
  QUOTE_KEY,
  makeRef,
  isMadeRef,
  isRef,
  isQuote,
  substituteRefs,
  collectRefs,
  mapTemplate,
  WALK,
  KEEP,
  QUOTE,
  UNQUOTE,
  jsonProblem,
  encodeValue,
  decodeValue,
  encodingName,
  typeName,
  type EncodingName,
  type TaskRef,
  type TemplateVisitor,
} from './values.js';
export { parseAddress, parseHost, formatAddress, grpcTarget, interfaceAddress, contactHost, type Address } from './address.js';
export {
  CHANNEL_OPTIONS,
  DEFAULT_MAX_MESSAGE_BYTES,
  RefusedMessage,
  SERVER_OPTIONS,
  checkRange,
  insecureChannel,
  newServer,
  bindServer,
  shutdownServer,
  Batcher,
  quietGrpcLogs,
  toGrpcStatus,
} from './grpc.js';
export { strictService, wireProblem } from './wire-check.js';
export { LOCAL_CLIENT_SESSION, LocalClientStream, LocalServerStream, localStreamPair, type LocalStatus } from './local-stream.js';
export { PROTOCOL_VERSION, checkProtocolVersion, protocolMinorAtLeast } from './version.js';
export {
  VERSIONS_OVERRIDE_ENV,
  skeinPackageVersions,
  resolvePackageVersion,
  checkPackageNames,
  localVersions,
  toVersionsMessage,
  fromVersionsMessage,
  versionDifferences,
  checkVersions,
  type Versions,
} from './versions.js';
export { skeinDefaults, type SkeinDefaults } from './config.js';
export { watchInvariants, reportInvariantViolation, type InvariantViolation } from './invariants.js';
export { functionName, functionSource, sha256, inlineFunction, compileFunction, explainReferenceError } from './functions.js';
export { pureKeyToken, pureKeyMatches } from './pure-key.js';
export { Lifecycle, type LifecycleStatus } from './lifecycle.js';
export { parseBytes, parseMemoryLimit, formatBytes, cpuCount } from './units.js';
export { createLogger, guardStdio, type Logger, type LogLevel } from './log.js';
export { buildValueColumn, readValueColumn, splitByCounts, checkColumn, StringTable, readStringTable, forEachRun, type ColumnValue } from './columns.js';
export { TransitionLog, type LoggedTransition } from './transition-log.js';
export { hasKeys } from './objects.js';
export { parseFaultSpec, faultHook, type FaultSpec } from './faults.js';
export {
  writeSchedulerFile,
  readSchedulerFile,
  removeSchedulerFile,
  waitForSchedulerFile,
  READY_JSON_ENV,
  readyJsonWanted,
  readyLine,
  parseReadyLine,
  type SchedulerFileContents,
  type ReadyEvent,
} from './rendezvous.js';
export {
  Security,
  ROLES,
  requireRole,
  rolesOfCertificate,
  type Role,
  type Peer,
  type TlsCredentials,
  type SecurityFiles,
  type SecurityOptions,
  type LaunchFile,
} from './security/security.js';
export { authorizeService, ANY_ROLE, type RoleTable } from './authorize.js';
export {
  SECURITY_FLAGS,
  SECURITY_ENV,
  hasSecurityFlags,
  securityFlagArgs,
  withoutSecurityEnv,
  writePrivateFiles,
  childCredentials,
  type SecurityFlags,
  type PrivateFiles,
} from './security/cli.js';
export { diagnoseTls } from './security/diagnose.js';
export {
  PluginHost,
  importPluginModule,
  instantiatePlugin,
  pluginOptions,
  checkPluginKind,
  preloadSpec,
  runPreloads,
  pluginResultToWire,
  pluginResultFromWire,
  PLUGIN_KINDS,
  type PluginKind,
  type PluginSpecData,
  type PluginHooks,
  type PluginHostOptions,
  type Importer,
} from './plugins.js';
export { MAX_UPLOAD_BYTES, UPLOAD_PLUGIN_MODULE, checkPluginSpecSize } from './plugin-limits.js';
export { fetchRegisteredPlugins } from './plugin-fetch.js';
export { resolveModuleArg } from './module-path.js';

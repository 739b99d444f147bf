/**
 * @module @skein/common/lite
 * The parts of @skein/common that load without gRPC or the generated protocol code: errors,
 * values, function sources and the transition log. Task threads import this, so each starts fast and
 * small, and so do the scheduler's and worker's state machines, which must not do I/O.
 *
 * @example
 * import { decodeValue, compileFunction } from '@skein/common/lite';
 */
export {
  SkeinError,
  InvalidArgumentError,
  TaskError,
  KilledWorkerError,
  CancelledError,
  toSkeinError,
  toRemoteError,
  fromRemoteError,
  errorInfoFromWire,
  taskError,
  InternalError,
  InvalidTransitionError,
  type ErrorCode,
  type ErrorInfo,
  type ErrorType,
  type SkeinErrorType,
} from './errors.js';
export {
  Encoding,
  REF_KEY,
  isRef,
  substituteRefs,
  jsonProblem,
  encodeValue,
  decodeValue,
  typeName,
  type EncodingName,
} from './values.js';
export { compileFunction, explainReferenceError } from './functions.js';
export { pureKeyToken, pureKeyMatches } from './pure-key.js';
export { parseAddress, parseHost, formatAddress, interfaceAddress, contactHost, type Address } from './address.js';
export { parseBytes, parseMemoryLimit } from './units.js';
export { guardStdio } from './log.js';
export { SECURITY_FLAGS, SECURITY_ENV, hasSecurityFlags, securityFlagArgs, withoutSecurityEnv, type SecurityFlags } from './security/cli.js';
export { skeinDefaults, type SkeinDefaults } from './config.js';
export { TransitionLog, type LoggedTransition } from './transition-log.js';
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
export { resolveModuleArg } from './module-path.js';

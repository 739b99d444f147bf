/**
 * @module @skein/protocol
 * Generated ts-proto code for proto/skein/v1 (never edited by hand: run `pnpm gen`).
 * This index is written by tools/codegen.mjs as well.
 *
 * @example
 * import { credentials } from '@grpc/grpc-js';
 * import { SchedulerServiceClient } from '@skein/protocol';
 * const c = new SchedulerServiceClient('127.0.0.1:8786', credentials.createInsecure());
 */

export {
  Encoding,
  FunctionRef,
  InlineFunction,
  RemoteError,
  TaskBatch,
  TaskBatch_ResourcesEntry,
  TaskSpec,
  TaskSpec_ResourcesEntry,
  Value,
  ValueColumn,
  WhoHas,
} from './gen/skein/v1/common.js';

export {
  AcquireReplicas,
  AddKeys,
  CancelKeys,
  ClientHello,
  ClientMessage,
  ClientSessionRequest,
  ClientSessionResponse,
  ClientUpdate,
  CloseWorker,
  ComputeBatch,
  ComputeTask,
  ComputeTask_InlineInputsEntry,
  FreeKeys,
  GetAdaptiveTargetRequest,
  GetAdaptiveTargetResponse,
  GetInfoRequest,
  GetInfoResponse,
  GetInfoResponse_TasksByStateEntry,
  GetStoryRequest,
  GetStoryResponse,
  GetWorkerMetricsRequest,
  GetWorkerMetricsResponse,
  Heartbeat,
  KeyCancelled,
  KeyErred,
  KeyInMemory,
  KeyLost,
  KeyNoWorker,
  KeysInMemory,
  KeysReleased,
  MetricSample,
  MissingData,
  ReleaseKeys,
  ReportWorkerDeathRequest,
  ReportWorkerDeathResponse,
  RescheduleTask,
  RestartWorkersRequest,
  RestartWorkersResponse,
  RetireWorkersRequest,
  RetireWorkersResponse,
  SchedulerServiceClient,
  type SchedulerServiceServer,
  SchedulerServiceService,
  StealRequest,
  StealResponse,
  TaskErred,
  TaskFinished,
  TasksFinished,
  TransferDone,
  Transition,
  UpdateGraph,
  WantKeys,
  Welcome,
  WorkerCommand,
  WorkerHello,
  WorkerHello_ResourcesEntry,
  WorkerInfo,
  WorkerInfo_ResourcesEntry,
  WorkerMessage,
  WorkerMetrics,
  WorkerSessionRequest,
  WorkerSessionResponse,
} from './gen/skein/v1/scheduler.js';

export {
  GetDataRequest,
  GetDataResponse,
  GetStatusRequest,
  GetStatusResponse,
  RunRequest,
  RunResponse,
  WorkerServiceClient,
  type WorkerServiceServer,
  WorkerServiceService,
} from './gen/skein/v1/worker.js';

export {
  KillRequest,
  KillResponse,
  NannyServiceClient,
  NannyServiceGetStatusRequest,
  NannyServiceGetStatusResponse,
  type NannyServiceServer,
  NannyServiceService,
  ResourceSample,
  RestartRequest,
  RestartResponse,
} from './gen/skein/v1/nanny.js';

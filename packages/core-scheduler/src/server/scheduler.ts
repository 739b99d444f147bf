import { randomUUID } from 'node:crypto';
import { Metadata, status as GrpcStatus, type Server, type ServerDuplexStream, type ServerUnaryCall, type sendUnaryData } from '@grpc/grpc-js';
import {
  SchedulerServiceService,
  type ClientSessionRequest,
  type ClientSessionResponse,
  type ClientUpdate,
  type GetInfoRequest,
  type GetInfoResponse,
  type GetStoryRequest,
  type GetStoryResponse,
  type GetWhoHasRequest,
  type GetWhoHasResponse,
  type FunctionRef,
  type InlineFunction,
  type UpdateGraph,
  type RetireWorkersRequest,
  type RetireWorkersResponse,
  type RestartWorkersRequest,
  type RestartWorkersResponse,
  type ReportWorkerDeathRequest,
  type ReportWorkerDeathResponse,
  type GetWorkerMetricsRequest,
  type GetAdaptiveTargetRequest,
  type GetAdaptiveTargetResponse,
  type GetWorkerMetricsResponse,
  type GetVersionsRequest,
  type GetVersionsResponse,
  type Versions as VersionsMessage,
  type RegisterPluginRequest,
  type RegisterPluginResponse,
  type UnregisterPluginRequest,
  type UnregisterPluginResponse,
  type GetPluginsRequest,
  type GetPluginsResponse,
  NannyServiceClient,
  type SchedulerServiceServer,
  type WorkerCommand,
  type WorkerSessionRequest,
  type WorkerSessionResponse,
} from '@skein/protocol';
import {
  Batcher,
  localStreamPair,
  type LocalClientStream,
  CHANNEL_OPTIONS,
  DEFAULT_MAX_MESSAGE_BYTES,
  checkRange,
  parseBytes,
  sha256,
  strictService,
  RefusedMessage,
  errorInfoFromWire,
  forEachRun,
  InvalidArgumentError,
  fromGrpcStatus,
  Security,
  ANY_ROLE,
  PermissionDeniedError,
  authorizeService,
  requireRole,
  type RoleTable,
  checkPackageNames,
  localVersions,
  toVersionsMessage,
  parseAddress,
  parseHost,
  Lifecycle,
  PROTOCOL_VERSION,
  ProtocolVersionError,
  bindServer,
  contactHost,
  createLogger,
  formatAddress,
  interfaceAddress,
  newServer,
  shutdownServer,
  skeinDefaults,
  watchInvariants,
  toGrpcStatus,
  type Logger,
} from '@skein/common';
import { startDashboard, type Dashboard } from '@skein/dashboard';
import { SchedulerState } from '../state/scheduler-state.js';
import { SchedulerDashboardSource } from './dashboard-source.js';
import { WorkerWatch } from './worker-watch.js';
import { SchedulerPlugins } from './plugins.js';
import type { ClientReport, ComputeAction, SchedulerAction, SchedulerEvent } from '../state/types.js';
import {
  batchable,
  clientUpdate,
  computeBatch,
  computeMessage,
  keysInMemory,
  sameBatch,
  taskDefsFromBatch,
  tasksFinishedEvent,
  taskDefFromSpec,
  transitionMessage,
  whoHasInfo,
  workerInfo,
  workerSpecFromHello,
} from './convert.js';

export interface SchedulerOptions {
  /** Address to listen on (default 0.0.0.0; 127.0.0.1 for a LocalCluster). */
  host?: string;
  /** Port (default 8786; 0 picks a free one). */
  port?: number;
  /** Listen on this network interface's address instead of host. */
  interface?: string;
  /** Heartbeat interval workers are told to use (ms). */
  heartbeatMs?: number;
  /** Remove a worker silent for this long (ms). */
  workerTtlMs?: number;
  /** Results up to this size are kept by the scheduler and forwarded inline. */
  inlineBytes?: number;
  /** Worker deaths a task survives before failing with KilledWorker. */
  allowedFailures?: number;
  /** Tasks per worker thread before root tasks queue on the scheduler (Infinity: no queuing). */
  workerSaturation?: number;
  /** Check the state machine's invariants after every event (tests). Default SKEIN_VALIDATE=1. */
  validate?: boolean;
  /**
   * Dask's no-workers-timeout (ms): a task that no running worker can run (its restrictions match
   * none) fails after this long, as does a queued task once no worker has been running this long.
   * Default null: tasks wait for a suitable worker however long it takes. Checked every heartbeatMs.
   */
  noWorkersTimeoutMs?: number | null;
  /**
   * Dask's idle-timeout (ms): the scheduler closes itself once it has had no client connected and
   * no task to run (processing, queued or waiting for a worker) for this long, so a cluster
   * someone forgot does not hold its machines (checked every heartbeatMs). Default null: never.
   */
  idleTimeoutMs?: number | null;
  /** Called when the idle timeout passes; default: the scheduler closes itself. */
  onIdleTimeout?: (idleMs: number) => void;
  /**
   * Where the dashboard listens: ':8787' (the scheduler's host), 'host:port', or a port number;
   * `null` or `false` runs none. Default 0: a free port on the scheduler's host (the CLI uses
   * ':8787'). A busy port falls back to a free one with a warning.
   */
  dashboardAddress?: string | number | null | false;
  /** TLS credentials and/or a token for every link (default: none, plaintext; see Security). */
  security?: Security;
  /**
   * The largest gRPC message the scheduler accepts, in bytes or as a size ('64MiB'); a bigger one
   * ends its call with RESOURCE_EXHAUSTED. Default 64 MiB (DEFAULT_MAX_MESSAGE_BYTES.scheduler).
   */
  maxMessageBytes?: number | string;
  /** A graph update with a key longer than this (characters) is refused whole. Default 8192. */
  maxKeyLength?: number;
  /** A graph update with more tasks, or more wanted keys, than this is refused whole. Default 1,000,000. */
  maxKeysPerUpdate?: number;
  /**
   * Preload modules (Dask's --preload): each one's exported `setup(ctx)` runs once the scheduler
   * listens (a module that cannot be loaded fails the start; a throw in setup is logged, as in Dask), its `teardown(ctx)` at close; ctx as a scheduler plugin's.
   */
  preload?: string[];
  logger?: Logger;
}

export interface CompiledSchedulerOptions {
  host: string;
  port: number;
  heartbeatMs: number;
  workerTtlMs: number;
  inlineBytes: number;
  allowedFailures: number;
  workerSaturation: number;
  validate: boolean;
  /** Infinity: no timeout. */
  noWorkersTimeoutMs: number;
  /** Infinity: never. */
  idleTimeoutMs: number;
  onIdleTimeout: ((idleMs: number) => void) | undefined;
  /** null: no dashboard. */
  dashboard: { host: string; port: number } | null;
  security: Security;
  maxMessageBytes: number;
  maxKeyLength: number;
  maxKeysPerUpdate: number;
  preload: string[];
  logger: Logger;
}

/** Parses `dashboardAddress` (':8787', 'host:8787', '8787', 8787) against the scheduler's host. */
export function parseDashboardAddress(value: string | number | null | false | undefined, schedulerHost: string): { host: string; port: number } | null {
  if (value === null || value === false) return null;
  const bad = () =>
    new InvalidArgumentError(`Bad dashboard address ${JSON.stringify(value)}: use ':PORT' or 'HOST:PORT' (for example ':8787'), or null for no dashboard.`);
  let host = schedulerHost;
  let portText: string;
  if (value === undefined) portText = '0';
  else if (typeof value === 'number') portText = String(value);
  else {
    const text = value.trim().replace(/^https?:\/\//, '');
    if (/^\d+$/.test(text)) portText = text;
    else {
      let a: { host: string; port: number };
      try {
        a = parseAddress(text);
      } catch (err) {
        throw new InvalidArgumentError(`Bad dashboard address ${JSON.stringify(value)}: ${(err as Error).message}`, { cause: err });
      }
      if (!text.startsWith(':')) host = a.host;
      portText = String(a.port);
    }
  }
  if (!/^\d+$/.test(portText)) throw bad();
  const port = Number(portText);
  if (port > 65535) throw bad();
  return { host, port };
}

export function compileSchedulerOptions(o: SchedulerOptions = {}): CompiledSchedulerOptions {
  const d = skeinDefaults();
  const host = o.interface ? interfaceAddress(o.interface) : o.host === undefined ? '0.0.0.0' : parseHost(o.host, 'scheduler host');
  const port = o.port ?? d.schedulerPort;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new InvalidArgumentError(`Bad scheduler port ${port}: a port is a number from 0 to 65535.`);
  }
  const positive = (name: string, v: number) => {
    if (!(v > 0)) throw new InvalidArgumentError(`Scheduler option ${name} must be a positive number, got ${v}.`);
    return v;
  };
  const whole = (name: string, v: number) => {
    if (!(Number.isSafeInteger(v) && v > 0)) throw new InvalidArgumentError(`Scheduler option ${name} must be a whole number above 0, got ${v}.`);
    return v;
  };
  return {
    host,
    port,
    heartbeatMs: positive('heartbeatMs', o.heartbeatMs ?? d.heartbeatMs),
    workerTtlMs: positive('workerTtlMs', o.workerTtlMs ?? d.workerTtlMs),
    inlineBytes: o.inlineBytes ?? d.inlineBytes,
    allowedFailures: o.allowedFailures ?? d.allowedFailures,
    workerSaturation: positive('workerSaturation', o.workerSaturation ?? d.workerSaturation),
    validate: o.validate ?? d.validate,
    noWorkersTimeoutMs: o.noWorkersTimeoutMs == null ? Infinity : positive('noWorkersTimeoutMs', o.noWorkersTimeoutMs),
    idleTimeoutMs: o.idleTimeoutMs == null ? Infinity : positive('idleTimeoutMs', o.idleTimeoutMs),
    onIdleTimeout: o.onIdleTimeout,
    dashboard: parseDashboardAddress(o.dashboardAddress, host),
    security: o.security ?? Security.insecure(),
    maxMessageBytes: whole('maxMessageBytes', parseBytes(o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES.scheduler, 'scheduler maxMessageBytes')),
    maxKeyLength: whole('maxKeyLength', o.maxKeyLength ?? 8192),
    maxKeysPerUpdate: whole('maxKeysPerUpdate', o.maxKeysPerUpdate ?? 1_000_000),
    preload: o.preload ?? [],
    logger: o.logger ?? createLogger('scheduler'),
  };
}

/**
 * Who may call what (README, "Roles"): clients run the cluster (Dask's client may retire and
 * restart workers), workers hold the worker session and may retire themselves, only a nanny
 * reports a death, and any member may read the cluster's info.
 */
export const SCHEDULER_ROLES: RoleTable<SchedulerServiceServer> = {
  clientSession: ['client'],
  workerSession: ['worker'],
  getInfo: ANY_ROLE,
  getStory: ['client'],
  retireWorkers: ['client', 'worker'],
  restartWorkers: ['client'],
  reportWorkerDeath: ['nanny'],
  getWorkerMetrics: ['client'],
  getAdaptiveTarget: ['client'],
  getWhoHas: ['client'],
  watchWorkers: ['client'],
  getVersions: ANY_ROLE,
  // Plugins run code on every worker: registering them is a client's (Dask's register_plugin).
  registerPlugin: ['client'],
  unregisterPlugin: ['client'],
  // A starting worker or nanny fetches the plugins of its kind.
  getPlugins: ['worker', 'nanny'],
};

/** Workers per heartbeat interval before the interval the scheduler gives them grows (heartbeatIntervalMs). */
const HEARTBEATS_PER_INTERVAL = 100;

/**
 * The heartbeat interval for a cluster of `n` workers (Dask's heartbeat_interval): `base` up to
 * HEARTBEATS_PER_INTERVAL workers, then doubled each time the workers double, so that the
 * scheduler hears about HEARTBEATS_PER_INTERVAL to twice as many heartbeats per `base` however
 * many workers there are (each costs the scheduler a message); at most a third of the worker TTL,
 * so a live worker is never taken for a silent one. `current` (the interval the workers have)
 * comes down only once the workers are a quarter of what would raise it again (no flapping
 * around a step).
 */
export function heartbeatIntervalMs(n: number, base: number, ttlMs: number, current = base): number {
  let factor = 1;
  while (n > HEARTBEATS_PER_INTERVAL * factor) factor *= 2;
  const cap = Math.max(base, ttlMs / 3);
  const wanted = Math.min(base * factor, cap);
  if (wanted >= current || current > cap) return wanted;
  // Coming down: keep the current interval while the workers are more than a quarter of its step.
  return n > (HEARTBEATS_PER_INTERVAL * (current / base)) / 4 ? current : wanted;
}

/** How long a ReportWorkerDeath names the cause of the worker's session ending (ms). */
const DEATH_REPORT_MS = 10_000;

/** Whether `host` (as the scheduler binds it) is reachable only from this machine. */
export function isLoopbackHost(host: string): boolean {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || /^::ffff:127\./i.test(h);
}

/**
 * The warning for a scheduler that listens where other machines reach it with neither TLS nor
 * an authentication token (anyone who reaches the port can run code on every worker; Dask's
 * CVE-2021-42343), or undefined when it does not.
 */
export function insecureExposure(host: string, security: Pick<Security, 'tls' | 'token'>): string | undefined {
  if (isLoopbackHost(host) || security.tls || security.token) return undefined;
  return (
    `SECURITY WARNING: the scheduler listens on ${host}, which other machines can reach, with neither TLS nor an ` +
    'authentication token: anyone who can reach its port can run code on every worker and read every result. ' +
    'Listen on 127.0.0.1 (--host 127.0.0.1), or give it credentials (TLS files or an auth token).'
  );
}

/** The longest timeout an RPC request may ask for (ms): one day. */
const MAX_TIMEOUT_MS = 86_400_000;

/** A Compute waiting in a worker's outgoing queue; it becomes a ComputeTask or joins a ComputeBatch when the queue is sent. */
interface QueuedCompute {
  compute: ComputeAction;
  fn: InlineFunction | undefined;
}

type InMemoryReport = Extract<ClientReport, { type: 'in-memory' }>;

interface WorkerConn {
  address: string;
  call: ServerDuplexStream<WorkerSessionRequest, WorkerSessionResponse>;
  /** The worker reads ComputeBatch (its WorkerHello said so). */
  batches: boolean;
  out: Batcher<WorkerCommand | QueuedCompute>;
  sentFunctions: Set<string>;
  closing: boolean;
  ended: boolean;
  /** Why the worker said it closes (WorkerClosing), the reason of its removal. */
  closeReason?: string;
  /** Reports about tasks it was not given, refused so far (ReportRefused; for the log). */
  refused: number;
  /** A ReportWorkerDeath for it while its session was open: the reason, if it closes soon after. */
  deathReport?: { reason: string; atMs: number; expected: boolean };
  /** What the worker runs, from its WorkerHello (client.getVersions). */
  versions?: VersionsMessage;
}

interface ClientConn {
  id: string;
  call: ServerDuplexStream<ClientSessionRequest, ClientSessionResponse>;
  /** The client reads KeysInMemory (its ClientHello said so). */
  batches: boolean;
  /** Updates, and in-memory reports that become KeyInMemory or KeysInMemory when sent. */
  out: Batcher<ClientUpdate | InMemoryReport>;
  /** Hashes of the inline functions this client sent (checked): the only ones its tasks may use. */
  functions: Set<string>;
}

/**
 * The scheduler process: a gRPC shell around SchedulerState. It turns stream messages into
 * events, performs the returned actions and batches what it sends.
 */
export class Scheduler {
  readonly id = randomUUID();
  readonly state: SchedulerState;
  private readonly server: Server;
  private readonly lifecycle = new Lifecycle('scheduler');
  private readonly workers = new Map<string, WorkerConn>();
  /** Workers given commands since the last flushToWorkers (so it does not walk every worker). */
  private readonly unsent = new Set<WorkerConn>();
  private readonly clients = new Map<string, ClientConn>();
  private readonly functions = new Map<string, InlineFunction>();
  private readonly retireWaiters = new Map<string, Array<() => void>>();
  /** The WatchWorkers streams. */
  private readonly watch = new WorkerWatch();
  private tick: NodeJS.Timeout | undefined;
  /** Since when (performance.now()) no client has been connected and no task has been waiting to run. */
  private idleSince: number | undefined;
  private boundPort = 0;
  private stimulusSeq = 0;
  /** The heartbeat interval the workers were given (see heartbeatIntervalMs). */
  private heartbeatMs: number;
  private dashboard: Dashboard | undefined;
  readonly options: CompiledSchedulerOptions;
  private readonly log: Logger;
  /** The plugin registry and the scheduler plugins running here. */
  readonly plugins: SchedulerPlugins;

  private constructor(options: CompiledSchedulerOptions) {
    this.options = options;
    this.heartbeatMs = options.heartbeatMs;
    this.log = options.logger;
    this.state = new SchedulerState({
      now: () => Date.now(),
      workerSaturation: options.workerSaturation,
      inlineBytes: options.inlineBytes,
      allowedFailures: options.allowedFailures,
      workerTtlMs: options.workerTtlMs,
      validate: options.validate,
      noWorkersTimeoutMs: options.noWorkersTimeoutMs,
      maxKeyLength: options.maxKeyLength,
      maxKeysPerUpdate: options.maxKeysPerUpdate,
    });
    if (options.validate) watchInvariants(this.state, () => `scheduler ${this.address}`);
    this.plugins = new SchedulerPlugins({
      security: options.security,
      log: this.log,
      address: () => this.address,
      id: this.id,
      workers: () => this.state.workers.values(),
      changed: () => {
        const host = this.plugins.host;
        this.state.onTransition =
          host.transitionHooks.length === 0 ? undefined : (key, start, finish, stimulusId, worker) => host.transition(key, start, finish, { stimulusId, worker });
      },
    });
    this.server = newServer(options.maxMessageBytes);
    this.server.addService(
      decodingInOrder(strictService(SchedulerServiceService)),
      authorizeService('SchedulerService', this.service(), options.security, SCHEDULER_ROLES),
    );
  }

  static async start(options: SchedulerOptions = {}): Promise<Scheduler> {
    const s = new Scheduler(compileSchedulerOptions(options));
    await s.start();
    return s;
  }

  private async start(): Promise<void> {
    this.lifecycle.beginStart();
    this.boundPort = await bindServer(this.server, this.options.host, this.options.port, 'scheduler', this.options.security.serverCredentials('scheduler'));
    const exposed = insecureExposure(this.options.host, this.options.security);
    if (exposed) this.log.warn(exposed);
    try {
      await this.plugins.preload(this.options.preload);
    } catch (err) {
      await this.plugins.close().catch(() => undefined);
      await shutdownServer(this.server, 100);
      throw err;
    }
    this.tick = setInterval(() => {
      this.handle({ type: 'Tick', stimulusId: this.stimulus('tick') });
      this.checkIdle();
    }, this.options.heartbeatMs);
    this.tick.unref();
    await this.startDashboard();
    this.lifecycle.started();
  }

  /** The dashboard is optional: if it cannot start, the scheduler runs without it and says so. */
  private async startDashboard(): Promise<void> {
    const d = this.options.dashboard;
    if (!d) return;
    try {
      this.dashboard = await startDashboard({
        host: d.host,
        port: d.port,
        contactHost: contactHost(d.host),
        source: new SchedulerDashboardSource(this),
        warn: (m) => this.log.warn(m),
        // HTTPS with the scheduler's own certificate when the cluster has TLS (no client certificate asked).
        ...(this.options.security.tls ? { tls: this.options.security.credentials('scheduler')! } : {}),
      });
    } catch (err) {
      this.log.warn(`The dashboard could not start on ${d.host}:${d.port} (${(err as Error).message}); running without it.`);
    }
  }

  /** `http://IP:PORT/status` (`https://` with TLS), or '' when the scheduler runs no dashboard. */
  get dashboardLink(): string {
    return this.dashboard?.url ?? '';
  }

  /** Connected clients. */
  get clientCount(): number {
    return this.clients.size;
  }

  /** `tcp://IP:PORT` (`tls://` with TLS) where clients and workers reach this scheduler. */
  get address(): string {
    return formatAddress({ host: contactHost(this.options.host), port: this.boundPort }, this.options.security.tls);
  }

  get port(): number {
    return this.boundPort;
  }

  get status() {
    return this.lifecycle.status;
  }

  /** Dask's check_idle: past idleTimeoutMs with no client and nothing to run, the scheduler closes. */
  private checkIdle(): void {
    const limit = this.options.idleTimeoutMs;
    if (limit === Infinity || this.lifecycle.closing) return;
    const c = this.state.counts;
    if (this.clients.size > 0 || c.processing + c.queued + c['no-worker'] + c.waiting > 0) {
      this.idleSince = undefined;
      return;
    }
    const now = performance.now();
    this.idleSince ??= now;
    const idle = now - this.idleSince;
    if (idle < limit) return;
    this.idleSince = undefined;
    this.log.info(`closing: no client and no task for ${Math.round(idle / 1000)} s (idle timeout ${limit / 1000} s)`);
    if (this.options.onIdleTimeout) this.options.onIdleTimeout(idle);
    else void this.close().catch((err: unknown) => this.log.error(`closing after the idle timeout failed: ${(err as Error)?.message ?? String(err)}`));
  }

  close(): Promise<void> {
    return this.lifecycle.close([
      ['stop timers', () => clearInterval(this.tick)],
      ['tear the scheduler plugins down', () => this.plugins.close()],
      [
        'close workers',
        () => {
          for (const w of this.workers.values()) this.closeWorkerStream(w, 'scheduler closing');
        },
      ],
      [
        'close clients',
        () => {
          for (const c of this.clients.values()) {
            c.out.close();
            c.call.end();
          }
        },
      ],
      ['end worker watches', () => this.watch.close()],
      ['stop dashboard', () => this.dashboard?.close()],
      ['stop server', () => shutdownServer(this.server, 1000)],
    ]);
  }

  // ---------------------------------------------------------------- event loop

  /** A stimulus id for an event the scheduler makes (or a message came without): unique per event. */
  private stimulus(prefix: string): string {
    return `${prefix}-${++this.stimulusSeq}`;
  }

  handle(event: SchedulerEvent): void {
    let actions: SchedulerAction[];
    try {
      actions = this.state.handle(event);
    } catch (err) {
      // A throw inside handle is recovered there (SchedulerState.recover); this is one inside
      // that recovery: nothing more can be repaired here.
      this.log.error(`the scheduler state could not recover from an internal error on ${event.type} (${event.stimulusId}): ${(err as Error).stack ?? err}`);
      return;
    }
    for (const a of actions) this.perform(a);
  }

  private perform(a: SchedulerAction): void {
    switch (a.type) {
      case 'Compute': {
        const w = this.workers.get(a.worker);
        if (!w) return;
        let fn: InlineFunction | undefined;
        const hash = a.def.fn.inlineHash;
        if (hash && !w.sentFunctions.has(hash)) {
          fn = this.functions.get(hash);
          w.sentFunctions.add(hash);
        }
        this.toWorker(w, { compute: a, fn });
        return;
      }
      case 'FreeKeys':
        this.toWorker(this.workers.get(a.worker), { kind: { $case: 'freeKeys', value: { keys: a.keys, stimulusId: a.stimulusId } } });
        return;
      case 'AcquireReplicas':
        this.toWorker(this.workers.get(a.worker), { kind: { $case: 'acquireReplicas', value: { whoHas: a.whoHas, stimulusId: a.stimulusId } } });
        return;
      case 'StealRequest':
        this.toWorker(this.workers.get(a.worker), { kind: { $case: 'steal', value: { key: a.key, stimulusId: a.stimulusId } } });
        return;
      case 'CloseWorker': {
        const w = this.workers.get(a.worker);
        if (!w) return;
        // Removed by the state already (no heartbeat within the TTL): not a retirement, whose
        // worker stays registered until it leaves. Tell the worker it is not registered, so it
        // closes and its nanny starts a fresh one, as for any other worker the scheduler dropped.
        if (!this.state.workers.has(a.worker)) this.dropWorkerConn(w, false, a.reason, true);
        else this.closeWorkerStream(w, a.reason);
        return;
      }
      case 'ReportToClient': {
        const r = a.report;
        this.clients.get(a.client)?.out.push(r.type === 'in-memory' ? r : clientUpdate(r));
        return;
      }
      case 'StateError':
        // The state already failed the tasks the event touched and told their clients.
        this.log.error(
          `internal error while handling ${a.event} (stimulus ${a.stimulusId}); ${a.failed} task(s) the event touched failed ` +
            `with an InternalError, the rest carries on. This is a bug in Skein, please report it: ${a.stack || a.message}`,
        );
        return;
      case 'ReportRefused': {
        // Loud for the first few per connection, then a count now and then: a flood of forged
        // reports must not flood the log.
        const w = this.workers.get(a.worker);
        const n = w ? ++w.refused : 1;
        if (n <= 10 || n % 1000 === 0) {
          this.log.warn(`refused a ${a.report} from worker ${a.worker}${n > 1 ? ` (${n} so far)` : ''}: ${a.reason}. Not used; the worker was told to drop the key.`);
        }
        return;
      }
      case 'WorkerRetired': {
        const waiters = this.retireWaiters.get(a.worker);
        this.retireWaiters.delete(a.worker);
        for (const done of waiters ?? []) done();
        return;
      }
      default: {
        const never: never = a;
        throw new Error(`unknown action ${JSON.stringify(never)}`);
      }
    }
  }

  /**
   * Sends what the workers were given while handling one incoming message at once, instead of at
   * the end of the event loop's turn: other work of the same turn (a client's results, more
   * incoming batches) would otherwise keep idle workers waiting for their next tasks.
   */
  private flushToWorkers(): void {
    if (this.unsent.size === 0) return;
    for (const w of this.unsent) if (w.out.pending > 0) w.out.flush();
    this.unsent.clear();
  }

  /** Queues a command for a worker, to leave at the next flushToWorkers (or the Batcher's own flush). */
  private toWorker(w: WorkerConn | undefined, cmd: WorkerCommand | QueuedCompute): void {
    if (!w) return;
    w.out.push(cmd);
    this.unsent.add(w);
  }

  private closeWorkerStream(w: WorkerConn, reason: string): void {
    if (w.closing) return;
    w.closing = true;
    w.out.push({ kind: { $case: 'close', value: { reason } } });
    w.out.close();
    // The worker ends its side after CloseWorker; the stream closes when it does.
  }

  // ---------------------------------------------------------------- gRPC service

  private service(): SchedulerServiceServer {
    return {
      clientSession: (call) => this.clientSession(call),
      workerSession: (call) => this.workerSession(call),
      getInfo: (call: ServerUnaryCall<GetInfoRequest, GetInfoResponse>, cb: sendUnaryData<GetInfoResponse>) => cb(null, this.info()),
      getStory: (call: ServerUnaryCall<GetStoryRequest, GetStoryResponse>, cb: sendUnaryData<GetStoryResponse>) =>
        cb(null, { transitions: this.state.story(call.request.keys).map(transitionMessage) }),
      getWhoHas: (call: ServerUnaryCall<GetWhoHasRequest, GetWhoHasResponse>, cb: sendUnaryData<GetWhoHasResponse>) =>
        cb(null, { whoHas: this.state.whoHas(call.request.keys) }),
      retireWorkers: (call: ServerUnaryCall<RetireWorkersRequest, RetireWorkersResponse>, cb: sendUnaryData<RetireWorkersResponse>) => {
        // A worker (without the client role) retires itself only: one worker named, no count.
        const peer = this.options.security.authenticate(call, 'SchedulerService.RetireWorkers');
        if (!peer.roles.has('client') && (call.request.n !== 0 || call.request.workers.length !== 1)) {
          return cb(
            toGrpcStatus(
              new PermissionDeniedError(
                `SchedulerService.RetireWorkers with ${call.request.n ? `n=${call.request.n}` : `${call.request.workers.length} workers`} needs the client role; ` +
                  `the caller (${peer.name}) is a worker, which may only retire itself (one worker named, n=0).`,
              ),
            ),
          );
        }
        const n = this.state.workers.size;
        try {
          checkRange(call.request.n, 'RetireWorkersRequest.n', 0, n, `0 retires only the named workers; at most the ${n} registered workers`);
        } catch (err) {
          return cb(toGrpcStatus(err));
        }
        this.retire(call.request.workers, call.request.n).then(
          (retired) => cb(null, { retired }),
          (err) => cb(toGrpcStatus(err)),
        );
      },
      restartWorkers: (call: ServerUnaryCall<RestartWorkersRequest, RestartWorkersResponse>, cb: sendUnaryData<RestartWorkersResponse>) => {
        try {
          checkRange(call.request.timeoutMs, 'RestartWorkersRequest.timeout_ms', 0, MAX_TIMEOUT_MS, '0: the default, 60 s');
        } catch (err) {
          return cb(toGrpcStatus(err));
        }
        this.restartWorkers(call.request.timeoutMs || 60_000).then(
          (r) => cb(null, r),
          (err) => cb(toGrpcStatus(err)),
        );
      },
      reportWorkerDeath: (call: ServerUnaryCall<ReportWorkerDeathRequest, ReportWorkerDeathResponse>, cb: sendUnaryData<ReportWorkerDeathResponse>) => {
        // Not taken as a fact: a worker whose session is open is alive as far as the scheduler
        // can tell, and only the scheduler's own detection (its session ends, no heartbeat within
        // workerTtlMs) removes it. The report names the cause if the session ends soon after.
        // `expected`: the nanny restarts it on purpose (a nanny plugin asked), so the removal that
        // follows is expected and does not count against its tasks' allowed-failures.
        const conn = this.workers.get(call.request.workerAddress);
        if (conn) conn.deathReport = { reason: call.request.reason || 'reported dead by its nanny', atMs: Date.now(), expected: call.request.expected };
        cb(null, {});
      },
      getAdaptiveTarget: (call: ServerUnaryCall<GetAdaptiveTargetRequest, GetAdaptiveTargetResponse>, cb: sendUnaryData<GetAdaptiveTargetResponse>) => {
        try {
          checkRange(call.request.targetDurationMs, 'GetAdaptiveTargetRequest.target_duration_ms', 0, MAX_TIMEOUT_MS, '0: the default, 5 s');
        } catch (err) {
          return cb(toGrpcStatus(err));
        }
        cb(null, this.state.adaptiveTarget(call.request.targetDurationMs || 5_000));
      },
      watchWorkers: (call) => {
        if (this.lifecycle.closing) {
          call.emit('error', { code: GrpcStatus.UNAVAILABLE, details: 'The scheduler is closing.' });
          return;
        }
        this.watch.watch(call, this.state.workers.values());
      },
      getVersions: (call: ServerUnaryCall<GetVersionsRequest, GetVersionsResponse>, cb: sendUnaryData<GetVersionsResponse>) => {
        try {
          const packages = checkPackageNames(call.request.packages, 'GetVersionsRequest.packages');
          cb(null, {
            scheduler: toVersionsMessage(localVersions(import.meta.url, '@skein/core-scheduler', packages)),
            workers: [...this.workers.values()].map((c) => ({ address: c.address, name: this.state.workers.get(c.address)?.name ?? '', versions: c.versions })),
          });
        } catch (err) {
          cb(toGrpcStatus(err));
        }
      },
      registerPlugin: (call: ServerUnaryCall<RegisterPluginRequest, RegisterPluginResponse>, cb: sendUnaryData<RegisterPluginResponse>) => {
        try {
          checkRange(call.request.timeoutMs, 'RegisterPluginRequest.timeout_ms', 0, MAX_TIMEOUT_MS, '0: the default, 60 s');
        } catch (err) {
          return cb(toGrpcStatus(err));
        }
        this.plugins.register(call.request.plugin, call.request.idempotent, call.request.timeoutMs).then(
          (r) => cb(null, r),
          (err) => cb(toGrpcStatus(err)),
        );
      },
      unregisterPlugin: (call: ServerUnaryCall<UnregisterPluginRequest, UnregisterPluginResponse>, cb: sendUnaryData<UnregisterPluginResponse>) => {
        try {
          checkRange(call.request.timeoutMs, 'UnregisterPluginRequest.timeout_ms', 0, MAX_TIMEOUT_MS, '0: the default, 60 s');
        } catch (err) {
          return cb(toGrpcStatus(err));
        }
        this.plugins.unregister(call.request.name, call.request.timeoutMs).then(
          (r) => cb(null, r),
          (err) => cb(toGrpcStatus(err)),
        );
      },
      getPlugins: (call: ServerUnaryCall<GetPluginsRequest, GetPluginsResponse>, cb: sendUnaryData<GetPluginsResponse>) => {
        // A plugin's options may hold secrets (Environ): each role reads only its own kind.
        const kind = call.request.kind;
        try {
          if (kind !== 'worker' && kind !== 'nanny') {
            throw new InvalidArgumentError(`GetPluginsRequest.kind must be 'worker' or 'nanny' (the caller's own role), got ${JSON.stringify(kind)}.`);
          }
          requireRole(this.options.security.authenticate(call, 'SchedulerService.GetPlugins'), kind, `SchedulerService.GetPlugins of ${kind} plugins`);
        } catch (err) {
          return cb(toGrpcStatus(err));
        }
        cb(null, { plugins: this.plugins.ofKind(kind) });
      },
      getWorkerMetrics: (_call: ServerUnaryCall<GetWorkerMetricsRequest, GetWorkerMetricsResponse>, cb: sendUnaryData<GetWorkerMetricsResponse>) => {
        cb(null, {
          workers: [...this.state.workers.values()].map((ws) => ({ address: ws.address, samples: ws.history.slice() })),
        });
      },
    };
  }

  info(): GetInfoResponse {
    const tasksByState = new Map<string, number>();
    for (const [s, n] of Object.entries(this.state.counts)) if (s !== 'forgotten') tasksByState.set(s, n);
    return {
      schedulerId: this.id,
      address: this.address,
      protocolVersion: PROTOCOL_VERSION,
      workers: [...this.state.workers.values()].map((ws) => ({ ...workerInfo(ws), versions: this.workers.get(ws.address)?.versions })),
      tasksByState,
      clients: this.clients.size,
      dashboardAddress: this.dashboardLink,
      versions: toVersionsMessage(localVersions(import.meta.url, '@skein/core-scheduler')),
    };
  }

  /**
   * Restarts every worker through its nanny (workers without one are closed) after forgetting
   * every task; resolves once the restarted workers have registered again.
   */
  async restartWorkers(timeoutMs: number): Promise<RestartWorkersResponse> {
    this.handle({ type: 'ClusterRestarted', reason: 'the cluster was restarted (client.restart)', stimulusId: `restart-${randomUUID()}` });
    const withNanny: Array<[string, string]> = [];
    const closed: string[] = [];
    for (const ws of this.state.workers.values()) {
      if (ws.nannyAddress) withNanny.push([ws.address, ws.nannyAddress]);
      else closed.push(ws.address);
    }
    for (const address of closed) {
      const conn = this.workers.get(address);
      if (conn) this.closeWorkerStream(conn, 'the cluster was restarted and this worker has no nanny');
    }
    const restarted = await Promise.all(
      withNanny.map(
        ([address, nanny]) =>
          new Promise<string>((resolve, reject) => {
            const dial = this.options.security.dial(nanny, 'scheduler', 'nanny');
            const client = new NannyServiceClient(dial.target, dial.credentials, dial.options);
            client.restart({ reason: 'client.restart()', timeoutMs }, new Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
              client.close();
              if (err) reject(fromGrpcStatus(err, `Restarting worker ${address} through its nanny at ${nanny}`));
              else resolve(res!.workerAddress);
            });
          }),
      ),
    );
    return { workers: restarted, closed };
  }

  /** Retires workers gracefully: their unique results move to peers, then they close. */
  async retire(names: string[], n: number, timeoutMs = 30_000): Promise<string[]> {
    const before = new Set([...this.state.workers.values()].filter((w) => w.status === 'retiring').map((w) => w.address));
    this.handle({ type: 'RetireWorkers', workers: names, n, stimulusId: `retire-${randomUUID()}` });
    for (const ws of this.state.workers.values()) this.watch.statusMaybeChanged(ws);
    const chosen = [...this.state.workers.values()].filter((w) => w.status === 'retiring' && !before.has(w.address)).map((w) => w.address);
    await Promise.all(
      chosen.map(
        (address) =>
          new Promise<void>((resolve) => {
            if (!this.state.workers.has(address)) return resolve();
            const list = this.retireWaiters.get(address) ?? [];
            list.push(resolve);
            this.retireWaiters.set(address, list);
            setTimeout(resolve, timeoutMs).unref();
          }),
      ),
    );
    return chosen;
  }

  /**
   * A client session within this process, without a socket (a LocalCluster's clients): the same
   * session as ClientSession over gRPC, its messages handed over as objects (common's
   * local-stream.ts), so no message is encoded, decoded or sent through HTTP/2. Only code that
   * holds this Scheduler can open one, so it needs no credentials; it has the client role.
   */
  openLocalClientSession(): LocalClientStream<ClientSessionRequest, ClientSessionResponse> {
    const { client, server } = localStreamPair<ClientSessionRequest, ClientSessionResponse>();
    if (this.lifecycle.closing) server.emit('error', { code: GrpcStatus.UNAVAILABLE, details: 'The scheduler is closing.' });
    else this.clientSession(server as unknown as ServerDuplexStream<ClientSessionRequest, ClientSessionResponse>);
    return client;
  }

  private clientSession(call: ServerDuplexStream<ClientSessionRequest, ClientSessionResponse>): void {
    let conn: ClientConn | undefined;
    let refused = false;
    const fail = (code: GrpcStatus, details: string) => {
      refused = true;
      call.emit('error', { code, details });
    };
    call.on('data', (req: ClientSessionRequest | Undecodable) => {
      // Nothing a refused session still sends is read.
      if (refused) return;
      if (req instanceof Undecodable) {
        return fail(GrpcStatus.INVALID_ARGUMENT, `The scheduler could not decode a message of this client session (${req.reason}); the session ends.`);
      }
      for (const msg of req.messages) {
        const kind = msg.kind;
        if (!kind) continue;
        if (!conn) {
          if (kind.$case !== 'hello') return fail(GrpcStatus.FAILED_PRECONDITION, 'The first message of a client session must be a ClientHello.');
          const remote = kind.value.protocolVersion;
          if (remote.split('.')[0] !== PROTOCOL_VERSION.split('.')[0]) {
            return fail(GrpcStatus.FAILED_PRECONDITION, new ProtocolVersionError(PROTOCOL_VERSION, remote || '(none)', 'scheduler').message);
          }
          const id = kind.value.clientId || randomUUID();
          if (this.clients.has(id)) return fail(GrpcStatus.ALREADY_EXISTS, `A client with id ${id} is already connected; use a unique client id.`);
          const batches = kind.value.batches;
          conn = {
            id,
            call,
            batches,
            functions: new Set(),
            out: new Batcher<ClientUpdate | InMemoryReport>((items) => {
              if (!call.writableEnded && !call.destroyed) call.write({ updates: clientUpdates(items, batches) });
            }),
          };
          this.clients.set(id, conn);
          this.handle({ type: 'ClientConnected', client: id, stimulusId: this.stimulus(`client-connect-${id}`) });
          if (this.plugins.host.size > 0) this.plugins.host.call('addClient', id);
          conn.out.push({ kind: { $case: 'welcome', value: this.welcome() } });
          continue;
        }
        try {
          this.clientMessage(conn, kind);
        } catch (err) {
          if (!(err instanceof InvalidArgumentError)) throw err;
          this.log.warn(`refused a message from client ${conn.id}: ${err.message}`);
          return fail(GrpcStatus.INVALID_ARGUMENT, `The scheduler refused a malformed message: ${err.message}`);
        }
      }
      this.flushToWorkers();
    });
    const closed = () => {
      if (!conn || this.clients.get(conn.id) !== conn) return;
      this.clients.delete(conn.id);
      conn.out.close();
      this.handle({ type: 'ClientDisconnected', client: conn.id, stimulusId: this.stimulus(`client-disconnect-${conn.id}`) });
      if (this.plugins.host.size > 0) this.plugins.host.call('removeClient', conn.id);
    };
    call.on('end', () => {
      closed();
      call.end();
    });
    call.on('error', closed);
    call.on('cancelled', closed);
    call.on('close', closed);
  }

  private clientMessage(conn: ClientConn, kind: NonNullable<ClientSessionRequest['messages'][number]['kind']>): void {
    switch (kind.$case) {
      case 'hello':
        return;
      case 'updateGraph': {
        const u = kind.value;
        const problem = this.acceptFunctions(conn, u);
        const tasks = problem ? [] : u.tasks.map(taskDefFromSpec);
        if (!problem) for (const b of u.batches) taskDefsFromBatch(b, tasks);
        this.handle({
          type: 'GraphUpdated',
          client: conn.id,
          tasks,
          wanted: u.wantedKeys,
          broadcast: u.broadcastKeys,
          stimulusId: u.stimulusId || this.stimulus('update-graph'),
          ...(problem ? { problem } : {}),
        });
        if (!problem && this.plugins.host.size > 0) this.plugins.host.call('updateGraph', { client: conn.id, keys: tasks.map((t) => t.key) });
        return;
      }
      case 'releaseKeys':
        return this.handle({ type: 'ClientReleasedKeys', client: conn.id, keys: kind.value.keys, stimulusId: kind.value.stimulusId || this.stimulus('client-release') });
      case 'cancelKeys':
        return this.handle({ type: 'ClientCancelledKeys', client: conn.id, keys: kind.value.keys, stimulusId: kind.value.stimulusId || this.stimulus('client-cancel') });
      case 'wantKeys':
        return this.handle({ type: 'ClientWantsKeys', client: conn.id, keys: kind.value.keys, stimulusId: kind.value.stimulusId || this.stimulus('client-want') });
    }
  }

  /**
   * Takes the function sources of an update, each checked against its hash (the SHA-256 of the
   * source, as @skein/common's inlineFunction makes it), so a source stored under a hash is the
   * one every client means by it; and checks that the update's tasks use only inline functions
   * this client sent. Returns what is wrong (the update is then refused whole), or undefined.
   */
  private acceptFunctions(conn: ClientConn, u: UpdateGraph): string | undefined {
    for (const f of u.functions) {
      if (!f.source) continue;
      if (!conn.functions.has(f.hash) && sha256(f.source) !== f.hash) {
        return `the source sent for function ${f.name || '(unnamed)'} does not match its hash ${JSON.stringify(f.hash.slice(0, 80))} (a function's hash is the SHA-256 hex digest of its source)`;
      }
      conn.functions.add(f.hash);
      if (!this.functions.has(f.hash)) this.functions.set(f.hash, f);
    }
    const unsent = (fn: FunctionRef | undefined, key: string) =>
      fn?.kind?.$case === 'inlineHash' && !conn.functions.has(fn.kind.value)
        ? `task ${JSON.stringify(key.slice(0, 80))} uses the inline function ${JSON.stringify(fn.kind.value.slice(0, 80))}, whose source this client has not sent`
        : undefined;
    for (const t of u.tasks) {
      const p = unsent(t.function, t.key);
      if (p) return p;
    }
    for (const b of u.batches) {
      const p = unsent(b.function, b.keys[0] ?? '');
      if (p) return p;
    }
    return undefined;
  }

  /**
   * The workers changed in number: when the heartbeat interval for this many changes, every
   * connected worker is sent a Welcome again with the new interval (a worker takes the interval of
   * each Welcome it gets; protocol README, "Workers"). A newly registered worker gets it in its own Welcome.
   */
  private rescaleHeartbeats(joining?: WorkerConn): void {
    const next = heartbeatIntervalMs(this.workers.size, this.options.heartbeatMs, this.options.workerTtlMs, this.heartbeatMs);
    if (next === this.heartbeatMs) return;
    this.heartbeatMs = next;
    if (this.lifecycle.closing) return;
    this.log.info(`${this.workers.size} workers: heartbeats every ${next} ms`);
    for (const w of this.workers.values()) if (w !== joining && !w.closing) this.toWorker(w, { kind: { $case: 'welcome', value: this.welcome() } });
  }

  private welcome() {
    return {
      protocolVersion: PROTOCOL_VERSION,
      schedulerId: this.id,
      schedulerAddress: this.address,
      heartbeatIntervalMs: this.heartbeatMs,
      batches: true,
      maxMessageBytes: this.options.maxMessageBytes,
      maxKeysPerUpdate: Math.min(this.options.maxKeysPerUpdate, 2 ** 31 - 1),
    };
  }

  private workerSession(call: ServerDuplexStream<WorkerSessionRequest, WorkerSessionResponse>): void {
    let conn: WorkerConn | undefined;
    let refused = false;
    const fail = (code: GrpcStatus, details: string) => {
      refused = true;
      call.emit('error', { code, details });
    };
    call.on('data', (req: WorkerSessionRequest | Undecodable) => {
      // A dropped connection was told so (dropWorkerConn); what it still sends is not news, and
      // its address may belong to a new registration by now.
      if (refused || (conn && this.workers.get(conn.address) !== conn)) return;
      if (req instanceof Undecodable) {
        // Its tasks are re-run elsewhere once the worker is removed (the session's end).
        if (conn) this.log.error(`closing worker ${conn.address}: it sent a message the scheduler could not decode: ${req.reason}`);
        return fail(GrpcStatus.INVALID_ARGUMENT, `The scheduler could not decode a message of this worker session (${req.reason}); the session ends.`);
      }
      for (const msg of req.messages) {
        const kind = msg.kind;
        if (!kind) continue;
        if (!conn) {
          if (kind.$case !== 'hello') return fail(GrpcStatus.FAILED_PRECONDITION, 'The first message of a worker session must be a WorkerHello.');
          const hello = kind.value;
          if (hello.protocolVersion.split('.')[0] !== PROTOCOL_VERSION.split('.')[0]) {
            return fail(
              GrpcStatus.FAILED_PRECONDITION,
              new ProtocolVersionError(PROTOCOL_VERSION, hello.protocolVersion || '(none)', 'scheduler').message,
            );
          }
          if (!hello.address) return fail(GrpcStatus.INVALID_ARGUMENT, 'WorkerHello.address is empty: a worker must say where peers reach it.');
          try {
            checkRange(hello.nthreads, 'WorkerHello.nthreads', 1, 1 << 16);
            checkRange(hello.memoryLimit, 'WorkerHello.memory_limit', 0, Number.MAX_SAFE_INTEGER, '0: no limit');
            for (const [name, q] of hello.resources) checkRange(q, `WorkerHello.resources[${JSON.stringify(name.slice(0, 80))}]`, 0, Number.MAX_VALUE);
          } catch (err) {
            return fail(GrpcStatus.INVALID_ARGUMENT, (err as Error).message);
          }
          if (this.lifecycle.closing) return fail(GrpcStatus.UNAVAILABLE, 'The scheduler is closing.');
          const c: WorkerConn = {
            address: hello.address,
            call,
            batches: hello.batches,
            sentFunctions: new Set(),
            closing: false,
            ended: false,
            refused: 0,
            versions: hello.versions,
            out: new Batcher<WorkerCommand | QueuedCompute>((items) => {
              if (!call.writableEnded && !call.destroyed) call.write({ commands: workerCommands(items, hello.batches) });
              if (c.closing && !c.ended) {
                c.ended = true;
                call.end();
              }
            }),
          };
          // The address belongs to a worker whose session is open: a second registration does not
          // displace it (Dask: "Worker already exists"). A worker that lost its session and
          // reconnects retries until the scheduler has seen the old one end.
          if (this.workers.has(hello.address)) {
            this.log.warn(`refused a worker registration under ${hello.address}: a worker with this address is connected`);
            return fail(
              GrpcStatus.ALREADY_EXISTS,
              `A worker with address ${hello.address} is already registered and connected; a second registration under a live ` +
                "worker's address is refused. Give each worker its own address (host and port).",
            );
          }
          conn = c;
          this.workers.set(c.address, c);
          this.rescaleHeartbeats(c);
          c.out.push({ kind: { $case: 'welcome', value: this.welcome() } });
          this.handle({ type: 'WorkerAdded', worker: workerSpecFromHello(hello), stimulusId: this.stimulus(`worker-added-${c.address}`) });
          const added = this.state.workers.get(c.address);
          if (added) this.watch.added(added);
          if (added) {
            if (this.plugins.host.size > 0) this.plugins.host.call('addWorker', { address: added.address, name: added.name });
            this.plugins.workerAdded(added);
          }
          this.log.info(`Register worker ${c.address} (${hello.name || 'unnamed'}, ${hello.nthreads} threads)`);
          continue;
        }
        try {
          this.workerMessage(conn, kind);
        } catch (err) {
          if (!(err instanceof InvalidArgumentError)) throw err;
          // Its tasks are re-run elsewhere once the worker is removed: nothing is lost.
          this.log.error(`closing worker ${conn.address}: it sent a malformed message: ${err.message}`);
          return fail(GrpcStatus.INVALID_ARGUMENT, `The scheduler refused a malformed message: ${err.message}`);
        }
      }
      this.flushToWorkers();
    });
    const closed = (why: string) => () => {
      if (!conn) return;
      // A death its nanny reported just before (it kills a worker over its memory limit, then
      // says why) names the cause.
      const recent = conn.deathReport !== undefined && Date.now() - conn.deathReport.atMs < DEATH_REPORT_MS ? conn.deathReport : undefined;
      this.dropWorkerConn(conn, conn.closing || recent?.expected === true, conn.closeReason ?? recent?.reason ?? why);
    };
    call.on('end', () => {
      closed('connection closed')();
      if (!call.writableEnded) call.end();
    });
    call.on('error', closed('connection error'));
    call.on('cancelled', closed('connection lost'));
    call.on('close', closed('connection closed'));
  }

  /**
   * Forgets a worker's connection and removes the worker from the state. `tell`: the worker may
   * still be there (a reported death, a replacing registration, a missed heartbeat TTL), so its
   * stream is ended with NOT_FOUND: the worker then knows it is no longer registered and closes
   * (its nanny starts a fresh one) instead of running on as a zombie nobody sends work to.
   */
  private dropWorkerConn(conn: WorkerConn, expected: boolean, reason: string, tell = false): void {
    if (this.workers.get(conn.address) !== conn) return;
    this.workers.delete(conn.address);
    this.unsent.delete(conn);
    this.rescaleHeartbeats();
    if (tell && !conn.ended) {
      conn.closing = true;
      conn.ended = true; // the Batcher's last flush must not end the stream with an OK status
    }
    conn.out.close();
    if (this.state.workers.has(conn.address)) {
      this.handle({ type: 'WorkerRemoved', worker: conn.address, expected, reason, stimulusId: this.stimulus(`worker-removed-${conn.address}`) });
    }
    this.watch.removed(conn.address, reason, expected);
    if (this.plugins.host.size > 0) this.plugins.host.call('removeWorker', { address: conn.address, reason, expected });
    const waiters = this.retireWaiters.get(conn.address);
    this.retireWaiters.delete(conn.address);
    for (const done of waiters ?? []) done();
    if (!this.lifecycle.closing) this.log.info(`Remove worker ${conn.address} (${reason})`);
    if (tell && !conn.call.destroyed) {
      conn.call.emit('error', {
        code: GrpcStatus.NOT_FOUND,
        details: `Worker ${conn.address} is not registered with the scheduler at ${this.address} any more (${reason}).`,
      });
    }
  }

  private workerMessage(conn: WorkerConn, kind: NonNullable<WorkerSessionRequest['messages'][number]['kind']>): void {
    const worker = conn.address;
    switch (kind.$case) {
      case 'hello':
        return;
      case 'taskFinished': {
        const m = kind.value;
        return this.handle({
          type: 'TaskFinished',
          worker,
          key: m.key,
          value: m.value ?? null,
          nbytes: m.nbytes,
          typeName: m.typeName,
          startMs: m.startMs,
          stopMs: m.stopMs,
          stimulusId: m.stimulusId || this.stimulus(`task-finished-${m.key}`),
        });
      }
      case 'tasksFinished':
        return this.handle(tasksFinishedEvent(kind.value, worker, () => this.stimulus('tasks-finished')));
      case 'taskErred': {
        const m = kind.value;
        return this.handle({
          type: 'TaskErred',
          worker,
          key: m.key,
          error: errorInfoFromWire(m.error, m.key),
          startMs: m.startMs,
          stopMs: m.stopMs,
          stimulusId: m.stimulusId || this.stimulus(`task-erred-${m.key}`),
        });
      }
      case 'heartbeat': {
        // A worker the state does not know (it was removed) is told so, and closes.
        if (!this.state.workers.has(worker)) return this.dropWorkerConn(conn, false, 'a heartbeat from a worker that is not registered', true);
        const m = kind.value;
        this.handle({
          type: 'Heartbeat',
          worker,
          metrics: {
            executing: m.executing,
            ready: m.ready,
            memoryRss: m.memoryRss,
            managedBytes: m.managedBytes,
            spilledBytes: m.spilledBytes,
            cpuPercent: m.cpuPercent,
            paused: m.paused,
          },
          stimulusId: this.stimulus('heartbeat'),
        });
        return this.watch.statusMaybeChanged(this.state.workers.get(worker));
      }
      case 'addKeys':
        return this.handle({ type: 'ReplicasAdded', worker, keys: kind.value.keys.map(whoHasInfo), stimulusId: kind.value.stimulusId || this.stimulus('add-keys') });
      case 'keysReleased':
        return this.handle({ type: 'WorkerReleasedKeys', worker, keys: kind.value.keys, stimulusId: kind.value.stimulusId || this.stimulus('keys-released') });
      case 'missingData':
        return this.handle({
          type: 'MissingData',
          worker,
          key: kind.value.key,
          errant: kind.value.worker,
          stimulusId: kind.value.stimulusId || this.stimulus('missing-data'),
        });
      case 'stealResponse':
        return this.handle({
          type: 'StealResponse',
          worker,
          key: kind.value.key,
          state: kind.value.state,
          stimulusId: kind.value.stimulusId || this.stimulus('steal-response'),
        });
      case 'reschedule':
        return this.handle({ type: 'RescheduleRequested', worker, key: kind.value.key, stimulusId: kind.value.stimulusId || this.stimulus('reschedule') });
      case 'transferDone': {
        const m = kind.value;
        return this.handle({
          type: 'TransferDone',
          worker,
          source: m.source,
          keys: m.keys,
          nbytes: m.nbytes,
          startMs: m.startMs,
          stopMs: m.stopMs,
          stimulusId: this.stimulus('transfer-done'),
        });
      }
      case 'closing':
        // The worker hit an internal error and closes (its nanny starts a fresh one); it is
        // removed with this reason when its session ends, as a death: its tasks are rescheduled.
        conn.closeReason = kind.value.reason || 'the worker closed on an internal error';
        this.log.warn(`worker ${worker} is closing on an internal error (stimulus ${kind.value.stimulusId || '(none)'}): ${conn.closeReason}`);
        return;
    }
  }
}

/** A session message whose bytes do not decode (see decodingInOrder). */
class Undecodable {
  constructor(readonly reason: string) {}
}

/**
 * The service with session messages that fail to decode handed to the session handler (as an
 * Undecodable) instead of failing the call inside grpc-js. grpc-js answers such a message at
 * once, while messages before it may still wait for the handler: when the handler then answers
 * one of those (the scheduler often does), the call's status never reaches the peer, which
 * waits forever. The handler refuses an Undecodable in order, through its own stream, after
 * what it already wrote. Messages strictService refuses take the same path.
 */
function decodingInOrder(service: typeof SchedulerServiceService): typeof SchedulerServiceService {
  const tolerant = <T>(decode: (b: Buffer) => T) => (b: Buffer): T => {
    try {
      // A message strictService refuses (a wrong wire type) is refused by the handler too, in
      // order, not by newServer's interceptor, which would answer at once.
      const m = decode(b);
      return m instanceof RefusedMessage ? (new Undecodable(m.details) as unknown as T) : m;
    } catch (err) {
      return new Undecodable(err instanceof Error ? err.message : String(err)) as unknown as T;
    }
  };
  return {
    ...service,
    clientSession: { ...service.clientSession, requestDeserialize: tolerant(service.clientSession.requestDeserialize) },
    workerSession: { ...service.workerSession, requestDeserialize: tolerant(service.workerSession.requestDeserialize) },
  };
}

/**
 * A worker's queued commands as sent: Computes become ComputeTasks, or, for a worker that reads
 * them, runs of batchable Computes of one function become one ComputeBatch each. Order is kept.
 */
function workerCommands(items: ReadonlyArray<WorkerCommand | QueuedCompute>, batches: boolean): WorkerCommand[] {
  const out: WorkerCommand[] = [];
  const joins = (first: WorkerCommand | QueuedCompute, next: WorkerCommand | QueuedCompute): boolean =>
    batches &&
    'compute' in first &&
    'compute' in next &&
    !next.fn &&
    batchable(first.compute) &&
    batchable(next.compute) &&
    sameBatch(first.compute.def, next.compute.def);
  forEachRun(items, joins, (from, to) => {
    const item = items[from]!;
    if (!('compute' in item)) out.push(item);
    else if (to - from === 1) out.push({ kind: { $case: 'compute', value: computeMessage(item.compute, item.fn) } });
    else {
      const run = items.slice(from, to).map((q) => (q as QueuedCompute).compute);
      out.push({ kind: { $case: 'computeBatch', value: computeBatch(run, item.fn) } });
    }
  });
  return out;
}

/** A client's queued updates as sent: for a client that reads them, each run of in-memory reports becomes one KeysInMemory. */
function clientUpdates(items: ReadonlyArray<ClientUpdate | InMemoryReport>, batches: boolean): ClientUpdate[] {
  const out: ClientUpdate[] = [];
  forEachRun(
    items,
    (first, next) => batches && 'type' in first && 'type' in next,
    (from, to) => {
      const item = items[from]!;
      if (!('type' in item)) out.push(item);
      else if (batches) out.push({ kind: { $case: 'keysInMemory', value: keysInMemory(items.slice(from, to) as InMemoryReport[]) } });
      else out.push(clientUpdate(item));
    },
  );
  return out;
}

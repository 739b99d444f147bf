/** A hand-written SchedulerService for shell tests: records worker messages, sends commands. */
import { status as GrpcStatus, type Server, type ServerDuplexStream } from '@grpc/grpc-js';
import {
  SchedulerServiceService,
  type SchedulerServiceServer,
  type TaskFinished,
  type WorkerCommand,
  type WorkerHello,
  type WorkerMessage,
  type WorkerSessionRequest,
  type WorkerSessionResponse,
} from '@skein/protocol';
import { PROTOCOL_VERSION, bindServer, checkColumn, newServer, readStringTable, readValueColumn, shutdownServer } from '@skein/common';

type Session = ServerDuplexStream<WorkerSessionRequest, WorkerSessionResponse>;

export class FakeScheduler {
  server!: Server;
  address = '';
  port = 0;
  readonly hellos: WorkerHello[] = [];
  readonly messages: WorkerMessage[] = [];
  readonly sessions = new Map<string, Session>();
  retired: string[] = [];
  protocolVersion = PROTOCOL_VERSION;
  /**
   * Whether the Welcome says this scheduler reads the column forms (TasksFinished). Off by default:
   * the fake then stands for a scheduler older than protocol 1.1, and results arrive per task.
   */
  batches: boolean;
  private waiters: Array<() => void> = [];

  private constructor(opts: { batches?: boolean }) {
    this.batches = opts.batches ?? false;
  }

  static async start(port = 0, opts: { batches?: boolean } = {}): Promise<FakeScheduler> {
    const f = new FakeScheduler(opts);
    f.server = newServer();
    const impl: SchedulerServiceServer = {
      clientSession: (call) => call.end(),
      workerSession: (call) => f.onSession(call),
      getInfo: (_c, cb) => cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
      getStory: (_c, cb) => cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
      getWhoHas: (_c, cb) => cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
      restartWorkers: (_c, cb) => cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
      reportWorkerDeath: (_c, cb) => cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
      getWorkerMetrics: (_c, cb) => cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
      getAdaptiveTarget: (_c, cb) => cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
      watchWorkers: (call) => call.emit('error', { code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
      getVersions: (_c, cb) => cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
      registerPlugin: (_c, cb) => cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
      unregisterPlugin: (_c, cb) => cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
      getPlugins: (_c, cb) => cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
      retireWorkers: (call, cb) => {
        f.retired.push(...call.request.workers);
        cb(null, { retired: call.request.workers });
        setTimeout(() => {
          for (const w of call.request.workers) f.send(w, { kind: { $case: 'close', value: { reason: 'retired' } } });
        }, 20);
      },
    };
    f.server.addService(SchedulerServiceService, impl);
    f.port = await bindServer(f.server, '127.0.0.1', port, 'fake scheduler');
    f.address = `tcp://127.0.0.1:${f.port}`;
    return f;
  }

  private onSession(call: Session): void {
    let worker = '';
    call.on('data', (req: WorkerSessionRequest) => {
      for (const m of req.messages) {
        if (m.kind?.$case === 'hello') {
          const hello = m.kind.value;
          if (hello.protocolVersion.split('.')[0] !== this.protocolVersion.split('.')[0]) {
            call.emit('error', { code: GrpcStatus.FAILED_PRECONDITION, details: `Protocol version mismatch: scheduler speaks ${this.protocolVersion}, worker speaks ${hello.protocolVersion}` });
            return;
          }
          worker = hello.address;
          this.hellos.push(hello);
          this.sessions.set(worker, call);
          call.write({
            commands: [{ kind: { $case: 'welcome', value: { protocolVersion: this.protocolVersion, schedulerId: 'fake', schedulerAddress: this.address, heartbeatIntervalMs: 50, batches: this.batches, maxMessageBytes: 0, maxKeysPerUpdate: 0 } } }],
          });
        } else {
          this.messages.push(m);
        }
      }
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    });
    call.on('end', () => {
      if (this.sessions.get(worker) === call) this.sessions.delete(worker);
      call.end();
    });
    call.on('error', () => undefined);
  }

  send(worker: string, ...commands: WorkerCommand[]): void {
    const s = this.sessions.get(worker);
    if (!s) throw new Error(`no session for ${worker}`);
    s.write({ commands });
  }

  /** Waits until `pred` holds over the received messages. */
  async waitFor<T>(pred: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = pred();
      if (v) return v;
      if (Date.now() > deadline) throw new Error('timed out waiting');
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 20);
      });
    }
  }

  of<C extends NonNullable<WorkerMessage['kind']>['$case']>(kind: C): Array<Extract<NonNullable<WorkerMessage['kind']>, { $case: C }>['value']> {
    return this.messages.filter((m) => m.kind?.$case === kind).map((m) => m.kind!.value) as never;
  }

  /**
   * Every finished task, whichever form it came in: TaskFinished as it is, and each entry of a
   * TasksFinished as the TaskFinished it stands for (its columns checked as the real scheduler
   * does; a column that does not match throws here).
   */
  finished(): TaskFinished[] {
    const out: TaskFinished[] = [];
    for (const m of this.messages) {
      const k = m.kind;
      if (k?.$case === 'taskFinished') out.push(k.value);
      else if (k?.$case === 'tasksFinished') {
        const t = k.value;
        const n = t.keys.length;
        const values = readValueColumn(t.values, n, 'TasksFinished.values');
        for (const [field, col] of [['nbytes', t.nbytes], ['start_ms', t.startMs], ['stop_ms', t.stopMs]] as const) {
          checkColumn(col.length, n, field, 'TasksFinished');
        }
        const typeNames = readStringTable(t.typeNames, t.typeNameIndex, n, 'TasksFinished.type_name_index');
        for (let i = 0; i < n; i++) {
          const v = values[i];
          out.push({
            key: t.keys[i]!,
            value: v ? { encoding: v.encoding, data: Buffer.from(v.data) } : undefined,
            nbytes: t.nbytes[i]!,
            typeName: typeNames[i]!,
            startMs: t.startMs[i]!,
            stopMs: t.stopMs[i]!,
            stimulusId: t.stimulusId,
          });
        }
      }
    }
    return out;
  }

  /** Stops at once, as a crashing scheduler would. */
  async kill(): Promise<void> {
    this.server.forceShutdown();
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) s.end();
    await shutdownServer(this.server, 200);
  }
}

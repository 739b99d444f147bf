/** A hand-written SchedulerService for shell tests: records worker messages, sends commands. */
import { status as GrpcStatus, type Server, type ServerDuplexStream } from '@grpc/grpc-js';
import {
  SchedulerServiceService,
  type SchedulerServiceServer,
  type WorkerCommand,
  type WorkerHello,
  type WorkerMessage,
  type WorkerSessionRequest,
  type WorkerSessionResponse,
} from '@skein/protocol';
import { PROTOCOL_VERSION, bindServer, newServer, shutdownServer } from '@skein/common';

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
  private waiters: Array<() => void> = [];

  static async start(port = 0): Promise<FakeScheduler> {
    const f = new FakeScheduler();
    f.server = newServer();
    const impl: SchedulerServiceServer = {
      clientSession: (call) => call.end(),
      workerSession: (call) => f.onSession(call),
      getInfo: (_c, cb) => cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
      getStory: (_c, cb) => cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' }),
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
            commands: [{ kind: { $case: 'welcome', value: { protocolVersion: this.protocolVersion, schedulerId: 'fake', schedulerAddress: this.address, heartbeatIntervalMs: 50 } } }],
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

  /** Stops at once, as a crashing scheduler would. */
  async kill(): Promise<void> {
    this.server.forceShutdown();
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) s.end();
    await shutdownServer(this.server, 200);
  }
}

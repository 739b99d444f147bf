/**
 * A fake in-process scheduler + worker on real gRPC sockets (127.0.0.1:0). It implements the
 * client-facing half of skein.v1 just well enough to prove the client speaks the protocol: it
 * compiles inline functions itself, runs tasks when their dependencies are in memory, reports
 * results inline or via GetData, and records every message it receives.
 */
import { status as GrpcStatus, type Server, type ServerDuplexStream, type ServerWritableStream } from '@grpc/grpc-js';
import {
  Batcher,
  PROTOCOL_VERSION,
  bindServer,
  compileFunction,
  decodeValue,
  encodeValue,
  newServer,
  shutdownServer,
  substituteRefs,
  toRemoteError,
  typeName,
} from '@skein/common';
import {
  Encoding,
  SchedulerServiceService,
  WorkerServiceService,
  type ClientMessage,
  type ClientSessionRequest,
  type ClientSessionResponse,
  type ClientUpdate,
  type GetDataRequest,
  type GetDataResponse,
  type RemoteError,
  type TaskSpec,
  type UpdateGraph,
  type Value,
} from '@skein/protocol';

export interface FakeOptions {
  /** The protocol version the fake speaks (refuses clients of another major). */
  protocolVersion?: string;
  /** Results up to this size travel inline. */
  inlineBytes?: number;
  /** GetData chunk size. */
  chunkBytes?: number;
  /** Functions registered by name. */
  registered?: Record<string, (...args: never[]) => unknown>;
  dashboardAddress?: string;
  /** Worker addresses reported as holders of large values (default: this fake's own address). */
  holders?: () => string[];
  /** GetWhoHas answers: a key's holders now (default: the RPC is unimplemented). */
  whoHas?: (key: string) => string[];
}

type TaskState = 'waiting' | 'running' | 'memory' | 'erred' | 'cancelled';

interface FakeTask {
  spec: TaskSpec;
  state: TaskState;
  value?: Value;
  error?: RemoteError;
  runs: number;
}

interface Session {
  clientId: string;
  wants: Set<string>;
  out: Batcher<ClientUpdate>;
  call: ServerDuplexStream<ClientSessionRequest, ClientSessionResponse>;
}

export class FakeCluster {
  address = '';
  readonly received: ClientMessage[] = [];
  readonly requests: ClientSessionRequest[] = [];
  readonly tasks = new Map<string, FakeTask>();
  /** Values held by the fake worker. */
  readonly data = new Map<string, Value>();
  readonly functions = new Map<string, Function>();
  readonly sessions = new Set<Session>();
  readonly story: Array<{ key: string; start: string; finish: string }> = [];
  getDataCalls = 0;
  private readonly server: Server;
  private readonly opts: Required<Omit<FakeOptions, 'registered' | 'holders' | 'whoHas'>> & Pick<FakeOptions, 'registered' | 'holders' | 'whoHas'>;

  private constructor(opts: FakeOptions) {
    this.opts = {
      protocolVersion: opts.protocolVersion ?? PROTOCOL_VERSION,
      inlineBytes: opts.inlineBytes ?? 64 * 1024,
      chunkBytes: opts.chunkBytes ?? 1024 * 1024,
      registered: opts.registered,
      holders: opts.holders,
      whoHas: opts.whoHas,
      dashboardAddress: opts.dashboardAddress ?? 'http://127.0.0.1:8787/status',
    };
    this.server = newServer();
    this.server.addService(SchedulerServiceService, {
      clientSession: (call: ServerDuplexStream<ClientSessionRequest, ClientSessionResponse>) => this.session(call),
      workerSession: (call: ServerDuplexStream<unknown, unknown>) => {
        call.emit('error', { code: GrpcStatus.UNIMPLEMENTED, details: 'fake' });
      },
      getInfo: (_call: unknown, cb: (e: null, r: unknown) => void) =>
        cb(null, {
          schedulerId: 'fake-scheduler',
          address: this.address,
          protocolVersion: this.opts.protocolVersion,
          workers: [
            {
              address: this.address,
              name: 'fake-worker',
              nthreads: 1,
              memoryLimit: 0,
              resources: new Map(),
              processing: 0,
              inMemory: this.data.size,
              managedBytes: 0,
              memoryRss: 0,
              lastSeenMs: Date.now(),
              status: 'running',
              registeredFunctions: Object.keys(this.opts.registered ?? {}),
              pid: process.pid,
              nannyAddress: '',
            },
          ],
          tasksByState: this.countStates(),
          clients: this.sessions.size,
          dashboardAddress: this.opts.dashboardAddress,
        }),
      getStory: (call: { request: { keys: string[] } }, cb: (e: null, r: unknown) => void) =>
        cb(null, {
          transitions: this.story
            .filter((t) => call.request.keys.includes(t.key))
            .map((t) => ({ ...t, stimulusId: 'fake', timeMs: 0, worker: this.address })),
        }),
      retireWorkers: (_call: unknown, cb: (e: null, r: unknown) => void) => cb(null, { retired: [] }),
      getWhoHas: (call: { request: { keys: string[] } }, cb: (e: { code: number; details: string } | null, r?: unknown) => void) => {
        const whoHas = this.opts.whoHas;
        if (!whoHas) return cb({ code: GrpcStatus.UNIMPLEMENTED, details: 'fake' });
        cb(null, { whoHas: call.request.keys.map((key) => ({ key, workers: whoHas(key), nbytes: -1 })) });
      },
    });
    this.server.addService(WorkerServiceService, {
      getData: (call: ServerWritableStream<GetDataRequest, GetDataResponse>) => this.getData(call),
      run: (call: { request: { function?: { source: string }; args?: Value } }, cb: (e: null, r: unknown) => void) => {
        void (async () => {
          try {
            const fn = compileFunction(call.request.function!.source);
            const args = decodeValue(call.request.args) as unknown[];
            const result: unknown = await fn(...args);
            cb(null, { outcome: { $case: 'result', value: encodeValue(result) } });
          } catch (err) {
            cb(null, { outcome: { $case: 'error', value: toRemoteError(err) } });
          }
        })();
      },
      getStatus: (_call: unknown, cb: (e: null, r: unknown) => void) => cb(null, {}),
    });
  }

  static async start(opts: FakeOptions = {}): Promise<FakeCluster> {
    const f = new FakeCluster(opts);
    const port = await bindServer(f.server, '127.0.0.1', 0, 'fake scheduler');
    f.address = `tcp://127.0.0.1:${port}`;
    return f;
  }

  get updates(): UpdateGraph[] {
    return this.received.flatMap((m) => (m.kind?.$case === 'updateGraph' ? [m.kind.value] : []));
  }

  keysOf(kind: 'releaseKeys' | 'cancelKeys' | 'wantKeys'): string[] {
    return this.received.flatMap((m) => (m.kind?.$case === kind ? m.kind.value.keys : []));
  }

  /** Sends an update to every client session (to play scheduler-side events). */
  push(update: ClientUpdate): void {
    for (const s of this.sessions) s.out.push(update);
  }

  /** Ends every client session abruptly, as a crashing scheduler would. */
  dropSessions(): void {
    for (const s of this.sessions) s.call.emit('error', { code: GrpcStatus.UNAVAILABLE, details: 'scheduler going away' });
    this.sessions.clear();
  }

  async close(): Promise<void> {
    this.server.forceShutdown();
    await shutdownServer(this.server, 100);
  }

  // A protobuf map field: a Map (see @skein/protocol's README).
  private countStates(): Map<string, number> {
    const c = new Map<string, number>();
    for (const t of this.tasks.values()) c.set(t.state, (c.get(t.state) ?? 0) + 1);
    return c;
  }

  private transition(key: string, start: string, finish: string): void {
    this.story.push({ key, start, finish });
  }

  private session(call: ServerDuplexStream<ClientSessionRequest, ClientSessionResponse>): void {
    let session: Session | undefined;
    call.on('data', (req: ClientSessionRequest) => {
      this.requests.push(req);
      for (const m of req.messages) {
        this.received.push(m);
        const k = m.kind;
        if (!k) continue;
        if (k.$case === 'hello') {
          const mine = this.opts.protocolVersion;
          if (k.value.protocolVersion.split('.')[0] !== mine.split('.')[0]) {
            call.emit('error', {
              code: GrpcStatus.FAILED_PRECONDITION,
              details: `Protocol version mismatch: this scheduler speaks skein protocol ${mine} but the client speaks ${k.value.protocolVersion}.`,
            });
            return;
          }
          session = {
            clientId: k.value.clientId,
            wants: new Set(),
            call,
            out: new Batcher<ClientUpdate>((updates) => call.write({ updates })),
          };
          this.sessions.add(session);
          session.out.push({
            kind: {
              $case: 'welcome',
              value: { protocolVersion: mine, schedulerId: 'fake-scheduler', schedulerAddress: this.address, heartbeatIntervalMs: 0, batches: false, maxMessageBytes: 0, maxKeysPerUpdate: 0 },
            },
          });
          continue;
        }
        if (!session) {
          call.emit('error', { code: GrpcStatus.FAILED_PRECONDITION, details: 'first message must be a ClientHello' });
          return;
        }
        switch (k.$case) {
          case 'updateGraph':
            this.updateGraph(session, k.value);
            break;
          case 'releaseKeys':
            for (const key of k.value.keys) session.wants.delete(key);
            break;
          case 'cancelKeys':
            for (const key of k.value.keys) {
              session.wants.delete(key);
              const t = this.tasks.get(key);
              if (t && t.state !== 'memory' && t.state !== 'erred') {
                this.transition(key, t.state, 'cancelled');
                t.state = 'cancelled';
              }
            }
            break;
          case 'wantKeys':
            for (const key of k.value.keys) this.want(session, key);
            break;
        }
      }
    });
    call.on('end', () => {
      if (session) this.sessions.delete(session);
      call.end();
    });
    call.on('error', () => {
      if (session) this.sessions.delete(session);
    });
  }

  private updateGraph(session: Session, u: UpdateGraph): void {
    for (const f of u.functions) {
      if (f.source && !this.functions.has(f.hash)) this.functions.set(f.hash, compileFunction(f.source));
    }
    for (const spec of u.tasks) {
      if (this.tasks.has(spec.key)) continue;
      this.tasks.set(spec.key, { spec, state: 'waiting', runs: 0 });
      this.transition(spec.key, 'released', 'waiting');
    }
    for (const key of u.wantedKeys) this.want(session, key);
    this.schedule();
  }

  private want(session: Session, key: string): void {
    session.wants.add(key);
    const t = this.tasks.get(key);
    if (t && (t.state === 'memory' || t.state === 'erred')) this.report(key, t, [session]);
  }

  private schedule(): void {
    for (const [key, t] of this.tasks) {
      if (t.state !== 'waiting') continue;
      const deps = t.spec.dependencies.map((d) => this.tasks.get(d));
      const failed = deps.find((d) => d?.state === 'erred');
      if (failed) {
        t.state = 'erred';
        t.error = failed.error;
        this.report(key, t);
        continue;
      }
      if (deps.every((d) => d?.state === 'memory')) {
        t.state = 'running';
        this.transition(key, 'waiting', 'processing');
        setImmediate(() => void this.run(key, t));
      }
    }
  }

  private async run(key: string, t: FakeTask): Promise<void> {
    t.runs++;
    try {
      const ref = t.spec.function?.kind;
      const fn =
        ref?.$case === 'inlineHash'
          ? this.functions.get(ref.value)
          : ref?.$case === 'registered'
            ? (this.opts.registered?.[ref.value] as Function | undefined)
            : undefined;
      if (!fn) throw new Error(`fake scheduler: unknown function ${JSON.stringify(ref)}`);
      const template = decodeValue(t.spec.args) as unknown[];
      const args = substituteRefs(template, (k) => decodeValue(this.tasks.get(k)!.value)) as unknown[];
      const result: unknown = await fn(...args);
      if ((t.state as TaskState) === 'cancelled') return;
      const json = t.spec.args?.encoding === Encoding.ENCODING_JSON;
      let value: Value;
      try {
        value = encodeValue(result, json ? 'json' : 'v8');
      } catch {
        value = encodeValue(result);
      }
      t.value = value;
      t.state = 'memory';
      this.data.set(key, value);
      this.transition(key, 'processing', 'memory');
      this.report(key, t, undefined, typeName(result));
    } catch (err) {
      if ((t.state as TaskState) === 'cancelled') return;
      if (t.runs <= t.spec.retries) {
        setImmediate(() => void this.run(key, t));
        return;
      }
      t.state = 'erred';
      t.error = toRemoteError(err, key);
      this.transition(key, 'processing', 'erred');
      this.report(key, t);
    }
    this.schedule();
  }

  private report(key: string, t: FakeTask, to?: Session[], type = ''): void {
    for (const s of to ?? this.sessions) {
      if (!s.wants.has(key)) continue;
      if (t.state === 'memory') {
        const small = t.value!.data.length <= this.opts.inlineBytes;
        s.out.push({
          kind: {
            $case: 'inMemory',
            value: {
              key,
              value: small ? t.value : undefined,
              workers: small ? [this.address] : (this.opts.holders?.() ?? [this.address]),
              nbytes: t.value!.data.length,
              typeName: type,
            },
          },
        });
      } else if (t.state === 'erred') {
        s.out.push({ kind: { $case: 'erred', value: { key, error: t.error } } });
      }
    }
  }

  private getData(call: ServerWritableStream<GetDataRequest, GetDataResponse>): void {
    this.getDataCalls++;
    const chunk = this.opts.chunkBytes;
    for (const key of call.request.keys) {
      const v = this.data.get(key);
      if (!v) {
        call.write({ key, encoding: Encoding.ENCODING_UNSPECIFIED, totalSize: 0, data: Buffer.alloc(0), missing: true, bulkPort: 0, bulkToken: '', bulkKey: Buffer.alloc(0) });
        continue;
      }
      const buf = Buffer.from(v.data);
      let off = 0;
      do {
        const part = buf.subarray(off, off + chunk);
        call.write({
          key,
          encoding: off === 0 ? v.encoding : Encoding.ENCODING_UNSPECIFIED,
          totalSize: off === 0 ? buf.length : 0,
          data: part,
          missing: false,
          bulkPort: 0,
          bulkToken: '',
          bulkKey: Buffer.alloc(0),
        });
        off += part.length;
      } while (off < buf.length);
    }
    call.end();
  }
}

import { afterEach, describe, expect, it } from 'vitest';
import { Metadata, status as GrpcStatus, type ClientDuplexStream, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { Client, KilledWorkerError, TaskError, delayed } from '@skein/client';
import {
  Encoding,
  NannyServiceClient,
  SchedulerServiceClient,
  WorkerServiceClient,
  type WorkerCommand,
  type WorkerSessionRequest,
  type WorkerSessionResponse,
} from '@skein/protocol';
import { CHANNEL_OPTIONS, PROTOCOL_VERSION, Security, grpcTarget, insecureChannel, type Logger, type Role } from '@skein/common';
import { Scheduler } from '@skein/core-scheduler';
import { Worker } from '@skein/core-worker';
import { Nanny } from '@skein/nanny';
import { LocalCluster } from '../src/index.js';
import { until } from './helpers.js';

// Issue 14, as an attacker on the same network would probe it: a process that is not part of the
// cluster opens its own sessions and calls. Each test shows the attack doing no harm.

const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const slowInc = async (n: number) => {
  await new Promise((r) => setTimeout(r, 1_500));
  return n + 1;
};

type Raw = Awaited<ReturnType<typeof rawWorker>>;

/**
 * A worker session opened by hand, registered as `address`: resolves once the scheduler welcomed
 * it, or with the error it refused it with. `commands` collects what the scheduler sends it.
 */
async function rawWorker(schedulerAddress: string, address: string, as?: { security: Security; role: Role }) {
  const dial = as?.security.dial(schedulerAddress, as.role, 'scheduler');
  const rpc = dial
    ? new SchedulerServiceClient(dial.target, dial.credentials, dial.options)
    : new SchedulerServiceClient(grpcTarget(schedulerAddress), insecureChannel(), CHANNEL_OPTIONS);
  const session: ClientDuplexStream<WorkerSessionRequest, WorkerSessionResponse> = rpc.workerSession();
  const commands: WorkerCommand[] = [];
  const listeners: Array<() => void> = [];
  let failure: ServiceError | null = null;
  const ended = new Promise<ServiceError | null>((resolve) => {
    session.on('error', (err: ServiceError) => resolve((failure = err)));
    session.on('end', () => resolve(null));
  });
  session.on('data', (res: WorkerSessionResponse) => {
    commands.push(...res.commands);
    for (const l of listeners.splice(0)) l();
  });
  const close = () => {
    session.cancel();
    rpc.close();
  };
  closers.push(close);
  const raw = {
    rpc,
    session,
    commands,
    ended,
    close,
    get failure() {
      return failure;
    },
    send(messages: WorkerSessionRequest['messages']) {
      session.write({ messages });
    },
    /** The first command (so far or to come) that `pred` accepts. */
    async command(pred: (c: WorkerCommand) => boolean, what: string): Promise<WorkerCommand> {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const found = commands.find(pred);
        if (found) return found;
        if (failure || Date.now() > deadline) throw new Error(`no ${what} came (${failure?.details ?? 'timed out'})`);
        await Promise.race([new Promise<void>((r) => listeners.push(r)), ended, new Promise((r) => setTimeout(r, 100))]);
      }
    },
  };
  raw.send([
    {
      kind: {
        $case: 'hello',
        value: {
          protocolVersion: PROTOCOL_VERSION,
          address,
          name: 'by-hand',
          nthreads: 1,
          memoryLimit: 0,
          resources: new Map(),
          held: [],
          registeredFunctions: [],
          pid: process.pid,
          nannyAddress: '',
          batches: false,
          versions: undefined,
        },
      },
    },
  ]);
  const welcomed = await Promise.race([raw.command((c) => c.kind?.$case === 'welcome', 'Welcome').then(() => true), ended.then(() => false)]);
  return { ...raw, welcomed };
}

const finished = (key: string, n: number): WorkerSessionRequest['messages'][number] => ({
  kind: {
    $case: 'taskFinished',
    value: { key, value: { encoding: Encoding.ENCODING_JSON, data: Buffer.from(String(n)) }, nbytes: 3, typeName: 'number', startMs: 0, stopMs: 1, stimulusId: '' },
  },
});

const freesKey = (key: string) => (c: WorkerCommand) => c.kind?.$case === 'freeKeys' && c.kind.value.keys.includes(key);

function reportDeath(schedulerAddress: string, workerAddress: string, reason: string): Promise<void> {
  const rpc = new SchedulerServiceClient(grpcTarget(schedulerAddress), insecureChannel(), CHANNEL_OPTIONS);
  return new Promise<void>((resolve, reject) =>
    rpc.reportWorkerDeath({ workerAddress, reason, expected: false }, new Metadata(), { deadline: Date.now() + 5_000 }, (err) => {
      rpc.close();
      if (err) reject(err);
      else resolve();
    }),
  );
}

async function cluster(options: Parameters<typeof LocalCluster.start>[0] = {}) {
  const c = await LocalCluster.start({ nWorkers: 1, threadsPerWorker: 1, memoryLimit: '1GB', nanny: false, ...options });
  const client = await Client.connect(c);
  closers.push(() => c.close());
  closers.push(() => client.close());
  return { cluster: c, client };
}

describe('a worker reports only on the tasks it was given', () => {
  it("a bogus worker's forged result for a task it was never given reaches no client and names no holder", async () => {
    const { cluster: c, client } = await cluster();
    const f = client.submit(slowInc, 100);
    await until(async () => (await client.story(f)).some((t) => t.finish === 'processing'), 10_000, 'inc(100) to run');
    // A worker that does not exist (nothing listens on port 9) registers and claims the result.
    const bogus = await rawWorker(c.scheduler.address, 'tcp://127.0.0.1:9');
    expect(bogus.welcomed).toBe(true);
    bogus.send([finished(f.key, 666)]);
    expect(await f.result()).toBe(101); // it used to be 666
    // The scheduler answered the refused report by telling the bogus worker to drop the key.
    await bogus.command(freesKey(f.key), `FreeKeys for ${f.key}`);
    expect(c.scheduler.state.whoHas([f.key])[0]!.workers).not.toContain('tcp://127.0.0.1:9');
    // Once the result is in memory, a claim to hold a copy makes it no holder either.
    bogus.send([finished(f.key, 666), { kind: { $case: 'addKeys', value: { keys: [{ key: f.key, workers: ['tcp://127.0.0.1:9'], nbytes: 3 }], stimulusId: '' } } }]);
    await until(() => bogus.commands.filter(freesKey(f.key)).length >= 3, 10_000, 'both claims to be refused');
    const [real] = (await client.schedulerInfo()).workers.filter((w) => w.address !== 'tcp://127.0.0.1:9');
    expect(c.scheduler.state.whoHas([f.key])[0]!.workers).toEqual([real!.address]);
    const g = client.submit((n: number) => n * 2, f);
    expect(await g.result()).toBe(202);
  });
});

describe('registration', () => {
  it("a WorkerHello with a live worker's address is refused with ALREADY_EXISTS; the worker stays and computes", async () => {
    const { client } = await cluster();
    const [real] = (await client.schedulerInfo()).workers;
    const impostor = await rawWorker(client.schedulerAddress, real!.address);
    expect(impostor.welcomed).toBe(false);
    expect(impostor.failure?.code).toBe(GrpcStatus.ALREADY_EXISTS);
    expect(impostor.failure?.details).toMatch(/already registered and connected; a second registration under a live worker's address is refused/);
    const after = (await client.schedulerInfo()).workers;
    expect(after.map((w) => [w.address, w.pid])).toEqual([[real!.address, real!.pid]]);
    expect(await client.submit((n: number) => n + 1, 1).result()).toBe(2);
  });
});

describe('ReportWorkerDeath', () => {
  it('for a live worker (from anyone) does not remove it: it stays registered, keeps its data and computes', async () => {
    const { cluster: c, client } = await cluster({ nanny: true });
    const x = client.submitWith({ pure: false }, () => 'x'.repeat(100_000)); // held by the worker, not inline
    await x.result();
    const [before] = (await client.schedulerInfo()).workers;
    await reportDeath(client.schedulerAddress, before!.address, 'reported by a stranger');
    // A Compute after the report travels the same session: once it ran, the report was handled.
    expect(await client.submit((s: string) => s.length, x).result()).toBe(100_000);
    const [after] = (await client.schedulerInfo()).workers;
    expect(after).toMatchObject({ address: before!.address, pid: before!.pid });
    expect(c.scheduler.state.whoHas([x.key])[0]!.workers).toEqual([before!.address]);
  });

  it("names the cause when the worker's session ends soon after (a nanny that kills its worker says why first)", async () => {
    const scheduler = await Scheduler.start({ host: '127.0.0.1', port: 0, dashboardAddress: null, allowedFailures: 0 });
    closers.push(() => scheduler.close());
    const client = await Client.connect(scheduler.address);
    closers.push(() => client.close());
    const w = await rawWorker(scheduler.address, 'tcp://127.0.0.1:9');
    const f = client.submit((n: number) => n + 1, 1);
    await w.command((c) => c.kind?.$case === 'compute', 'the Compute');
    await reportDeath(scheduler.address, 'tcp://127.0.0.1:9', 'it used 2 GB, over its memory limit: killed by its nanny');
    expect(scheduler.state.workers.has('tcp://127.0.0.1:9')).toBe(true);
    w.close();
    const err = await f.result(10_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KilledWorkerError);
    expect((err as Error).message).toMatch(/over its memory limit: killed by its nanny/);
  });
});

describe('listening beyond loopback', () => {
  const capture = () => {
    const warnings: string[] = [];
    const logger: Logger = { debug: () => {}, info: () => {}, warn: (m) => warnings.push(m), error: () => {} };
    return { warnings, logger };
  };

  it('with neither TLS nor a token: the scheduler warns loudly at start; on loopback it does not', async () => {
    const open = capture();
    const exposed = await Scheduler.start({ host: '0.0.0.0', port: 0, dashboardAddress: null, logger: open.logger });
    closers.push(() => exposed.close());
    expect(open.warnings.join('\n')).toMatch(/SECURITY WARNING: the scheduler listens on 0\.0\.0\.0, which other machines can reach, with neither TLS nor an authentication token/);
    const local = capture();
    const loopback = await Scheduler.start({ host: '127.0.0.1', port: 0, dashboardAddress: null, logger: local.logger });
    closers.push(() => loopback.close());
    expect(local.warnings.filter((m) => /SECURITY/.test(m))).toEqual([]);
  });
});

describe('tenancy: what one client can do to another’s keys', () => {
  const inc = (n: number) => n + 1;

  it("a client that submits another client's pure key first, with its own function, does not make that client's inc(100) 666", async () => {
    const { cluster: c, client: alice } = await cluster();
    const mallory = await Client.connect(c);
    closers.push(() => mallory.close());
    const key = delayed(inc)(100).key; // the key alice's submit(inc, 100) will have
    const squat = mallory.submitWith({ key }, () => 666);
    expect(await squat.result()).toBe(666);
    const f = alice.submit(inc, 100);
    expect(f.key).toBe(key);
    const err = await f.result(10_000).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TaskError); // it used to be 666
    expect((err as Error).message).toMatch(/another client defined, and its key is not the pure key of its definition/);
    // Under its own key (or pure: false) alice computes; mallory's future is untouched.
    expect(await alice.submitWith({ pure: false }, inc, 100).result()).toBe(101);
    expect(await squat.result()).toBe(666);
  });

  it("one client's release or cancel of a shared pure key frees nothing another client wants", async () => {
    const { cluster: c, client: alice } = await cluster();
    const bob = await Client.connect(c);
    closers.push(() => bob.close());
    const a = alice.submit(slowInc, 1);
    const b = bob.submit(slowInc, 1); // the same pure key, the same definition: shared
    expect(b.key).toBe(a.key);
    await a.cancel();
    expect(await b.result(10_000)).toBe(2);
    const a2 = alice.submit(inc, 5);
    const b2 = bob.submit(inc, 5);
    expect(await a2.result()).toBe(6);
    a2.release();
    await alice.close();
    expect(await b2.result()).toBe(6);
    expect(c.scheduler.state.tasks.get(b2.key)?.state).toBe('memory');
  });
});

// ------------------------------------------------------------------ Part 2: roles per RPC

const TOKEN = 'authz-test-token-0123456789abcdef';

/** A secured scheduler and one worker in this process, and a client with the cluster's credentials. */
async function securedCluster(security: Security) {
  const scheduler = await Scheduler.start({ host: '127.0.0.1', port: 0, dashboardAddress: null, security });
  closers.push(() => scheduler.close());
  const worker = await Worker.start({ scheduler: scheduler.address, name: 'w', nthreads: 1, security });
  closers.push(() => worker.close());
  const client = await Client.connect(scheduler.address, { security });
  closers.push(() => client.close());
  return { scheduler, worker, client };
}

/** A unary call on a stub dialed with `security` as `role`: resolves with the response or the gRPC error. */
function unary<Req, Res>(
  stub: { close(): void } & Record<string, unknown>,
  method: string,
  request: Req,
): Promise<{ err: ServiceError | null; res?: Res }> {
  closers.push(() => stub.close());
  const fn = stub[method] as (req: Req, md: Metadata, opts: { deadline: number }, cb: (err: ServiceError | null, res?: Res) => void) => void;
  return new Promise((resolve) => fn.call(stub, request, new Metadata(), { deadline: Date.now() + 5_000 }, (err, res) => resolve({ err, res })));
}

function schedulerStub(address: string, security: Security, role: Role) {
  const d = security.dial(address, role, 'scheduler');
  return new SchedulerServiceClient(d.target, d.credentials, d.options) as unknown as { close(): void } & Record<string, unknown>;
}
function workerStub(address: string, security: Security, role: Role) {
  const d = security.dial(address, role, 'worker');
  return new WorkerServiceClient(d.target, d.credentials, d.options) as unknown as { close(): void } & Record<string, unknown>;
}
function nannyStub(address: string, security: Security, role: Role) {
  const d = security.dial(address, role, 'nanny');
  return new NannyServiceClient(d.target, d.credentials, d.options) as unknown as { close(): void } & Record<string, unknown>;
}

const runRequest = { function: { hash: 'h-pid', source: '() => process.pid', name: 'pid' }, args: { encoding: Encoding.ENCODING_JSON, data: Buffer.from('[]') }, resultEncoding: Encoding.ENCODING_JSON };

describe('a cluster with a token (Security.fromToken)', () => {
  it('a client with a wrong or missing token is refused, saying what to pass; with it, it computes', async () => {
    const security = Security.fromToken(TOKEN);
    const { scheduler, client } = await securedCluster(security);
    expect(await client.submit((n: number) => n + 1, 1).result()).toBe(2);
    const wrong = await Client.connect(scheduler.address, { security: Security.fromToken('not-the-token-0123456789'), connectTimeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(wrong).toBeInstanceOf(Error);
    expect((wrong as Error).message).toMatch(/SchedulerService\.ClientSession was refused: the auth token presented is not this cluster's/);
    const none = await Client.connect(scheduler.address, { security: Security.insecure(), connectTimeoutMs: 5_000 }).catch((e: unknown) => e);
    expect((none as Error).message).toMatch(/requires an auth token and none was presented\. Give the client --auth-token-file FILE or SKEIN_AUTH_TOKEN/);
  });

  it('RetireWorkers, RestartWorkers, ReportWorkerDeath and a WorkerSession from an unknown peer are refused (UNAUTHENTICATED) and change nothing', async () => {
    const security = Security.fromToken(TOKEN);
    const { scheduler, worker, client } = await securedCluster(security);
    const stranger = Security.insecure();
    const calls: Array<[string, unknown]> = [
      ['retireWorkers', { workers: [], n: 1_000 }],
      ['restartWorkers', { timeoutMs: 1_000 }],
      ['reportWorkerDeath', { workerAddress: worker.address, reason: 'forged' }],
    ];
    for (const [method, req] of calls) {
      const { err } = await unary(schedulerStub(scheduler.address, stranger, 'client'), method, req);
      expect(err?.code, method).toBe(GrpcStatus.UNAUTHENTICATED);
      expect(err?.details).toMatch(/requires an auth token and none was presented/);
    }
    const impostor = await rawWorker(scheduler.address, 'tcp://127.0.0.1:9');
    expect(impostor.welcomed).toBe(false);
    expect(impostor.failure?.code).toBe(GrpcStatus.UNAUTHENTICATED);
    expect((await client.schedulerInfo()).workers.map((w) => w.address)).toEqual([worker.address]);
    expect(await client.submit((n: number) => n * 2, 21).result()).toBe(42);
  });

  it('Run on a worker from an unknown peer is refused: no code runs', async () => {
    const security = Security.fromToken(TOKEN);
    const { worker } = await securedCluster(security);
    const { err, res } = await unary(workerStub(worker.address, Security.insecure(), 'client'), 'run', runRequest);
    expect(res).toBeUndefined();
    expect(err?.code).toBe(GrpcStatus.UNAUTHENTICATED);
    expect(err?.details).toMatch(/WorkerService\.Run was refused/);
  });
});

describe('a cluster with certificates per role (Security.temporary())', () => {
  it("each admin RPC needs its role: a worker's or nanny's certificate cannot retire, restart, run or report deaths; a client's can retire", async () => {
    const security = Security.temporary();
    const { scheduler, worker, client } = await securedCluster(security);
    const denied = async (stub: ReturnType<typeof schedulerStub>, method: string, req: unknown, role: string) => {
      const { err } = await unary(stub, method, req);
      expect(err?.code, method).toBe(GrpcStatus.PERMISSION_DENIED);
      expect(err?.details).toMatch(new RegExp(`needs the ${role} role`));
    };
    await denied(schedulerStub(scheduler.address, security, 'worker'), 'restartWorkers', { timeoutMs: 1_000 }, 'client');
    await denied(schedulerStub(scheduler.address, security, 'nanny'), 'retireWorkers', { workers: [], n: 1_000 }, 'client or worker');
    await denied(schedulerStub(scheduler.address, security, 'worker'), 'retireWorkers', { workers: [], n: 1_000 }, 'client');
    await denied(schedulerStub(scheduler.address, security, 'client'), 'reportWorkerDeath', { workerAddress: worker.address, reason: 'forged' }, 'nanny');
    await denied(workerStub(worker.address, security, 'worker'), 'run', runRequest, 'client');
    const stub = workerStub(worker.address, security, 'nanny');
    closers.push(() => stub.close());
    const getData = (stub.getData as (req: unknown, md: Metadata) => ClientReadableStream<unknown>).call(stub, { keys: ['x'], acceptBulk: false }, new Metadata());
    const streamErr = await new Promise<ServiceError | null>((resolve) => {
      getData.on('error', resolve);
      getData.on('end', () => resolve(null));
      getData.on('data', () => {});
    });
    expect(streamErr?.code).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(streamErr?.details).toMatch(/WorkerService\.GetData needs the worker or client role/);
    // A worker session under a client's certificate.
    const impostor = await rawWorker(scheduler.address, 'tls://127.0.0.1:9', { security, role: 'client' });
    expect(impostor.welcomed).toBe(false);
    expect(impostor.failure?.code).toBe(GrpcStatus.PERMISSION_DENIED);
    expect(impostor.failure?.details).toMatch(/SchedulerService\.WorkerSession needs the worker role/);
    expect((await client.schedulerInfo()).workers.map((w) => w.address)).toEqual([worker.address]);
    // A worker may retire itself (one worker named, n = 0): allowed, here naming none that exists.
    const self = await unary<unknown, { retired: string[] }>(schedulerStub(scheduler.address, security, 'worker'), 'retireWorkers', { workers: ['tls://127.0.0.1:9'], n: 0 });
    expect(self.err).toBeNull();
    expect(self.res!.retired).toEqual([]);
    // The client may (Dask's client may retire workers).
    const { err, res } = await unary<unknown, { retired: string[] }>(schedulerStub(scheduler.address, security, 'client'), 'retireWorkers', { workers: [worker.address], n: 0 });
    expect(err).toBeNull();
    expect(res!.retired).toEqual([worker.address]);
  });

  it('a nanny takes Kill and Restart only from the scheduler role', async () => {
    const security = Security.temporary();
    const scheduler = await Scheduler.start({ host: '127.0.0.1', port: 0, dashboardAddress: null, security });
    closers.push(() => scheduler.close());
    const nanny = await Nanny.start({ scheduler: scheduler.address, host: '127.0.0.1', port: 0, memoryLimit: 0, security });
    closers.push(() => nanny.close());
    const pid = nanny.workerPid;
    for (const role of ['client', 'worker', 'nanny'] as const) {
      for (const method of ['kill', 'restart']) {
        const { err } = await unary(nannyStub(nanny.address, security, role), method, { reason: `forged by a ${role}`, timeoutMs: 1_000 });
        expect(err?.code, `${method} as ${role}`).toBe(GrpcStatus.PERMISSION_DENIED);
        expect(err?.details).toMatch(new RegExp(`NannyService\\.${method[0]!.toUpperCase()}${method.slice(1)} needs the scheduler role`));
      }
    }
    expect(nanny.workerPid).toBe(pid);
    expect(nanny.status).toBe('running');
    const { err } = await unary<unknown, { workerAddress: string }>(nannyStub(nanny.address, security, 'scheduler'), 'restart', { reason: 'by the scheduler', timeoutMs: 20_000 });
    expect(err).toBeNull();
    expect(nanny.workerPid).not.toBe(pid);
  });
});

#!/usr/bin/env node
// How Skein's cost grows with the work (issue 18, "Tasks") and with the cluster ("Workers").
//
//   node --expose-gc bench/scale.mjs [--part tasks|workers] [--short] [--sizes 10000,100000]
//        [--workers 10,100,1000] [--repeat N] [--idle-ms MS] [--skein-root DIR] [--system NAME]
//
// Every figure is one JSON line on stdout, as bench/run.mjs reads them
// ({"system":"skein","workload":"scale-tasks-map","params":{"n":100000},"value":...,"unit":"tasks/s"});
// `node bench/run.mjs --only scale-tasks,scale-workers` runs both parts through this file.
//
// tasks: a LocalCluster of 2 worker processes x 1 thread (as bench_skein.mjs), after a warm-up map:
//   scale-tasks-map       client.map of n no-ops, from the call to the last value gathered: tasks/s
//   scale-tasks-tree      a fan-in tree of ~n tasks (leaves by one map, then sums of 10 inputs
//                         each, level by level, to one root): tasks/s
//   scale-tasks-memory    n tasks waiting on one slow root, submitted by a separate client process
//                         (fresh processes per size): the scheduler process's RSS after GC per
//                         waiting task, with the V8 heap per task beside it (`heap_per_task`)
//   scale-tasks-client-memory  that client process's own heap per future it holds (`rss_per_future` beside)
// workers: one scheduler in a process of its own, W stub workers (see stubHost: the worker's wire
//   protocol, tasks run inline, up to 250 per process), the client in this process:
//   scale-workers-idle-cpu  the scheduler process's CPU over --idle-ms with every worker connected
//                           and idle (heartbeats only): % of one core
//   scale-workers-map       client.map of n no-ops over the W workers: tasks/s
//
// --skein-root DIR loads the built packages of another checkout (e.g. /work/main) for A/B runs;
// --system names its records (default "skein").
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

process.env.SKEIN_LOG_LEVEL ??= 'warn';
const here = path.dirname(fileURLToPath(import.meta.url));
const log = (...a) => console.error('[scale]', ...a);
const round = (x, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);

// ---- task functions (inline functions travel as source: they capture nothing) ----
const noop = (x) => x;
const sum = (...xs) => xs.reduce((a, b) => a + b, 0);
const slowRoot = (ms) => new Promise((resolve) => setTimeout(() => resolve(0), ms));
const dep = (i, root) => i;

/** The packages of a checkout (default: the one this bench belongs to). */
async function loadPackages(root) {
  const skeinPkg = root ? path.join(root, 'packages', 'skein', 'package.json') : createRequire(import.meta.url).resolve('skein/package.json');
  const req = createRequire(skeinPkg);
  const load = async (name) => import(pathToFileURL(req.resolve(name)).href);
  const [skein, common, protocol, scheduler] = await Promise.all([
    import(pathToFileURL(path.join(path.dirname(skeinPkg), 'dist', 'index.js')).href),
    load('@skein/common'),
    load('@skein/protocol'),
    load('@skein/core-scheduler'),
  ]);
  return { skein, common, protocol, scheduler };
}

function gcNow() {
  if (typeof globalThis.gc === 'function') {
    globalThis.gc();
    globalThis.gc();
  }
}

async function waitWorkers(client, n, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await client.schedulerInfo();
    if (info.workers.length >= n) return info;
    if (Date.now() > deadline) throw new Error(`only ${info.workers.length} of ${n} workers registered`);
    await sleep(50);
  }
}

/** Lines of a child's stdout, one by one. */
function lineReader(stream) {
  const it = createInterface({ input: stream })[Symbol.asyncIterator]();
  return async (what) => {
    const { value, done } = await it.next();
    if (done) throw new Error(`child ended before ${what}`);
    return value;
  };
}

// ------------------------------------------------------------------ tasks

/** Builds a fan-in tree of about n tasks (fan-in 10) and returns [root future, task count, expected sum]. */
function fanInTree(client, n, off) {
  const leaves = Math.max(10, Math.round(n * 0.9));
  let level = client.map(noop, range(off, off + leaves));
  let count = leaves;
  while (level.length > 1) {
    const next = [];
    for (let j = 0; j < level.length; j += 10) next.push(client.submit(sum, ...level.slice(j, j + 10)));
    count += next.length;
    level = next;
  }
  return [level[0], count, (leaves * (leaves - 1)) / 2 + off * leaves];
}

async function tasksThroughput(pk, args, emit) {
  const cluster = await pk.skein.LocalCluster.start({ nWorkers: 2, threadsPerWorker: 1 });
  const client = await pk.skein.Client.connect(cluster);
  try {
    await waitWorkers(client, 2);
    let off = 0;
    // Warm-up (not recorded): the first seconds of a process run slower (JIT), the sizes compare warm.
    const warm = client.map(noop, range(-20_000, 0));
    await client.gather(warm);
    client.release(warm);
    for (const n of args.sizes) {
      for (let r = 0; r < args.repeat; r++) {
        const xs = range(off, off + n);
        off += n;
        const t0 = performance.now();
        const futs = client.map(noop, xs);
        const vals = await client.gather(futs);
        const dt = (performance.now() - t0) / 1000;
        if (vals.length !== n || vals[0] !== xs[0] || vals[n - 1] !== xs[n - 1]) throw new Error('scale map: wrong results');
        emit('scale-tasks-map', { n }, round(n / dt), 'tasks/s', { seconds: round(dt, 3) });
        client.release(futs);
        await sleep(500);
        const t1 = performance.now();
        const [root, count, expect] = fanInTree(client, n, off);
        off += n;
        const total = await root.result();
        const dt1 = (performance.now() - t1) / 1000;
        if (total !== expect) throw new Error(`scale tree: got ${total}, expected ${expect}`);
        emit('scale-tasks-tree', { n, tasks: count }, round(count / dt1), 'tasks/s', { seconds: round(dt1, 3) });
        client.release([root]);
        await sleep(500);
      }
    }
  } finally {
    await client.close().catch(() => undefined);
    await cluster.close().catch(() => undefined);
  }
}

function schedulerTaskCount(cluster) {
  let total = 0;
  for (const v of cluster.scheduler.info().tasksByState.values()) total += Number(v);
  return total;
}

/** One memory measurement at size n, in this (fresh) process: the scheduler here, the client in a child. */
async function memoryRun(pk, n, args, emit) {
  const cluster = await pk.skein.LocalCluster.start({ nWorkers: 2, threadsPerWorker: 1 });
  const child = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--mem-client', cluster.schedulerAddress, String(n), ...rootArgs(args)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    const next = lineReader(child.stdout);
    if ((await next('CONNECTED')) !== 'CONNECTED') throw new Error('memory client did not connect');
    await sleep(500);
    const base = schedulerTaskCount(cluster);
    gcNow();
    const m0 = process.memoryUsage();
    child.stdin.write('GO\n');
    const submitted = JSON.parse(await next('SUBMITTED'));
    const deadline = Date.now() + 600_000;
    while (schedulerTaskCount(cluster) < base + n + 1) {
      if (Date.now() > deadline) throw new Error('scale memory: the scheduler never saw all tasks');
      await sleep(200);
    }
    await sleep(1000);
    gcNow();
    const m1 = process.memoryUsage();
    emit('scale-tasks-memory', { n }, round((m1.rss - m0.rss) / n), 'bytes/task', { heap_per_task: round((m1.heapUsed - m0.heapUsed) / n) });
    emit('scale-tasks-client-memory', { n }, submitted.heapPerFuture, 'bytes/future', { rss_per_future: submitted.rssPerFuture });
    child.stdin.end('DONE\n');
    await exited;
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await cluster.close().catch(() => undefined);
  }
}

async function memClient(pk, address, n) {
  const client = await pk.skein.Client.connect(address);
  // warm-up: the same graph shape, small, run to completion and released
  const warmRoot = client.submitWith({ pure: false }, slowRoot, 0);
  const warm = client.map(dep, range(0, 100), Array(100).fill(warmRoot));
  await client.gather(warm);
  client.release([...warm, warmRoot]);
  await sleep(500);
  const next = lineReader(process.stdin);
  process.stdout.write('CONNECTED\n');
  if ((await next('GO')).trim() !== 'GO') throw new Error('expected GO');
  const rootArg = Array(n).fill(null);
  const xs = range(0, n);
  gcNow();
  const m0 = process.memoryUsage();
  const root = client.submitWith({ pure: false }, slowRoot, 600_000);
  rootArg.fill(root);
  const futs = client.map(dep, xs, rootArg);
  rootArg.length = 0;
  await sleep(200);
  gcNow();
  const m1 = process.memoryUsage();
  process.stdout.write(`${JSON.stringify({ heapPerFuture: round((m1.heapUsed - m0.heapUsed) / n), rssPerFuture: round((m1.rss - m0.rss) / n) })}\n`);
  await next('DONE').catch(() => undefined);
  await client.cancel([...futs, root]).catch(() => undefined);
  await client.close();
}

async function runTasks(pk, args, emit) {
  await tasksThroughput(pk, args, emit);
  // Memory: a fresh process per size, so that one size's heap does not carry the last one's pages.
  for (const n of args.sizes) {
    for (let r = 0; r < args.repeat; r++) {
      await childRecords(['--mem-run', String(n), ...rootArgs(args)], emit);
    }
  }
}

// ------------------------------------------------------------------ workers

/** The scheduler host: prints its address, then answers `CPU <ms>` with its CPU use over that long. */
async function schedHost(pk) {
  const s = await pk.scheduler.Scheduler.start({ host: '127.0.0.1', port: 0, dashboardAddress: null });
  process.stdout.write(`${s.address}\n`);
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, arg] = line.trim().split(' ');
    if (cmd === 'CPU') {
      const ms = Number(arg);
      // SKEIN_SCALE_PROFILE=file.cpuprofile: a CPU profile of this window (node:inspector).
      const prof = process.env.SKEIN_SCALE_PROFILE ? await startProfile() : null;
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await sleep(ms);
      const c = process.cpuUsage(c0);
      const wall = performance.now() - t0;
      if (prof) await prof.stop(process.env.SKEIN_SCALE_PROFILE);
      process.stdout.write(`${JSON.stringify({ user: c.user, system: c.system, percent: ((c.user + c.system) / 1000 / wall) * 100 })}\n`);
    } else if (cmd === 'EXIT') break;
  }
  await s.close();
  process.exit(0);
}

/** Starts the V8 CPU profiler in this process; `stop(file)` writes the profile. */
async function startProfile() {
  const { Session } = await import('node:inspector');
  const { writeFileSync } = await import('node:fs');
  const session = new Session();
  session.connect();
  const post = (method, params) => new Promise((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
  await post('Profiler.enable');
  await post('Profiler.start');
  return {
    async stop(file) {
      const { profile } = await post('Profiler.stop');
      writeFileSync(file, JSON.stringify(profile));
      session.disconnect();
    },
  };
}

/**
 * Stub workers: `count` WorkerSession streams, each on a connection of its own and registering as its own
 * worker (an address nothing listens on: values travel inline). They speak the worker's side of
 * the protocol (batches: true): heartbeats at the interval the Welcome gives, and every
 * ComputeBatch/ComputeTask answered at once with one TasksFinished, its function run here (for
 * inline functions, compiled once per hash). Steal requests are answered "memory" (a stub never
 * has a task it has not finished). A stub costs a stream and a timer, so a process holds hundreds.
 */
async function stubHost(pk, address, count, prefix) {
  const { common, protocol } = pk;
  // A connection per stub, as separate workers have (grpc-js would share one otherwise): every
  // heartbeat costs the scheduler a read of its own.
  const clients = [];
  const connect = () => {
    const c = new protocol.SchedulerServiceClient(common.grpcTarget(address), common.insecureChannel(), { ...common.CHANNEL_OPTIONS, 'grpc.use_local_subchannel_pool': 1 });
    clients.push(c);
    return c;
  };
  const fns = new Map();
  const beats = [];
  let done = 0;
  const run = (fnMsg, hash, args) => {
    let f = fns.get(hash);
    if (!f) {
      if (!fnMsg?.source) throw new Error(`stub: no source for function ${hash}`);
      f = common.compileFunction(fnMsg.source);
      fns.set(hash, f);
    }
    return common.encodeValue(f(...common.decodeValue(args)), 'json');
  };
  const streams = [];
  for (let i = 0; i < count; i++) {
    const call = connect().workerSession();
    streams.push(call);
    const finish = (keys, values, stimulusId) => {
      const now = Date.now();
      call.write({
        messages: [
          {
            kind: {
              $case: 'tasksFinished',
              value: {
                keys,
                values: common.buildValueColumn(values),
                nbytes: values.map((v) => v.data.length),
                typeNames: ['number'],
                typeNameIndex: keys.map(() => 0),
                startMs: keys.map(() => now),
                stopMs: keys.map(() => now),
                stimulusId,
              },
            },
          },
        ],
      });
    };
    call.on('data', (res) => {
      for (const cmd of res.commands) {
        const k = cmd.kind;
        if (!k) continue;
        if (k.$case === 'welcome') {
          // Every Welcome sets the interval (the scheduler sends one again when it changes it).
          const ms = k.value.heartbeatIntervalMs || 1000;
          clearTimeout(beats[i]);
          clearInterval(beats[i]);
          // Spread over the interval, as independent workers are.
          beats[i] = setTimeout(() => {
            const beat = () => call.write({ messages: [{ kind: { $case: 'heartbeat', value: { executing: 0, ready: 0, memoryRss: 50e6, managedBytes: 0, cpuPercent: 0, nowMs: Date.now(), spilledBytes: 0, paused: false } } }] });
            beat();
            beats[i] = setInterval(beat, ms);
          }, Math.random() * ms);
        } else if (k.$case === 'computeBatch') {
          const b = k.value;
          const t = b.tasks;
          const hash = t.function?.kind?.$case === 'inlineHash' ? t.function.kind.value : '';
          const args = common.readValueColumn(t.args, t.keys.length, 'stub');
          const values = args.map((a) => run(b.function, hash, a));
          finish(t.keys, values, `stub-${b.stimulusId}`);
          done += t.keys.length;
        } else if (k.$case === 'compute') {
          const c = k.value;
          const spec = c.spec;
          const hash = spec.function?.kind?.$case === 'inlineHash' ? spec.function.kind.value : '';
          if (spec.dependencies.length) throw new Error('stub workers run tasks without inputs only');
          finish([spec.key], [run(c.function, hash, spec.args)], `stub-${c.stimulusId}`);
          done++;
        } else if (k.$case === 'steal') {
          call.write({ messages: [{ kind: { $case: 'stealResponse', value: { key: k.value.key, state: 'memory', stimulusId: k.value.stimulusId } } }] });
        } else if (k.$case === 'close') {
          call.end();
        }
      }
    });
    call.on('error', () => undefined);
    call.write({
      messages: [
        {
          kind: {
            $case: 'hello',
            value: {
              protocolVersion: common.PROTOCOL_VERSION,
              address: `tcp://stub-${prefix}-${i}.invalid:1`,
              name: `stub-${prefix}-${i}`,
              nthreads: 1,
              memoryLimit: 0,
              resources: new Map(),
              held: [],
              registeredFunctions: [],
              pid: process.pid,
              nannyAddress: '',
              batches: true,
            },
          },
        },
      ],
    });
  }
  process.stdout.write('READY\n');
  for await (const line of createInterface({ input: process.stdin })) if (line.trim() === 'EXIT') break;
  for (const t of beats) clearInterval(t);
  for (const c of streams) c.end();
  for (const c of clients) c.close();
  log(`stub host ${prefix}: ${done} tasks run`);
  process.exit(0);
}

async function workersRun(pk, w, args, emit) {
  const kids = [];
  const spawnKid = (argv) => {
    // SKEIN_SCALE_SCHEDULER_FLAGS: node flags for the scheduler's process (e.g. --cpu-prof).
    const flags = argv[0] === '--sched-host' ? (process.env.SKEIN_SCALE_SCHEDULER_FLAGS ?? '').split(' ').filter(Boolean) : [];
    const child = spawn(process.execPath, [...flags, fileURLToPath(import.meta.url), ...argv, ...rootArgs(args)], { stdio: ['pipe', 'pipe', 'inherit'] });
    kids.push(child);
    return { child, next: lineReader(child.stdout) };
  };
  let client;
  try {
    const sched = spawnKid(['--sched-host']);
    const address = (await sched.next('the scheduler address')).trim();
    const perHost = 250;
    const hosts = [];
    for (let i = 0, h = 0; i < w; i += perHost, h++) hosts.push(spawnKid(['--stub-host', address, String(Math.min(perHost, w - i)), `h${h}`]));
    for (const h of hosts) await h.next('READY');
    client = await pk.skein.Client.connect(address);
    await waitWorkers(client, w);
    // Every stub has sent its first heartbeat (they start within one interval) and the registrations settled.
    await sleep(2500);
    sched.child.stdin.write(`CPU ${args.idleMs}\n`);
    const cpu = JSON.parse(await sched.next('the CPU figure'));
    emit('scale-workers-idle-cpu', { workers: w }, round(cpu.percent, 2), '% of a core', { ms: args.idleMs, user_us: cpu.user, system_us: cpu.system });
    const n = args.mapN;
    const warm = client.map(noop, range(-10_000, 0));
    await client.gather(warm);
    client.release(warm);
    await sleep(300);
    for (let r = 0; r < args.repeat; r++) {
      const xs = range(r * n, (r + 1) * n);
      const t0 = performance.now();
      const futs = client.map(noop, xs);
      const vals = await client.gather(futs);
      const dt = (performance.now() - t0) / 1000;
      if (vals.length !== n || vals[0] !== xs[0] || vals[n - 1] !== xs[n - 1]) throw new Error('scale workers map: wrong results');
      emit('scale-workers-map', { workers: w, n }, round(n / dt), 'tasks/s', { seconds: round(dt, 3) });
      client.release(futs);
      await sleep(300);
    }
  } finally {
    await client?.close().catch(() => undefined);
    for (const k of kids) if (k.exitCode === null) k.stdin.write('EXIT\n');
    await Promise.all(kids.map((k) => (k.exitCode === null ? Promise.race([new Promise((r) => k.once('exit', r)), sleep(5000)]) : undefined)));
    for (const k of kids) if (k.exitCode === null) k.kill('SIGKILL');
  }
}

async function runWorkers(pk, args, emit) {
  for (const w of args.workers) await workersRun(pk, w, args, emit);
}

// ------------------------------------------------------------------ driver

function rootArgs(args) {
  return [...(args.skeinRoot ? ['--skein-root', args.skeinRoot] : []), ...(args.system !== 'skein' ? ['--system', args.system] : [])];
}

/** Runs this file as a child with `argv` and passes its records on. */
async function childRecords(argv, emit) {
  const child = spawn(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), ...argv], { stdio: ['ignore', 'pipe', 'inherit'] });
  for await (const line of createInterface({ input: child.stdout })) {
    try {
      const rec = JSON.parse(line);
      if (rec.workload) emit(rec.workload, rec.params, rec.value, rec.unit, rec, true);
    } catch {
      console.error(line);
    }
  }
  const code = await new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve)));
  if (code !== 0) throw new Error(`scale child ${argv.join(' ')} exited with ${code}`);
}

export function parseScaleArgs(argv) {
  const args = { part: null, short: false, sizes: null, workers: null, repeat: null, idleMs: null, mapN: null, skeinRoot: null, system: 'skein' };
  const list = (s) => s.split(',').map((x) => Number(x.replace(/_/g, '')));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--part') args.part = argv[++i];
    else if (a === '--short') args.short = true;
    else if (a === '--sizes') args.sizes = list(argv[++i]);
    else if (a === '--workers') args.workers = list(argv[++i]);
    else if (a === '--repeat') args.repeat = Number(argv[++i]);
    else if (a === '--idle-ms') args.idleMs = Number(argv[++i]);
    else if (a === '--map-n') args.mapN = Number(argv[++i]);
    else if (a === '--skein-root') args.skeinRoot = path.resolve(argv[++i]);
    else if (a === '--system') args.system = argv[++i];
    else if (['--mem-run', '--mem-client', '--sched-host', '--stub-host'].includes(a)) args.role = [a, ...argv.slice(i + 1)];
    else throw new Error(`unknown argument ${a}`);
    if (args.role) break;
  }
  if (args.role) {
    // The role's own arguments come first, then the shared ones.
    const rest = args.role.slice(1);
    const shared = rest.findIndex((x) => x.startsWith('--'));
    if (shared >= 0) Object.assign(args, { ...parseScaleArgs(rest.slice(shared)), role: [args.role[0], ...rest.slice(0, shared)] });
  }
  args.sizes ??= args.short ? [10_000, 50_000] : [10_000, 100_000, 1_000_000];
  args.workers ??= [10, 100, 1000];
  args.repeat ??= 1;
  args.idleMs ??= args.short ? 3000 : 10_000;
  args.mapN ??= args.short ? 20_000 : 100_000;
  return args;
}

/**
 * Runs one part ('tasks' or 'workers', or both with null) and calls `emit(record)` for each
 * figure; the records are also returned.
 */
export async function runScale(options = {}, onRecord = (rec) => process.stdout.write(`${JSON.stringify(rec)}\n`)) {
  const args = { ...parseScaleArgs([]), ...options };
  const pk = await loadPackages(args.skeinRoot);
  const records = [];
  const emit = (workload, params, value, unit, extra = {}, passOn = false) => {
    const rec = passOn ? extra : { system: args.system, workload, params, value, unit, ...extra };
    records.push(rec);
    onRecord(rec);
  };
  if (args.part === null || args.part === 'tasks') await runTasks(pk, args, emit);
  if (args.part === null || args.part === 'workers') await runWorkers(pk, args, emit);
  return records;
}

async function main() {
  const args = parseScaleArgs(process.argv.slice(2));
  if (args.role) {
    const pk = await loadPackages(args.skeinRoot);
    const [role, ...r] = args.role;
    const emit = (workload, params, value, unit, extra = {}) =>
      process.stdout.write(`${JSON.stringify({ system: args.system, workload, params, value, unit, ...extra })}\n`);
    if (role === '--mem-run') return memoryRun(pk, Number(r[0]), args, emit);
    if (role === '--mem-client') return memClient(pk, r[0], Number(r[1]));
    if (role === '--sched-host') return schedHost(pk);
    if (role === '--stub-host') return stubHost(pk, r[0], Number(r[1]), r[2]);
  }
  log(`part ${args.part ?? 'tasks+workers'}, sizes ${args.sizes.join('/')}, workers ${args.workers.join('/')}, node ${process.version}${args.skeinRoot ? `, skein from ${args.skeinRoot}` : ''}`);
  await runScale(args);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().then(
    () => process.exit(0),
    (err) => {
      console.error('[scale] FAILED:', err?.stack ?? err);
      process.exit(1);
    },
  );
}

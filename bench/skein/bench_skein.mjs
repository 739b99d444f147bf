#!/usr/bin/env node
// Skein side of the benchmark suite (the Dask side is bench/dask/bench_dask.py, workload for
// workload the same). Run by bench/run.mjs:
//
//   node --expose-gc bench/skein/bench_skein.mjs --workload map [--short] [--repeat N] [--tls]
//
// --tls: the cluster runs with LocalCluster.start({ security: true }) (Security.temporary():
// mutual TLS on every link, the encrypted bulk path) and records say "system":"skein-tls".
//
// Every measured run prints one JSON line on stdout:
//   {"system":"skein","workload":...,"params":{...},"value":...,"unit":...}
// Everything else goes to stderr. Each invocation starts its own
// LocalCluster({ nWorkers: 2, threadsPerWorker: 1 }) (worker processes) and closes it.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

// The scheduler runs in this process and logs at info by default (a line per worker, etc.).
process.env.SKEIN_LOG_LEVEL ??= 'warn';

const TLS = process.argv.includes('--tls');
const SYSTEM = TLS ? 'skein-tls' : 'skein';
/** LocalCluster options of every cluster this process starts. */
const clusterOptions = () => ({ nWorkers: 2, threadsPerWorker: 1, ...(TLS ? { security: true } : {}) });
const WORKLOADS = ['map', 'latency', 'tree', 'fanin', 'transfer', 'memory', 'startup', 'clients', 'coldstart', 'deps'];

const log = (...a) => console.error('[skein]', ...a);

function emit(workload, params, value, unit, extra = {}) {
  process.stdout.write(`${JSON.stringify({ system: SYSTEM, workload, params, value, unit, ...extra })}\n`);
}

const round = (x, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);

// ---- task functions: inline functions travel as source, so they capture nothing ----
const noop = (x) => x;
const add = (a, b) => a + b;
// Random bytes, as on the Dask side (where lz4 would shrink zeros). getRandomValues takes at
// most 64 KiB per call.
const makeBytes = (n) => {
  const buf = Buffer.allocUnsafe(n);
  for (let off = 0; off < n; off += 65536) {
    globalThis.crypto.getRandomValues(new Uint8Array(buf.buffer, buf.byteOffset + off, Math.min(65536, n - off)));
  }
  return buf;
};
const nbytes = (b) => b.length;
const slowRoot = (ms) => new Promise((resolve) => setTimeout(() => resolve(0), ms));
const dep = (i, root) => i;
const sumAll = (...xs) => {
  let s = 0;
  for (const x of xs) s += x;
  return s;
};

// sizes shared by several workloads
const faninSize = (short) => (short ? { leaves: 1000, group: 10 } : { leaves: 10_000, group: 100 });

async function loadSkein() {
  let mod;
  try {
    mod = await import('skein');
  } catch (err) {
    throw new Error(`cannot import the "skein" package (run pnpm install && pnpm build at the repo root): ${err.message}`);
  }
  if (typeof mod.LocalCluster?.start !== 'function' || typeof mod.Client?.connect !== 'function') {
    throw new Error('the "skein" package does not export LocalCluster and Client yet (is packages/skein built? run pnpm build)');
  }
  return mod;
}

function gcNow() {
  if (typeof globalThis.gc === 'function') {
    globalThis.gc();
    globalThis.gc();
  }
}

async function startCluster(skein) {
  const cluster = await skein.LocalCluster.start(clusterOptions());
  const client = await skein.Client.connect(cluster);
  await waitWorkers(client, 2);
  return { cluster, client };
}

async function waitWorkers(client, n, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await client.schedulerInfo();
    if (info.workers.length >= n) return info;
    if (Date.now() > deadline) throw new Error(`only ${info.workers.length} of ${n} workers registered`);
    await sleep(10);
  }
}

// ---- workloads ----

async function wMap({ client }, args) {
  const sizes = args.short ? [2000] : [20_000, 100_000];
  for (const n of sizes) {
    for (let r = 0; r < args.repeat; r++) {
      const xs = range(n * r, n * (r + 1)); // fresh keys each run
      const t0 = performance.now();
      const futs = client.map(noop, xs);
      const vals = await client.gather(futs);
      const dt = (performance.now() - t0) / 1000;
      if (vals.length !== n || vals[0] !== xs[0] || vals[n - 1] !== xs[n - 1]) throw new Error('map: wrong results');
      emit('map', { n }, round(n / dt), 'tasks/s', { seconds: round(dt, 4) });
      client.release(futs);
      await sleep(500); // let releases settle
    }
  }
}

async function wLatency({ client }, args) {
  const n = args.short ? 100 : 1000;
  for (let r = 0; r < args.repeat; r++) {
    await client.submitWith({ pure: false }, noop, -1).result(); // warm-up: ship the function once
    const times = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      const v = await client.submitWith({ pure: false }, noop, i).result();
      times.push(performance.now() - t0);
      if (v !== i) throw new Error(`latency: got ${v}, expected ${i}`);
    }
    times.sort((a, b) => a - b);
    const p50 = times.length % 2 ? times[times.length >> 1] : (times[times.length / 2 - 1] + times[times.length / 2]) / 2;
    const p99 = times[Math.min(times.length - 1, Math.round(0.99 * times.length) - 1)];
    emit('latency-p50', { n }, round(p50, 3), 'ms');
    emit('latency-p99', { n }, round(p99, 3), 'ms');
  }
}

async function wTree({ client }, args) {
  const levels = args.short ? 10 : 14;
  const leaves = 2 ** levels;
  const ntasks = 2 * leaves - 1;
  for (let r = 0; r < args.repeat; r++) {
    const off = r * leaves; // fresh keys each run
    const expect = (leaves * (leaves - 1)) / 2 + off * leaves;
    const t0 = performance.now();
    let level = client.map(noop, range(off, off + leaves));
    while (level.length > 1) {
      const next = [];
      for (let j = 0; j < level.length; j += 2) next.push(client.submit(add, level[j], level[j + 1]));
      level = next;
    }
    const total = await level[0].result();
    const dt = (performance.now() - t0) / 1000;
    if (total !== expect) throw new Error(`tree: got ${total}, expected ${expect}`);
    emit('tree', { leaves, tasks: ntasks }, round(ntasks / dt), 'tasks/s', { seconds: round(dt, 4) });
    client.release(level);
    await sleep(500);
  }
}

async function wTransfer({ client }, args) {
  const sizes = args.short ? [20_000_000] : [100_000_000, 500_000_000];
  const info = await client.schedulerInfo();
  const [a, b] = info.workers.map((w) => w.address).sort();
  for (const size of sizes) {
    for (let r = 0; r < args.repeat; r++) {
      const prod = client.submitWith({ workers: [a], allowOtherWorkers: false, pure: false }, makeBytes, size);
      await prod.wait();
      if (prod.status !== 'finished') throw new Error(`transfer: producer ${prod.status}`);
      const t0 = performance.now();
      const cons = client.submitWith({ workers: [b], allowOtherWorkers: false, pure: false }, nbytes, prod);
      const got = await cons.result();
      const dt = (performance.now() - t0) / 1000;
      if (got !== size) throw new Error(`transfer: consumer saw ${got} bytes, expected ${size}`);
      emit('transfer', { mb: size / 1_000_000 }, round(size / 1e6 / dt), 'MB/s', { seconds: round(dt, 4) });
      client.release([prod, cons]);
      await sleep(1000);
    }
  }
}

/**
 * One fan-in: `leaves` no-ops by one `map`, summed in groups of `group` by one `submit(sumAll,
 * ...group)` each, then one root over the group sums. Resolves to its wall-clock seconds.
 */
async function faninOnce(client, { leaves, group }, base) {
  const expect = (leaves * (leaves - 1)) / 2 + base * leaves;
  const t0 = performance.now();
  const ls = client.map(noop, range(base, base + leaves));
  const mids = [];
  for (let g = 0; g < leaves; g += group) mids.push(client.submit(sumAll, ...ls.slice(g, g + group)));
  const root = client.submit(sumAll, ...mids);
  const total = await root.result();
  const dt = (performance.now() - t0) / 1000;
  if (total !== expect) throw new Error(`fanin: got ${total}, expected ${expect}`);
  client.release([...ls, ...mids, root]);
  return dt;
}

async function wFanin({ client }, args) {
  const size = faninSize(args.short);
  const ntasks = size.leaves + size.leaves / size.group + 1;
  for (let r = 0; r < args.repeat; r++) {
    const dt = await faninOnce(client, size, r * size.leaves);
    emit('fanin', { ...size, tasks: ntasks }, round(ntasks / dt), 'tasks/s', { seconds: round(dt, 4) });
    await sleep(500);
  }
}

async function treeOnce(client, levels, off) {
  const leaves = 2 ** levels;
  const expect = (leaves * (leaves - 1)) / 2 + off * leaves;
  const t0 = performance.now();
  let level = client.map(noop, range(off, off + leaves));
  const all = [...level];
  while (level.length > 1) {
    const next = [];
    for (let j = 0; j < level.length; j += 2) next.push(client.submit(add, level[j], level[j + 1]));
    all.push(...next);
    level = next;
  }
  const total = await level[0].result();
  const dt = (performance.now() - t0) / 1000;
  if (total !== expect) throw new Error(`tree: got ${total}, expected ${expect}`);
  client.release(all);
  return dt;
}

async function mapOnce(client, n, off) {
  const xs = range(off, off + n);
  const t0 = performance.now();
  const futs = client.map(noop, xs);
  const vals = await client.gather(futs);
  const dt = (performance.now() - t0) / 1000;
  if (vals.length !== n || vals[0] !== xs[0] || vals[n - 1] !== xs[n - 1]) throw new Error('map: wrong results');
  client.release(futs);
  return dt;
}

/** Runs this script again as a child with `argv`; its records are forwarded and returned. */
async function childRecords(argv) {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...argv, ...(TLS ? ['--tls'] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const recs = [];
  for await (const line of createInterface({ input: child.stdout })) {
    if (!line.trim()) continue;
    process.stdout.write(`${line}\n`);
    try {
      recs.push(JSON.parse(line));
    } catch {
      /* not a record */
    }
  }
  const code = await exited;
  if (code !== 0) throw new Error(`${argv.join(' ')} exited with ${code}`);
  return recs;
}

// ---- clients: 10 client processes submitting maps at once against one LocalCluster ----

const CLIENTS = 10;

/**
 * Each client is its own process (its own Client object and event loop), connected to this
 * process's LocalCluster. Per round: one client alone maps CLIENTS x n tasks, then CLIENTS clients
 * map n tasks each, all started by one GO line; throughput is all tasks over the time from GO to
 * the last client's results, and each client's own time from GO to its results is recorded.
 */
async function wClients({ cluster }, args) {
  const n = args.short ? 1000 : 10_000;
  let base = 0;
  const phase = async (clients, perClient) => {
    const kids = [];
    for (let c = 0; c < clients; c++) {
      const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--clients-client', cluster.schedulerAddress, String(perClient), String(base), ...(args.short ? ['--short'] : [])], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      base += perClient;
      kids.push({ child, lines: createInterface({ input: child.stdout })[Symbol.asyncIterator](), exited: new Promise((r) => child.once('exit', r)) });
    }
    try {
      for (const k of kids) {
        const { value } = await k.lines.next();
        if (value?.trim() !== 'READY') throw new Error(`a client process said ${JSON.stringify(value)}, expected READY`);
      }
      const t0 = performance.now();
      for (const k of kids) k.child.stdin.write('GO\n');
      const perClientS = await Promise.all(
        kids.map(async (k) => {
          const { value } = await k.lines.next();
          const t = (performance.now() - t0) / 1000;
          if (!value?.startsWith('DONE ')) throw new Error(`a client process said ${JSON.stringify(value)}, expected DONE`);
          return t;
        }),
      );
      for (const k of kids) k.child.stdin.end();
      for (const k of kids) if ((await k.exited) !== 0) throw new Error('a client process failed');
      const total = Math.max(...perClientS);
      return { rate: (clients * perClient) / total, perClientS: perClientS.map((x) => round(x, 3)) };
    } finally {
      for (const k of kids) if (k.child.exitCode === null && k.child.signalCode === null) k.child.kill('SIGKILL');
    }
  };
  for (let r = 0; r < args.repeat; r++) {
    const one = await phase(1, CLIENTS * n);
    emit('clients', { clients: 1, tasks: CLIENTS * n }, round(one.rate), 'tasks/s', { seconds: one.perClientS[0] });
    await sleep(500);
    const many = await phase(CLIENTS, n);
    const fastest = Math.min(...many.perClientS);
    const slowest = Math.max(...many.perClientS);
    emit('clients', { clients: CLIENTS, tasks: CLIENTS * n }, round(many.rate), 'tasks/s', {
      per_client_seconds: many.perClientS,
      fastest_seconds: fastest,
      slowest_seconds: slowest,
      slowest_vs_fastest: round(slowest / fastest, 2),
    });
    emit('clients-vs-one', { clients: CLIENTS, tasks: CLIENTS * n }, round(many.rate / one.rate, 3), 'ratio', {
      note: `${CLIENTS} clients' total tasks/s over one client's, same round`,
    });
    await sleep(500);
  }
}

async function clientsClient(address, n, base, short) {
  const skein = await loadSkein();
  const client = await skein.Client.connect(address);
  // warm-up: connect and ship the function (inputs of its own, so no key is shared)
  const warmN = short ? 100 : 1000;
  const warm = client.map(noop, range(-base - warmN - 1, -base - 1));
  await client.gather(warm);
  client.release(warm);
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  process.stdout.write('READY\n');
  if ((await lines.next()).value?.trim() !== 'GO') throw new Error('expected GO');
  const t0 = performance.now();
  const xs = range(base, base + n);
  const futs = client.map(noop, xs);
  const vals = await client.gather(futs);
  const dt = (performance.now() - t0) / 1000;
  if (vals.length !== n || vals[0] !== xs[0] || vals[n - 1] !== xs[n - 1]) throw new Error('clients: wrong results');
  process.stdout.write(`DONE ${dt}\n`);
  await lines.next(); // end of input
  client.release(futs);
  await client.close();
}

// ---- coldstart: a fresh process, a fresh LocalCluster, its first maps ----

async function wColdstart(skein, args) {
  const n = args.short ? 2000 : 20_000;
  for (let r = 0; r < args.repeat; r++) {
    const recs = await childRecords(['--workload', 'coldstart-inner', ...(args.short ? ['--short'] : [])]);
    const rate = (run) => recs.find((x) => x.workload === 'coldstart-map' && x.params.run === run)?.value;
    emit('coldstart-first-vs-warm', { n }, round(rate(1) / rate(3), 3), 'ratio', { note: 'first map on a fresh LocalCluster over the third in the same process' });
  }
}

async function coldstartInner(skein, args) {
  const n = args.short ? 2000 : 20_000;
  const t0 = performance.now();
  const { cluster, client } = await startCluster(skein);
  emit('coldstart-ready', { workers: 2 }, round(performance.now() - t0), 'ms', { note: 'LocalCluster.start to 2 workers registered, first cluster of a fresh process' });
  try {
    for (let run = 1; run <= 3; run++) {
      const dt = await mapOnce(client, n, run * n);
      emit('coldstart-map', { n, run }, round(n / dt), 'tasks/s', { seconds: round(dt, 4) });
      await sleep(500);
    }
  } finally {
    await client.close().catch((e) => log('client close:', e.message));
    await cluster.close().catch((e) => log('cluster close:', e.message));
  }
}

// ---- deps: fan-in and tree against the map, cold and warm ----

const depsSizes = (short) => ({ map: short ? 1000 : 10_000, fanin: faninSize(short), treeLevels: short ? 10 : 13 });

/**
 * Per repeat, three fresh processes (fresh LocalClusters), one per shape (map, fan-in, tree), each
 * running its shape three times: round 1 is cold (the shape is the first work of its processes),
 * round 3 warm. The ratios compare the fan-in's and the tree's tasks/s with the map's, round by
 * round, within one repeat.
 */
async function wDeps(skein, args) {
  for (let r = 0; r < args.repeat; r++) {
    const rates = {};
    for (const kind of ['map', 'fanin', 'tree']) {
      const recs = await childRecords(['--workload', 'deps-inner', '--kind', kind, ...(args.short ? ['--short'] : [])]);
      rates[kind] = new Map(recs.map((x) => [x.params.round, x.value]));
    }
    for (const rnd of [1, 2, 3]) {
      const phase = rnd === 1 ? 'cold' : rnd === 3 ? 'warm' : 'second';
      emit('fanin-vs-map', { round: rnd, phase }, round(rates.fanin.get(rnd) / rates.map.get(rnd), 3), 'ratio');
      emit('tree-vs-map', { round: rnd, phase }, round(rates.tree.get(rnd) / rates.map.get(rnd), 3), 'ratio');
    }
  }
}

async function depsInner(skein, args) {
  const sz = depsSizes(args.short);
  const { cluster, client } = await startCluster(skein);
  try {
    for (let rnd = 1; rnd <= 3; rnd++) {
      const phase = rnd === 1 ? 'cold' : rnd === 3 ? 'warm' : 'second';
      if (args.kind === 'map') {
        const dt = await mapOnce(client, sz.map, rnd * sz.map);
        emit('deps-map', { n: sz.map, round: rnd, phase }, round(sz.map / dt), 'tasks/s', { seconds: round(dt, 4) });
      } else if (args.kind === 'fanin') {
        const ntasks = sz.fanin.leaves + sz.fanin.leaves / sz.fanin.group + 1;
        const dt = await faninOnce(client, sz.fanin, rnd * sz.fanin.leaves);
        emit('deps-fanin', { tasks: ntasks, round: rnd, phase }, round(ntasks / dt), 'tasks/s', { seconds: round(dt, 4) });
      } else if (args.kind === 'tree') {
        const ntasks = 2 * 2 ** sz.treeLevels - 1;
        const dt = await treeOnce(client, sz.treeLevels, rnd * 2 ** sz.treeLevels);
        emit('deps-tree', { tasks: ntasks, round: rnd, phase }, round(ntasks / dt), 'tasks/s', { seconds: round(dt, 4) });
      } else throw new Error(`deps: unknown --kind ${args.kind}`);
      await sleep(500);
    }
  } finally {
    await client.close().catch((e) => log('client close:', e.message));
    await cluster.close().catch((e) => log('cluster close:', e.message));
  }
}

function schedulerTaskCount(cluster) {
  const counts = cluster.scheduler.info().tasksByState;
  let total = 0;
  for (const v of counts.values()) total += Number(v); // a protobuf map: a Map
  return total;
}

async function wMemory(skein, args) {
  const n = args.short ? 10_000 : 100_000;
  if (args.repeat > 1) {
    // One fresh process per run, as on the Dask side: the scheduler runs in this process, and the
    // heap keeps pages freed by an earlier run, so a second run here would grow much less.
    for (let r = 0; r < args.repeat; r++) {
      const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--workload', 'memory', '--repeat', '1', ...(args.short ? ['--short'] : [])], {
        stdio: 'inherit',
      });
      const code = await new Promise((resolve) => child.once('exit', resolve));
      if (code !== 0) throw new Error(`memory run ${r + 1} exited with ${code}`);
    }
    return;
  }
  if (typeof globalThis.gc !== 'function') log('warning: run with --expose-gc for a steadier RSS figure');
  const { cluster, client } = await startCluster(skein);
  try {
    await memoryRun(cluster, n);
  } finally {
    await client.close().catch((e) => log('client close:', e.message));
    await cluster.close().catch((e) => log('cluster close:', e.message));
  }
}

async function memoryRun(cluster, n) {
  // LocalCluster runs the scheduler in this process. The tasks are submitted by a separate client
  // process, so this process holds no client futures: only the scheduler's per-task state grows.
  // The client first runs a small warm-up graph of the same shape.
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--mem-client', cluster.schedulerAddress, String(n)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const expectLine = async (want) => {
      const { value, done } = await lines.next();
      if (done || value.trim() !== want) throw new Error(`memory client said ${done ? 'nothing' : JSON.stringify(value)}, expected ${want}`);
    };
    await expectLine('CONNECTED');
    await sleep(500);
    const base = schedulerTaskCount(cluster);
    gcNow();
    const { rss: rss0, heapUsed: heap0 } = process.memoryUsage();
    child.stdin.write('GO\n');
    await expectLine('SUBMITTED');
    const deadline = Date.now() + 120_000;
    while (schedulerTaskCount(cluster) < base + n + 1) {
      if (Date.now() > deadline) throw new Error('memory: the scheduler never saw all tasks');
      await sleep(200);
    }
    await sleep(1000);
    gcNow();
    const { rss: rss1, heapUsed: heap1 } = process.memoryUsage();
    emit('memory', { tasks: n }, round((rss1 - rss0) / n), 'bytes/task', {
      rss_before: rss0,
      rss_after: rss1,
      heap_used_per_task: round((heap1 - heap0) / n),
    });
    child.stdin.end('DONE\n');
    await exited;
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

async function memClient(address, n) {
  const skein = await loadSkein();
  const client = await skein.Client.connect(address);
  // warm-up: the same graph shape, small, run to completion and released
  const warmRoot = client.submitWith({ pure: false }, slowRoot, 0);
  const warm = client.map(dep, range(0, 100), Array(100).fill(warmRoot));
  await client.gather(warm);
  client.release([...warm, warmRoot]);
  await sleep(500);
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  process.stdout.write('CONNECTED\n');
  if ((await lines.next()).value?.trim() !== 'GO') throw new Error('expected GO');
  const root = client.submitWith({ pure: false }, slowRoot, 600_000);
  const futs = client.map(dep, range(0, n), Array(n).fill(root));
  process.stdout.write('SUBMITTED\n');
  await lines.next(); // DONE (or end of input)
  await client.cancel([...futs, root]).catch(() => undefined);
  await client.close();
}

async function wStartup(skein, args) {
  for (let r = 0; r < args.repeat; r++) {
    const t0 = performance.now();
    const cluster = await skein.LocalCluster.start(clusterOptions());
    const client = await skein.Client.connect(cluster);
    await waitWorkers(client, 2);
    const dt = performance.now() - t0;
    emit('startup', { workers: 2 }, round(dt), 'ms');
    await client.close();
    await cluster.close();
  }
}

function parseArgs(argv) {
  const args = { workload: null, short: false, repeat: null, memClient: null, clientsClient: null, kind: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--workload') args.workload = argv[++i];
    else if (a === '--short') args.short = true;
    else if (a === '--repeat') args.repeat = Number(argv[++i]);
    else if (a === '--mem-client') args.memClient = [argv[++i], Number(argv[++i])];
    else if (a === '--clients-client') args.clientsClient = [argv[++i], Number(argv[++i]), Number(argv[++i])];
    else if (a === '--kind') args.kind = argv[++i];
    else if (a === '--tls') args.tls = true;
    else throw new Error(`unknown argument ${a}`);
  }
  const inner = ['coldstart-inner', 'deps-inner'];
  if (!args.memClient && !args.clientsClient && !WORKLOADS.includes(args.workload) && !inner.includes(args.workload)) {
    throw new Error(`--workload must be one of ${WORKLOADS.join(', ')}`);
  }
  args.repeat ??= args.short ? 1 : 3;
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.memClient) return memClient(...args.memClient);
  if (args.clientsClient) return clientsClient(...args.clientsClient, args.short);
  const skein = await loadSkein();
  log(`workload ${args.workload}, node ${process.version}`);
  if (args.workload === 'startup') return wStartup(skein, args);
  if (args.workload === 'memory') return wMemory(skein, args);
  if (args.workload === 'coldstart') return wColdstart(skein, args);
  if (args.workload === 'coldstart-inner') return coldstartInner(skein, args);
  if (args.workload === 'deps') return wDeps(skein, args);
  if (args.workload === 'deps-inner') return depsInner(skein, args);
  const ctx = await startCluster(skein);
  try {
    switch (args.workload) {
      case 'map': return await wMap(ctx, args);
      case 'latency': return await wLatency(ctx, args);
      case 'tree': return await wTree(ctx, args);
      case 'fanin': return await wFanin(ctx, args);
      case 'clients': return await wClients(ctx, args);
      case 'transfer': return await wTransfer(ctx, args);
    }
  } finally {
    await ctx.client.close().catch((e) => log('client close:', e.message));
    await ctx.cluster.close().catch((e) => log('cluster close:', e.message));
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error('[skein] FAILED:', err?.stack ?? err);
    process.exit(1);
  },
);

#!/usr/bin/env node
// Skein vs Dask distributed (and BullMQ, piscina) benchmark suite.
//
//   node bench/run.mjs [--short] [--only name[,name...]] [--skip-dask] [--skip-skein] [--repeat N] [--dask-repeat N] [--tls]
//
// --tls also runs the Skein workloads map, latency, tree, fanin, transfer and startup on a cluster
// with TLS ("skein-tls").
//
// `peers` runs BullMQ on Redis (concurrency 1 and 50; bench/peers/bench_bullmq.mjs) and piscina
// (bench/peers/bench_piscina.mjs) for map, latency and fan-in, each right after Skein's runs of
// that workload, and brings in the Skein and Dask sides of those three workloads; `clients` and
// `deps` are Skein only, `coldstart` Skein and Dask-best.
//
// For each workload it runs the Skein side (bench/skein/bench_skein.mjs) and the Dask side
// (bench/dask/bench_dask.py with Debian's /usr/bin/python3; once with defaults and, where a
// setting changes Dask's figure, once more as "dask-best"), each in its own process with its own
// LocalCluster of 2 worker processes x 1 thread. Each run prints one JSON line; all lines go to
// bench/results/<timestamp>-<mode>.jsonl, and a table of medians is printed at the end.
//
// Exit status: non-zero only when a workload process crashes or times out. Timings are never
// asserted.
import { spawn, execFileSync } from 'node:child_process';
import { mkdirSync, createWriteStream, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const PYTHON = process.env.SKEIN_BENCH_PYTHON ?? '/usr/bin/python3';
const WORKLOADS = ['map', 'latency', 'tree', 'fanin', 'transfer', 'memory', 'startup', 'peers', 'clients', 'coldstart', 'deps', 'scale-tasks', 'scale-workers'];
// bench/scale.mjs (Skein only): minutes at full size, so a full run has them only when named with
// --only; a --short run (CI) has them at their short sizes.
const OPT_IN = new Set(['scale-tasks', 'scale-workers']);
/** Workloads with a Skein side only (and no TLS variant). */
const SKEIN_ONLY = new Set(['clients', 'deps']);
/**
 * Workloads whose Dask side runs at Dask's best setting only (and Skein's without TLS): Dask's
 * default map is bound by its queuing at ~450 tasks/s, cold or warm, and three 20,000-task maps of
 * it per run would take minutes.
 */
const DASK_BEST_ONLY = new Set(['coldstart']);
/** What `peers` compares: these workloads' Skein and Dask sides beside the peers'. */
const PEER_WORKLOADS = ['map', 'latency', 'fanin'];
const PEER_SYSTEMS = ['bullmq-c1', 'bullmq-c50', 'piscina'];
// "higher" = higher is better
const DIRECTION = {
  map: 'higher', 'latency-p50': 'lower', 'latency-p99': 'lower', tree: 'higher', fanin: 'higher',
  transfer: 'higher', memory: 'lower', startup: 'lower',
  clients: 'higher', 'clients-vs-one': 'higher',
  'coldstart-ready': 'lower', 'coldstart-map': 'higher', 'coldstart-first-vs-warm': 'higher',
  'deps-map': 'higher', 'deps-fanin': 'higher', 'deps-tree': 'higher', 'fanin-vs-map': 'higher', 'tree-vs-map': 'higher',
  'bullmq-lost': 'lower',
};
/** The workload (table section) a record's workload name belongs to. */
const GROUP_OF = {
  'latency-p50': 'latency', 'latency-p99': 'latency', 'clients-vs-one': 'clients',
  'coldstart-ready': 'coldstart', 'coldstart-map': 'coldstart', 'coldstart-first-vs-warm': 'coldstart',
  'deps-map': 'deps', 'deps-fanin': 'deps', 'deps-tree': 'deps', 'fanin-vs-map': 'deps', 'tree-vs-map': 'deps',
  'bullmq-lost': 'peers',
};

function parseArgs(argv) {
  const opts = { short: false, only: null, skipDask: false, skipSkein: false, repeat: null, daskRepeat: null, tls: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--short') opts.short = true;
    else if (a === '--skip-dask') opts.skipDask = true;
    else if (a === '--skip-skein') opts.skipSkein = true;
    else if (a === '--tls') opts.tls = true;
    else if (a === '--only') opts.only = argv[++i];
    else if (a.startsWith('--only=')) opts.only = a.slice(7);
    else if (a === '--repeat') opts.repeat = Number(argv[++i]);
    else if (a.startsWith('--repeat=')) opts.repeat = Number(a.slice(9));
    else if (a === '--dask-repeat') opts.daskRepeat = Number(argv[++i]);
    else if (a.startsWith('--dask-repeat=')) opts.daskRepeat = Number(a.slice(14));
    else if (a === '-h' || a === '--help') {
      console.log('usage: node bench/run.mjs [--short] [--only name[,name]] [--skip-dask] [--skip-skein] [--repeat N] [--dask-repeat N] [--tls]');
      console.log('  --tls: also run each Skein workload (but memory) on a cluster with TLS (LocalCluster security: true), as "skein-tls" beside "skein"');
      console.log('  --dask-repeat N: runs per case for the Dask sides (default: as --repeat); its default map takes minutes per run');
      console.log(`workloads: ${WORKLOADS.join(', ')} (peers: BullMQ and piscina beside the map, latency and fanin workloads)`);
      process.exit(0);
    } else {
      console.error(`unknown argument: ${a}`);
      process.exit(2);
    }
  }
  if (opts.only) {
    const names = opts.only.split(',').map((s) => s.trim()).filter(Boolean);
    for (const n of names) {
      if (!WORKLOADS.includes(n)) {
        console.error(`unknown workload "${n}"; known: ${WORKLOADS.join(', ')}`);
        process.exit(2);
      }
    }
    opts.only = names;
  }
  return opts;
}

/** The workloads to run, in suite order; `peers` brings in map, latency and fanin. */
function expandWorkloads(only, short) {
  const want = new Set(only ?? WORKLOADS.filter((w) => short || !OPT_IN.has(w)));
  if (want.has('peers')) for (const w of PEER_WORKLOADS) want.add(w);
  return WORKLOADS.filter((w) => want.has(w));
}

/**
 * Why the peer benchmarks cannot run here, or null: bullmq, ioredis and piscina come from
 * bench/package.json (pnpm install), redis-server from Debian (bench/setup.sh).
 */
async function peersMissing() {
  const missing = [];
  for (const mod of ['bullmq', 'ioredis', 'piscina']) {
    try {
      await import(mod);
    } catch {
      missing.push(`the ${mod} package (pnpm install at the repo root)`);
    }
  }
  const { redisServerPath } = await import('./peers/common.mjs');
  if (!redisServerPath()) missing.push('redis-server (bash bench/setup.sh, or apt-get install redis-server)');
  return missing.length ? `missing ${missing.join(', ')}` : null;
}

function tryExec(cmd, args) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

function machineInfo() {
  const mem = tryExec('free', ['-h']);
  const total = mem?.split('\n').find((l) => l.startsWith('Mem:'))?.split(/\s+/)[1] ?? `${(os.totalmem() / 2 ** 30).toFixed(1)}Gi`;
  return {
    nproc: tryExec('nproc', []) ?? String(os.availableParallelism?.() ?? os.cpus().length),
    mem: total,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    load: os.loadavg().map((x) => x.toFixed(2)).join(' '),
    commit: gitCommit(),
  };
}

function gitCommit() {
  const head = tryExec('git', ['-C', here, 'rev-parse', '--short', 'HEAD']);
  if (!head) return 'unknown';
  const dirty = tryExec('git', ['-C', here, 'status', '--porcelain', '--', '../packages']);
  return dirty ? `${head} + uncommitted changes in packages/` : head;
}

function daskVersion() {
  if (!existsSync(PYTHON)) return null;
  return tryExec(PYTHON, ['-c', 'import distributed; print(distributed.__version__)']);
}

/** Run one child; resolve { code, records, timedOut }. stdout JSON lines are records. */
function runChild(label, cmd, args, timeoutMs, sink) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(cmd, args, { cwd: here, stdio: ['ignore', 'pipe', 'inherit'], env: process.env });
    const records = [];
    let buf = '';
    let timedOut = false;
    const onLine = (line) => {
      if (!line.trim()) return;
      let rec = null;
      try {
        rec = JSON.parse(line);
      } catch {
        /* not a record */
      }
      if (rec && typeof rec === 'object' && rec.system && rec.workload) {
        records.push(rec);
        sink.write(`${JSON.stringify(rec)}\n`);
        console.log(JSON.stringify(rec));
      } else {
        process.stderr.write(`[${label}] ${line}\n`);
      }
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    const timer = setTimeout(() => {
      timedOut = true;
      process.stderr.write(`[${label}] timed out after ${timeoutMs / 1000}s; killing\n`);
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      process.stderr.write(`[${label}] failed to start: ${err.message}\n`);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (buf) onLine(buf);
      const secs = ((Date.now() - t0) / 1000).toFixed(1);
      const ok = code === 0 && !timedOut;
      process.stderr.write(`[${label}] ${ok ? 'done' : `FAILED (code ${code}${signal ? `, ${signal}` : ''})`} in ${secs}s\n`);
      resolve({ code: ok ? 0 : (code || 1), records, timedOut });
    });
  });
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

function fmt(v) {
  if (v == null || Number.isNaN(v)) return '—';
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
}

function paramsLabel(p) {
  return Object.entries(p ?? {}).map(([k, v]) => `${k}=${typeof v === 'number' ? v.toLocaleString('en-US') : v}`).join(' ');
}

function table(records, haveDask, haveTls) {
  const rows = new Map();
  for (const r of records) {
    if (PEER_SYSTEMS.includes(r.system) || r.workload === 'bullmq-lost') continue;
    const key = `${r.workload}\u0000${JSON.stringify(r.params ?? {})}`;
    if (!rows.has(key)) rows.set(key, { workload: r.workload, params: r.params, unit: r.unit, by: {} });
    const row = rows.get(key);
    (row.by[r.system] ??= []).push(r.value);
  }
  const order = (w) => WORKLOADS.indexOf(GROUP_OF[w] ?? w);
  const sorted = [...rows.values()].sort((a, b) => order(a.workload) - order(b.workload));
  const head = ['workload', 'params', 'unit', 'better', 'skein', 'runs'];
  if (haveTls) head.push('skein-tls', 'TLS cost');
  if (haveDask) head.push('dask', 'dask-best', 'skein vs dask', 'skein vs dask-best');
  const lines = [head];
  for (const row of sorted) {
    const m = (sys) => (row.by[sys]?.length ? median(row.by[sys]) : null);
    const sk = m('skein');
    const dk = m('dask');
    const db = m('dask-best');
    const runs = Math.max(...Object.values(row.by).map((v) => v.length));
    const line = [row.workload, paramsLabel(row.params), row.unit, DIRECTION[row.workload] ?? '', fmt(sk), String(runs)];
    if (haveTls) {
      const tl = m('skein-tls');
      // how much worse TLS makes the figure, whichever way the unit points (+10%: 10% worse)
      const cost = sk == null || tl == null || !sk || !tl ? '—' : `${((DIRECTION[row.workload] === 'lower' ? tl / sk - 1 : 1 - tl / sk) * 100).toFixed(0)}%`;
      line.push(fmt(tl), cost);
    }
    if (haveDask) {
      line.push(fmt(dk), fmt(db));
      // > 1 means Skein is better, whichever way the unit points
      const adv = (other) => {
        if (sk == null || !other || !sk) return '—';
        const f = DIRECTION[row.workload] === 'lower' ? other / sk : sk / other;
        return `${f.toFixed(2)}x`;
      };
      line.push(adv(dk), adv(db));
    }
    lines.push(line);
  }
  return `| ${lines[0].join(' | ')} |\n| ${lines[0].map(() => '---').join(' | ')} |\n${lines
    .slice(1)
    .map((l) => `| ${l.join(' | ')} |`)
    .join('\n')}`;
}

/**
 * Skein beside the peers (and Dask) for map, latency and fan-in: medians, and how many times
 * better Skein's median is than BullMQ's better setting and than piscina's (> 1: Skein better).
 */
function peersTable(records) {
  const rows = new Map();
  let lost = 0;
  const lostDefault = [];
  for (const r of records) {
    if (r.workload === 'bullmq-lost') {
      lostDefault.push(r);
      continue;
    }
    if (!PEER_WORKLOADS.includes(GROUP_OF[r.workload] ?? r.workload)) continue;
    if (r.system.startsWith('bullmq')) lost += r.lost ?? 0;
    const key = `${r.workload}\u0000${JSON.stringify(r.params ?? {})}`;
    if (!rows.has(key)) rows.set(key, { workload: r.workload, params: r.params, unit: r.unit, by: {} });
    (rows.get(key).by[r.system] ??= []).push(r.value);
  }
  const systems = ['skein', 'dask', 'dask-best', ...PEER_SYSTEMS];
  const head = ['workload', 'params', 'unit', ...systems, 'skein vs bullmq best', 'skein vs piscina'];
  const lines = [head];
  const sorted = [...rows.values()].sort((a, b) => PEER_WORKLOADS.indexOf(GROUP_OF[a.workload] ?? a.workload) - PEER_WORKLOADS.indexOf(GROUP_OF[b.workload] ?? b.workload));
  for (const row of sorted) {
    if (!PEER_SYSTEMS.some((p) => row.by[p])) continue;
    const m = (sys) => (row.by[sys]?.length ? median(row.by[sys]) : null);
    const lower = DIRECTION[row.workload] === 'lower';
    const better = (a, b) => (a == null ? b : b == null ? a : lower ? Math.min(a, b) : Math.max(a, b));
    const sk = m('skein');
    const adv = (other) => {
      if (sk == null || !other || !sk) return '—';
      const f = lower ? other / sk : sk / other;
      return `${f < 0.1 ? f.toPrecision(2) : f.toFixed(2)}x`;
    };
    lines.push([row.workload, paramsLabel(row.params), row.unit, ...systems.map((x) => fmt(m(x))), adv(better(m('bullmq-c1'), m('bullmq-c50'))), adv(m('piscina'))]);
  }
  let out = `| ${head.join(' | ')} |\n| ${head.map(() => '---').join(' | ')} |\n${lines
    .slice(1)
    .map((l) => `| ${l.join(' | ')} |`)
    .join('\n')}`;
  out += `\n\nBullMQ completions lost (events stream long enough for the run): ${lost}.`;
  for (const r of lostDefault) out += `\nBullMQ with the default events stream length (${r.system}, map n=${r.params.n.toLocaleString('en-US')}): ${r.value} of ${r.params.n.toLocaleString('en-US')} completions lost.`;
  return out;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const workloads = expandWorkloads(opts.only, opts.short);
  const mode = opts.short ? 'short' : 'full';
  const info = machineInfo();

  let dask = null;
  let daskNote = null;
  let bestWorkloads = [];
  if (opts.skipDask) {
    daskNote = 'Dask skipped (--skip-dask): no Dask columns.';
  } else {
    dask = daskVersion();
    if (!dask) {
      daskNote = `Dask distributed not importable with ${PYTHON} (run bench/setup-dask.sh): no Dask columns.`;
    } else {
      const list = tryExec(PYTHON, [path.join(here, 'dask', 'bench_dask.py'), '--list-best']);
      bestWorkloads = list ? Object.keys(JSON.parse(list)) : [];
    }
  }

  let peersNote = null;
  if (workloads.includes('peers')) {
    const why = await peersMissing();
    if (why) {
      // CI installs everything (npm test, bench/setup.sh): a missing piece there is a failure
      if (process.env.CI && process.env.CI !== 'false' && process.env.CI !== '0') {
        console.error(`# peers: ${why}; CI must install them (tools/setup-test-deps.sh, bench/setup.sh, pnpm install)`);
        process.exit(1);
      }
      peersNote = `peers skipped: ${why}.`;
    }
  }

  const resultsDir = path.join(here, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outFile = path.join(resultsDir, `${stamp}-${mode}.jsonl`);
  const sink = createWriteStream(outFile);

  console.error(`# Skein benchmark suite (${mode}) — nproc ${info.nproc}, mem ${info.mem}, ${info.cpu}, node ${info.node}, dask ${dask ?? 'n/a'}, load ${info.load}, skein at ${info.commit}`);
  if (daskNote) console.error(`# ${daskNote}`);
  if (peersNote) console.error(`# ${peersNote}`);

  // Per-process time limits: crash-proofing, not timing assertions.
  const limitMs = (w) => (opts.short ? 120_000 : w === 'map' ? 1_800_000 : 900_000);
  const repeatArgs = opts.repeat ? ['--repeat', String(opts.repeat)] : [];
  const daskRepeat = opts.daskRepeat ?? opts.repeat;
  const daskRepeatArgs = daskRepeat ? ['--repeat', String(daskRepeat)] : [];
  const shortArgs = opts.short ? ['--short'] : [];

  const all = [];
  const failures = [];
  const t0 = Date.now();
  for (const w of workloads) {
    const jobs = [];
    if (w === 'peers') {
      // its jobs run inside map, latency and fanin, right after Skein's (below)
    } else if (OPT_IN.has(w)) {
      // bench/scale.mjs: how the cost grows with tasks and workers (Skein only, no Dask side yet).
      if (!opts.skipSkein) jobs.push(['skein', process.execPath, ['--expose-gc', path.join(here, 'scale.mjs'), '--part', w.slice(6), ...shortArgs, ...repeatArgs]]);
    } else if (SKEIN_ONLY.has(w)) {
      if (!opts.skipSkein) jobs.push(['skein', process.execPath, ['--expose-gc', path.join(here, 'skein', 'bench_skein.mjs'), '--workload', w, ...shortArgs, ...repeatArgs]]);
    } else if (!opts.skipSkein) {
      jobs.push(['skein', process.execPath, ['--expose-gc', path.join(here, 'skein', 'bench_skein.mjs'), '--workload', w, ...shortArgs, ...repeatArgs]]);
      // (memory's separate client process has no credentials: plaintext only)
      if (opts.tls && w !== 'memory' && !DASK_BEST_ONLY.has(w)) jobs.push(['skein-tls', process.execPath, ['--expose-gc', path.join(here, 'skein', 'bench_skein.mjs'), '--workload', w, '--tls', ...shortArgs, ...repeatArgs]]);
    }
    if (workloads.includes('peers') && !peersNote && PEER_WORKLOADS.includes(w)) {
      // right after Skein's runs of the same workload, so that the ratios compare adjacent minutes
      const wl = ['--workload', w, ...shortArgs, ...repeatArgs];
      jobs.push(['bullmq-c1', process.execPath, [path.join(here, 'peers', 'bench_bullmq.mjs'), '--concurrency', '1', ...wl]]);
      jobs.push(['bullmq-c50', process.execPath, [path.join(here, 'peers', 'bench_bullmq.mjs'), '--concurrency', '50', ...wl]]);
      jobs.push(['piscina', process.execPath, [path.join(here, 'peers', 'bench_piscina.mjs'), ...wl]]);
    }
    if (dask && w !== 'peers' && !SKEIN_ONLY.has(w) && !OPT_IN.has(w)) {
      const py = path.join(here, 'dask', 'bench_dask.py');
      if (!DASK_BEST_ONLY.has(w)) jobs.push(['dask', PYTHON, [py, '--workload', w, ...shortArgs, ...daskRepeatArgs]]);
      if (bestWorkloads.includes(w)) jobs.push(['dask-best', PYTHON, [py, '--workload', w, '--best', ...shortArgs, ...daskRepeatArgs]]);
    }
    for (const [sys, cmd, args] of jobs) {
      const label = `${sys}:${w}`;
      process.stderr.write(`[${label}] start\n`);
      const res = await runChild(label, cmd, args, limitMs(w), sink);
      all.push(...res.records);
      if (res.code !== 0) failures.push(label);
    }
  }
  await new Promise((r) => sink.end(r));

  const total = ((Date.now() - t0) / 1000).toFixed(0);
  console.log('');
  console.log(`Medians (${mode} mode, ${total}s; nproc ${info.nproc}, ${info.mem} RAM, ${info.cpu}, node ${info.node}, dask ${dask ?? 'n/a'}, skein at ${info.commit}):`);
  console.log('');
  console.log(table(all, Boolean(dask), all.some((r) => r.system === 'skein-tls')));
  console.log('');
  if (workloads.includes('peers') && !peersNote) {
    console.log('Skein beside BullMQ 6.7 on Redis (2 worker processes, concurrency 1 and 50) and piscina 5 (2 threads, one run() per task), medians:');
    console.log('');
    console.log(peersTable(all));
    console.log('');
    console.log('"skein vs bullmq best": Skein\'s median over the better of BullMQ\'s two settings (latency: theirs over Skein\'s); "skein vs piscina" likewise; > 1: Skein better.');
    console.log('');
  }
  console.log(`Load average before: ${info.load}; after: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (other processes on the machine skew the figures).`);
  console.log('');
  if (opts.tls) console.log('"TLS cost": how much worse the skein-tls median is than the plaintext one (+20%: 20% fewer tasks/s or MB/s, or 20% more ms).');
  if (dask) console.log('"skein vs dask": how many times better Skein\'s median is (> 1: Skein better; higher-is-better units skein/dask, lower-is-better units dask/skein).');
  if (daskNote) console.log(`Note: ${daskNote}`);
  if (peersNote) console.log(`Note: ${peersNote}`);
  console.log(`Records: ${path.relative(process.cwd(), outFile)}`);
  if (failures.length) {
    console.log(`FAILED workloads: ${failures.join(', ')}`);
    process.exit(1);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

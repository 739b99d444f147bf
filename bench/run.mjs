#!/usr/bin/env node
// Skein vs Dask distributed benchmark suite.
//
//   node bench/run.mjs [--short] [--only name[,name...]] [--skip-dask] [--skip-skein] [--repeat N] [--dask-repeat N] [--tls]
//
// --tls also runs every Skein workload but memory on a cluster with TLS ("skein-tls").
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
const WORKLOADS = ['map', 'latency', 'tree', 'transfer', 'memory', 'startup', 'scale-tasks', 'scale-workers'];
// Run only when named with --only (minutes at full size; bench/scale.mjs, Skein only).
const OPT_IN = new Set(['scale-tasks', 'scale-workers']);
// "higher" = higher is better
const DIRECTION = {
  map: 'higher', 'latency-p50': 'lower', 'latency-p99': 'lower', tree: 'higher',
  transfer: 'higher', memory: 'lower', startup: 'lower',
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
      console.log(`workloads: ${WORKLOADS.join(', ')}`);
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
    const key = `${r.workload}\u0000${JSON.stringify(r.params ?? {})}`;
    if (!rows.has(key)) rows.set(key, { workload: r.workload, params: r.params, unit: r.unit, by: {} });
    const row = rows.get(key);
    (row.by[r.system] ??= []).push(r.value);
  }
  const order = (w) => {
    const base = w.replace(/-p\d+$/, '');
    return WORKLOADS.indexOf(base) * 10 + (w.endsWith('p99') ? 1 : 0);
  };
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

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const workloads = opts.only ?? WORKLOADS.filter((w) => !OPT_IN.has(w));
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

  const resultsDir = path.join(here, 'results');
  mkdirSync(resultsDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const outFile = path.join(resultsDir, `${stamp}-${mode}.jsonl`);
  const sink = createWriteStream(outFile);

  console.error(`# Skein benchmark suite (${mode}) — nproc ${info.nproc}, mem ${info.mem}, ${info.cpu}, node ${info.node}, dask ${dask ?? 'n/a'}, load ${info.load}, skein at ${info.commit}`);
  if (daskNote) console.error(`# ${daskNote}`);

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
    if (OPT_IN.has(w)) {
      // bench/scale.mjs: how the cost grows with tasks and workers (Skein only, no Dask side yet).
      if (!opts.skipSkein) jobs.push(['skein', process.execPath, ['--expose-gc', path.join(here, 'scale.mjs'), '--part', w.slice(6), ...shortArgs, ...repeatArgs]]);
    } else if (!opts.skipSkein) {
      jobs.push(['skein', process.execPath, ['--expose-gc', path.join(here, 'skein', 'bench_skein.mjs'), '--workload', w, ...shortArgs, ...repeatArgs]]);
      // (memory's separate client process has no credentials: plaintext only)
      if (opts.tls && w !== 'memory') jobs.push(['skein-tls', process.execPath, ['--expose-gc', path.join(here, 'skein', 'bench_skein.mjs'), '--workload', w, '--tls', ...shortArgs, ...repeatArgs]]);
    }
    if (dask && !OPT_IN.has(w)) {
      const py = path.join(here, 'dask', 'bench_dask.py');
      jobs.push(['dask', PYTHON, [py, '--workload', w, ...shortArgs, ...daskRepeatArgs]]);
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
  console.log(`Load average before: ${info.load}; after: ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} (other processes on the machine skew the figures).`);
  console.log('');
  if (opts.tls) console.log('"TLS cost": how much worse the skein-tls median is than the plaintext one (+20%: 20% fewer tasks/s or MB/s, or 20% more ms).');
  if (dask) console.log('"skein vs dask": how many times better Skein\'s median is (> 1: Skein better; higher-is-better units skein/dask, lower-is-better units dask/skein).');
  if (daskNote) console.log(`Note: ${daskNote}`);
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

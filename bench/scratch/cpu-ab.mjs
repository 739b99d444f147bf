// CPU-time A/B (issue 18): on a shared 2-core machine wall-clock rates swing ±50% run to run, CPU
// time per task much less. Alternate builds, several rounds:
//   node bench/scratch/cpu-ab.mjs /work/main; node bench/scratch/cpu-ab.mjs $PWD   (CPUAB_GRPC=1: Client inProcess: false)
// One JSON line: per phase (three 20k maps on a fresh LocalCluster, one 100k map, 1,000
// submit-then-await no-ops) the wall rate and the CPU µs per task of this process (client +
// scheduler) and of the two worker processes (from /proc).
import { performance } from 'node:perf_hooks';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
process.env.SKEIN_LOG_LEVEL ??= 'warn';
const root = process.argv[2];
const { LocalCluster, Client } = await import(`${root}/packages/skein/dist/index.js`);
const cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 1 });
const client = await Client.connect(cluster, process.env.CPUAB_GRPC ? { inProcess: false } : {});
let info;
for (;;) { info = await client.schedulerInfo(); if (info.workers.length >= 2) break; await sleep(10); }
const pids = info.workers.map((w) => w.pid);
const tick = 100; // CLK_TCK
const procCpu = (pid) => { try { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * (1e6 / tick); } catch { return NaN; } };
const snap = () => ({ main: (({ user, system }) => user + system)(process.cpuUsage()), w: pids.reduce((s, p) => s + procCpu(p), 0), t: performance.now() });
const noop = (x) => x;
const out = { root: root.split('/').pop(), inProcess: client.inProcess ?? false };
let off = 0;
async function map(label, n) {
  const xs = Array.from({ length: n }, (_, i) => i + off); off += n;
  const a = snap();
  const f = client.map(noop, xs);
  const v = await client.gather(f);
  const b = snap();
  if (v[n - 1] !== xs[n - 1]) throw new Error('bad');
  out[label] = { rate: Math.round(n / ((b.t - a.t) / 1000)), mainUs: +((b.main - a.main) / n).toFixed(1), workersUs: +((b.w - a.w) / n).toFixed(1) };
  client.release(f); await sleep(300);
}
await map('map20k_1', 20000);
await map('map20k_2', 20000);
await map('map20k_3', 20000);
await map('map100k', 100000);
{
  await client.submitWith({ pure: false }, noop, -1).result();
  const n = 1000, times = [];
  const a = snap();
  for (let i = 0; i < n; i++) { const t0 = performance.now(); await client.submitWith({ pure: false }, noop, i).result(); times.push(performance.now() - t0); }
  const b = snap();
  times.sort((x, y) => x - y);
  out.latency = { p50: +times[n / 2].toFixed(3), p99: +times[Math.round(0.99 * n) - 1].toFixed(3), mainUs: +((b.main - a.main) / n).toFixed(1), workersUs: +((b.w - a.w) / n).toFixed(1) };
}
console.log(JSON.stringify(out));
await client.close(); await cluster.close();

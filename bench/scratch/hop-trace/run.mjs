// traced latency (see README.md): node bench/scratch/hop-trace/run.mjs <repo-root> [n]
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
process.env.SKEIN_LOG_LEVEL ??= 'warn';
const root = process.argv[2]; const n = Number(process.argv[3] ?? 500);
const { LocalCluster, Client } = await import(`${root}/packages/skein/dist/index.js`);
const cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 1 });
const client = await Client.connect(cluster, process.env.LT_GRPC ? { inProcess: false } : {});
for (;;) { const i = await client.schedulerInfo(); if (i.workers.length >= 2) break; await sleep(10); }
const noop = (x) => x;
await client.submitWith({ pure: false }, noop, -1).result();
for (let i = 0; i < 200; i++) await client.submitWith({ pure: false }, noop, i).result();
for (let i = 0; i < n; i++) {
  const t = process.hrtime.bigint();
  const f = client.submitWith({ pure: false }, noop, i);
  __LTat('C0submit', f.key, t);
  await f.result();
  __LT('C9result', f.key);
}
await client.close(); await cluster.close();

#!/usr/bin/env node
// piscina side of the peer benchmarks (bench/run.mjs --only peers): the ceiling of a bare thread
// pool on one machine, no scheduler, no keys, no results kept. A pool of 2 threads
// (minThreads = maxThreads = 2, as Skein's 2 workers x 1 thread), one `pool.run(x)` per task,
// the same workloads as the Skein side:
//   map      n no-ops: Promise.all of n `run` calls, from the first call to the last result
//   latency  sequential `await pool.run(i)`, p50/p99
//   fanin    leaves as in map; each group's sum is run once that group's leaves are back (the
//            driver plays the scheduler: Promise.all per group), then the root over the group sums
//
//   node bench/peers/bench_piscina.mjs [--workload map|latency|fanin] [--short] [--repeat N]
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { round, range, sizes, emitter, percentiles, parseArgs } from './common.mjs';

const args = parseArgs(process.argv.slice(2));
const emit = emitter('piscina', { setting: 'piscina 5, 2 threads, one run() per task' });
const log = (...a) => console.error('[piscina]', ...a);

const { Piscina } = await import('piscina').catch((err) => {
  throw new Error(`cannot import piscina (run pnpm install at the repo root): ${err.message}`);
});

async function main() {
  const S = sizes(args.short);
  const pool = new Piscina({ filename: fileURLToPath(new URL('./piscina_task.mjs', import.meta.url)), minThreads: 2, maxThreads: 2 });
  try {
    await Promise.all([pool.run(0), pool.run(1)]); // both threads up
    log(`${pool.threads.length} threads`);
    const want = (w) => args.workload === null || args.workload === w;
    let off = 0;
    for (const n of want('map') ? S.map : []) {
      for (let r = 0; r < args.repeat; r++) {
        const xs = range(off, off + n);
        off += n;
        const t0 = performance.now();
        const vals = await Promise.all(xs.map((x) => pool.run(x)));
        const dt = (performance.now() - t0) / 1000;
        if (vals.length !== n || vals[0] !== xs[0] || vals[n - 1] !== xs[n - 1]) throw new Error('map: wrong results');
        emit('map', { n }, round(n / dt), 'tasks/s', { seconds: round(dt, 4) });
      }
    }
    for (let r = 0; r < (want('latency') ? args.repeat : 0); r++) {
      await pool.run(-1);
      const times = [];
      for (let i = 0; i < S.latency; i++) {
        const t0 = performance.now();
        const v = await pool.run(i);
        times.push(performance.now() - t0);
        if (v !== i) throw new Error(`latency: got ${v}, expected ${i}`);
      }
      const { p50, p99 } = percentiles(times);
      emit('latency-p50', { n: S.latency }, round(p50, 3), 'ms');
      emit('latency-p99', { n: S.latency }, round(p99, 3), 'ms');
    }
    const { leaves, group } = S.fanin;
    const ntasks = leaves + leaves / group + 1;
    for (let r = 0; r < (want('fanin') ? args.repeat : 0); r++) {
      const base = r * leaves;
      const t0 = performance.now();
      const groups = [];
      for (let g = 0; g < leaves / group; g++) {
        const kids = [];
        for (let i = g * group; i < (g + 1) * group; i++) kids.push(pool.run(base + i));
        groups.push(Promise.all(kids).then((xs) => pool.run(xs, { name: 'sum' })));
      }
      const total = await pool.run(await Promise.all(groups), { name: 'sum' });
      const dt = (performance.now() - t0) / 1000;
      const expect = (leaves * (leaves - 1)) / 2 + base * leaves;
      if (total !== expect) throw new Error(`fanin: got ${total}, expected ${expect}`);
      emit('fanin', { leaves, group, tasks: ntasks }, round(ntasks / dt), 'tasks/s', { seconds: round(dt, 4) });
    }
  } finally {
    await pool.destroy();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error('[piscina] FAILED:', err?.stack ?? err);
    process.exit(1);
  },
);

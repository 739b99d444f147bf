#!/usr/bin/env node
// What watching the dashboard costs the scheduler: a map of 20,000 no-op tasks on a
// LocalCluster(2 workers, 1 thread each), with the /status page open in a headless Chromium and
// with it closed, 3 runs each (interleaved, after a warm-up), printing the median tasks/s both ways.
// A third mode reads the page's event stream with curl (no browser), which separates the
// scheduler's own cost (snapshots, serialization) from the browser's CPU use on the same machine.
//
//   node bench/dashboard-overhead.mjs [--n 20000] [--runs 3]
//
// Needs a build (pnpm build) and Debian's chromium (tools/setup-test-deps.sh installs it;
// CHROMIUM_PATH overrides /usr/bin/chromium). playwright-core comes from packages/skein's
// devDependencies.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

process.env.SKEIN_LOG_LEVEL ??= 'warn';
const { values } = parseArgs({ options: { n: { type: 'string', default: '20000' }, runs: { type: 'string', default: '3' } } });
const N = Number(values.n);
const RUNS = Number(values.runs);
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

const { LocalCluster, Client } = await import('skein');
const { chromium } = createRequire(new URL('../packages/skein/package.json', import.meta.url))('playwright-core');

const noop = (x) => x;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);

const cluster = await LocalCluster.start({ nWorkers: 2, threadsPerWorker: 1 });
const client = await Client.connect(cluster);
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
console.error(`dashboard at: ${cluster.dashboardLink}`);

let offset = 0;
/** CPU time of this process (scheduler and client; Chromium and the workers are other processes) per task. */
let lastCpuUsPerTask = 0;
const cpuPerTask = { closed: [], open: [], stream: [] };
async function run() {
  const xs = range(offset, offset + N); // fresh keys each run
  offset += N;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const futs = client.map(noop, xs);
  const vals = await client.gather(futs);
  const dt = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  lastCpuUsPerTask = (cpu.user + cpu.system) / N;
  if (vals.length !== N || vals[N - 1] !== xs[N - 1]) throw new Error('wrong results');
  client.release(futs);
  await sleep(500); // let releases settle
  return N / dt;
}

const results = { closed: [], open: [], stream: [] };
try {
  await run(); // warm-up: JIT, worker threads, function caches
  for (let r = 0; r < RUNS; r++) {
    results.closed.push(await run());
    cpuPerTask.closed.push(lastCpuUsPerTask);
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    await page.goto(cluster.dashboardLink);
    await page.locator('#workers tbody tr').nth(1).waitFor();
    results.open.push(await run());
    cpuPerTask.open.push(lastCpuUsPerTask);
    const drawn = await page.locator('#h-completed').textContent();
    await page.close();
    const curl = spawn('curl', ['-sN', cluster.dashboardLink.replace('/status', '/api/events')], { stdio: ['ignore', 'ignore', 'ignore'] });
    await sleep(300);
    results.stream.push(await run());
    cpuPerTask.stream.push(lastCpuUsPerTask);
    curl.kill();
    console.error(
      `run ${r + 1}: closed ${results.closed[r].toFixed(0)} tasks/s, page open ${results.open[r].toFixed(0)} tasks/s ` +
        `(it showed ${drawn} completed), event stream only ${results.stream[r].toFixed(0)} tasks/s`,
    );
  }
} finally {
  await browser.close();
  await client.close();
  await cluster.close();
}
const closed = median(results.closed);
const open = median(results.open);
const stream = median(results.stream);
console.log(`map of ${N} no-op tasks, LocalCluster(2 workers), ${RUNS} runs each:`);
console.log(`  page closed: median ${closed.toFixed(0)} tasks/s  (${results.closed.map((x) => x.toFixed(0)).join(', ')})`);
console.log(`  page open:   median ${open.toFixed(0)} tasks/s  (${results.open.map((x) => x.toFixed(0)).join(', ')})`);
console.log(`  stream only: median ${stream.toFixed(0)} tasks/s  (${results.stream.map((x) => x.toFixed(0)).join(', ')})`);
console.log(
  `  scheduler-process CPU per task (median): closed ${median(cpuPerTask.closed).toFixed(1)} µs, ` +
    `page open ${median(cpuPerTask.open).toFixed(1)} µs, stream only ${median(cpuPerTask.stream).toFixed(1)} µs`,
);
console.log(`  page open vs closed: ${(((open - closed) / closed) * 100).toFixed(1)}%; event stream only vs closed: ${(((stream - closed) / closed) * 100).toFixed(1)}%`);

// The main demo: a LocalCluster on every core, a map, a task graph and a reduction.
// Run with `npm run demo` from the repository root (it installs and builds first);
// `npm run demo -- --keep` keeps the cluster and its dashboard up until Ctrl-C.
import { LocalCluster, Client, delayed } from 'skein';

const t0 = performance.now();
const cluster = await LocalCluster.start();
const client = await Client.connect(cluster);
const info = await client.schedulerInfo();
console.log(`Scheduler at:   ${cluster.schedulerAddress}`);
console.log(`dashboard at:   ${cluster.dashboardLink || '(no dashboard in this build)'}`);
console.log(`Workers:        ${info.workers.map((w) => `${w.name} (${w.nthreads} thread)`).join(', ')}`);
console.log(`Started in ${(performance.now() - t0).toFixed(0)} ms`);

// 1. submit and map
const inc = (x) => x + 1;
const one = client.submit(inc, 41);
console.log('submit(inc, 41)       =', await one.result());
const t1 = performance.now();
const squares = client.map((x) => x * x, Array.from({ length: 10_000 }, (_, i) => i));
const values = await client.gather(squares);
const ms = performance.now() - t1;
console.log(`map of 10,000 tasks   = sum ${values.reduce((a, b) => a + b, 0)} in ${ms.toFixed(0)} ms (${Math.round(10_000 / (ms / 1000))} tasks/s)`);

// 2. a graph: futures as arguments, nested in arrays and objects
const a = client.submit((x) => x * 2, 10);
const b = client.submit((x) => x * 3, 10);
const c = client.submit(({ pair: [x, y] }) => x + y, { pair: [a, b] });
console.log('graph (2*10 + 3*10)   =', await c.result());

// 3. a lazy graph with delayed: a tree reduction of 1..1024
const add = delayed((x, y) => x + y);
let level = Array.from({ length: 1024 }, (_, i) => i + 1);
while (level.length > 1) {
  const next = [];
  for (let i = 0; i < level.length; i += 2) next.push(add(level[i], level[i + 1]));
  level = next;
}
const total = client.compute(level[0]);
console.log('tree sum of 1..1024   =', await total.result());

// 4. errors come back with the remote message and stack
const bad = client.submit((x) => {
  throw new RangeError(`no good: ${x}`);
}, 7);
try {
  await bad.result();
} catch (err) {
  console.log('remote error          =', `${err.name}: ${err.message}`);
}

// 5. which worker ran what
console.log('story of', c.key, '=', (await client.story(c)).map((t) => `${t.start}->${t.finish}`).join(', '));

if (process.argv.includes('--keep')) {
  // Keep the cluster (and its dashboard) up, with a little work every second, until Ctrl-C.
  console.log(`Open ${cluster.dashboardLink} ; Ctrl-C to stop.`);
  const timer = setInterval(() => {
    const batch = client.mapWith({ pure: false }, async (x) => {
      await new Promise((r) => setTimeout(r, 20));
      return x;
    }, Array.from({ length: 200 }, (_, i) => i));
    client.gather(batch).then(() => batch.forEach((f) => f.release()), () => undefined);
  }, 1000);
  await new Promise((resolve) => process.once('SIGINT', resolve));
  clearInterval(timer);
}

await client.close();
await cluster.close();
console.log('closed cleanly');

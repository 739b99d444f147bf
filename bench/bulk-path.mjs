// The bulk path alone, plaintext and encrypted, between two processes: GB/s, CPU-seconds per GB
// and minor page faults per GB on each side (the figures in packages/core-worker/README.md,
// "The bulk path and TLS"). After `pnpm build`:
//   node bench/bulk-path.mjs packages/core-worker/dist/server/bulk.js [MB=200] [rounds=4]
//   TB_ONLY=enc|plain selects one side; glibc's allocator settings go in the environment, e.g.
//   MALLOC_TRIM_THRESHOLD_=67108864 MALLOC_MMAP_THRESHOLD_=33554432 node bench/bulk-path.mjs ...
// usage: node bench.mjs <bulk.js path> <MB> <rounds>
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
const [,, modArg, mbArg = '200', roundsArg = '4'] = process.argv;
const modPath = (await import("node:url")).pathToFileURL((await import("node:path")).resolve(modArg)).href;
const MB = Number(mbArg) * 1e6;
if (process.env.TB_CHILD) {
  const { BulkServer } = await import(modPath);
  const plain = await BulkServer.start('127.0.0.1', {});
  const enc = await BulkServer.start('127.0.0.1', { encrypted: true });
  const data = randomBytes(MB);
  process.on('message', (m) => {
    if (m.cmd === 'offer') { const s = m.enc ? enc : plain; const t = s.offer(data); process.send({ token: t.token, key: t.key.toString('hex'), port: s.port, cpu: process.cpuUsage(), flt: process.resourceUsage().minorPageFault }); }
    if (m.cmd === 'cpu') process.send({ cpu: process.cpuUsage(), flt: process.resourceUsage().minorPageFault });
    if (m.cmd === 'exit') process.exit(0);
  });
  process.send({ ready: true });
} else {
  const { fetchBulk } = await import(modPath);
  const child = fork(new URL(import.meta.url).pathname, process.argv.slice(2), { env: { ...process.env, TB_CHILD: '1' } });
  const next = () => new Promise((r) => child.once('message', r));
  await next();
  for (let r = 0; r < Number(roundsArg); r++) for (const enc of (process.env.TB_ONLY==="enc"?[true]:process.env.TB_ONLY==="plain"?[false]:[false,true])) {
    child.send({ cmd: 'offer', enc }); const o = await next();
    const f0 = process.resourceUsage().minorPageFault; const c0 = process.cpuUsage(); const t0 = performance.now();
    const buf = await fetchBulk('127.0.0.1', o.port, o.token, MB, 'peer', enc ? Buffer.from(o.key, 'hex') : undefined);
    const dt = (performance.now() - t0) / 1000; const c1 = process.cpuUsage(c0);
    child.send({ cmd: 'cpu' }); const o2 = await next();
    const scpu = (o2.cpu.user + o2.cpu.system - o.cpu.user - o.cpu.system) / 1e6;
    const rcpu = (c1.user + c1.system) / 1e6; const rf = (process.resourceUsage().minorPageFault - f0) / (MB/1e9) / 1000; const sf = (o2.flt - o.flt) / (MB/1e9) / 1000;
    console.log(enc ? 'enc  ' : 'plain', (MB / dt / 1e9).toFixed(2), 'GB/s', 'sendCPU/GB', (scpu / (MB / 1e9)).toFixed(2), 'recvCPU/GB', (rcpu / (MB / 1e9)).toFixed(2), 'kfaults/GB send', sf.toFixed(0), 'recv', rf.toFixed(0), buf.length === MB);
  }
  child.send({ cmd: 'exit' });
}

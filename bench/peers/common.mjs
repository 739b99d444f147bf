// Shared by the peer benchmarks (BullMQ, piscina): records, sizes, a Redis server of our own.
import { spawn, execFileSync } from 'node:child_process';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export const round = (x, d = 1) => Math.round(x * 10 ** d) / 10 ** d;
export const range = (a, b) => Array.from({ length: b - a }, (_, i) => a + i);

/** Workload sizes, the same as the Skein and Dask sides' (bench_skein.mjs, bench_dask.py). */
export function sizes(short) {
  return {
    map: short ? [2000] : [20_000, 100_000],
    latency: short ? 100 : 1000,
    // fan-in: `width` leaves summed in groups of `group`, then the group sums summed in one task
    fanin: short ? { leaves: 1000, group: 10 } : { leaves: 10_000, group: 100 },
  };
}

export function emitter(system, extraFields = {}) {
  return (workload, params, value, unit, extra = {}) =>
    process.stdout.write(`${JSON.stringify({ system, workload, params, value, unit, ...extraFields, ...extra })}\n`);
}

export function percentiles(times) {
  const s = [...times].sort((a, b) => a - b);
  const p50 = s.length % 2 ? s[s.length >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  const p99 = s[Math.min(s.length - 1, Math.round(0.99 * s.length) - 1)];
  return { p50, p99 };
}

export function parseArgs(argv, extra = {}) {
  const args = { short: false, repeat: null, workload: null, ...extra };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--short') args.short = true;
    else if (a === '--repeat') args.repeat = Number(argv[++i]);
    else if (a === '--concurrency') args.concurrency = Number(argv[++i]);
    else if (a === '--workload') args.workload = argv[++i];
    else if (a === '--worker') args.worker = true;
    else if (a === '--redis-port') args.redisPort = Number(argv[++i]);
    else if (a === '--queue') args.queue = argv[++i];
    else throw new Error(`unknown argument ${a}`);
  }
  args.repeat ??= args.short ? 1 : 3;
  if (args.workload !== null && !['map', 'latency', 'fanin'].includes(args.workload)) {
    throw new Error(`--workload must be map, latency or fanin (or absent: all three), not ${args.workload}`);
  }
  return args;
}

/** The redis-server binary, or null (Debian's redis-server package: bench/setup.sh installs it). */
export function redisServerPath() {
  for (const p of [process.env.SKEIN_BENCH_REDIS_SERVER, '/usr/bin/redis-server', '/usr/local/bin/redis-server']) {
    if (!p) continue;
    try {
      execFileSync(p, ['--version'], { stdio: 'ignore' });
      return p;
    } catch {
      /* not this one */
    }
  }
  return null;
}

async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve, reject) => srv.listen(0, '127.0.0.1', resolve).once('error', reject));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

/**
 * Starts a private redis-server on a free loopback port (no persistence, no config file) and
 * resolves once it answers; `stop()` ends it. The bench owns this process: nothing else uses it.
 */
export async function startRedis(log) {
  const bin = redisServerPath();
  if (!bin) throw new Error('redis-server not found (install it with: bash bench/setup.sh, or apt-get install redis-server)');
  const port = await freePort();
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', '--daemonize', 'no', '--loglevel', 'warning'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  // whatever way this process ends, the server ends with it
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with ${child.exitCode}: ${stderr.trim()}`);
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.write('PING\r\n');
      });
      s.once('data', (d) => {
        s.destroy();
        resolve(String(d).startsWith('+PONG'));
      });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`redis-server on port ${port} did not answer within 10 s: ${stderr.trim()}`);
    }
    await sleep(20);
  }
  log(`redis-server ${bin} on 127.0.0.1:${port} (pid ${child.pid})`);
  return {
    port,
    async stop() {
      process.off('exit', killOnExit);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

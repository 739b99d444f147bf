#!/usr/bin/env node
// BullMQ side of the peer benchmarks (bench/run.mjs --only peers), the same workloads as the
// Skein side: map of no-ops, submit-then-await latency, fan-in (leaves -> groups -> one root).
//
//   node bench/peers/bench_bullmq.mjs --concurrency 50 [--workload map|latency|fanin] [--short] [--repeat N]
//
// Starts its own redis-server (Debian's, on a free loopback port, no persistence) and stops it at
// the end; runs 2 BullMQ worker processes (`new Worker(queue, fn, { concurrency })`, the processor
// in the worker process, not sandboxed), so the setup matches Skein's LocalCluster of 2 workers.
// The driver (this process) adds the jobs (`addBulk` in chunks of 1,000; a FlowProducer tree for
// the fan-in) and learns of completions from a QueueEvents stream reader, as BullMQ users do.
//
// Completions are counted: a run ends when every job's "completed" event has arrived, or, when
// Redis says nothing is left waiting or active but events are missing, after a grace second; the
// record then says how many completions were lost (`lost`). The queue is created with an events
// stream long enough for the largest run (`streams.events.maxLen`), so none are: BullMQ's default
// (~10,000 events, several per job) is trimmed under a reader that falls behind, which then
// silently misses completions. In full mode, with concurrency 50, one extra 100,000-job map runs on
// a second queue with the default length and records how many it lost (workload "bullmq-lost").
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { round, range, sizes, emitter, percentiles, parseArgs, startRedis } from './common.mjs';

const args = parseArgs(process.argv.slice(2), { concurrency: 50 });
const SYSTEM = `bullmq-c${args.concurrency}`;
const log = (...a) => console.error(`[${SYSTEM}${args.worker ? ' worker' : ''}]`, ...a);
const emit = emitter(SYSTEM, { setting: `concurrency ${args.concurrency} per worker process, 2 worker processes` });

const { Queue, QueueEvents, Worker, FlowProducer } = await import('bullmq').catch((err) => {
  throw new Error(`cannot import bullmq (run pnpm install at the repo root): ${err.message}`);
});

const connection = (port) => ({ host: '127.0.0.1', port, maxRetriesPerRequest: null });
const ADD_CHUNK = 1000;

// ---- worker process ----
if (args.worker) {
  const processor = async (job) => {
    if (job.name === 'sum') {
      let s = 0;
      for (const v of Object.values(await job.getChildrenValues())) s += v;
      return s;
    }
    return job.data.x;
  };
  const workers = args.queue.split(',').map((q) => new Worker(q, processor, { connection: connection(args.redisPort), concurrency: args.concurrency }));
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  process.stdout.write('READY\n');
  // stdin closes when the driver is done (or dies)
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.once('end', resolve));
  await Promise.all(workers.map((w) => w.close()));
  process.exit(0);
}

// ---- driver ----
class Side {
  constructor(name, port, queueOpts) {
    this.name = name;
    this.queue = new Queue(name, { connection: connection(port), ...queueOpts, defaultJobOptions: { removeOnComplete: true, removeOnFail: false } });
    this.flow = new FlowProducer({ connection: connection(port) });
    // from the stream's beginning: no completion can slip past before the reader's first XREAD
    this.events = new QueueEvents(name, { connection: connection(port), lastEventId: '0-0' });
    this.onCompleted = null;
    this.failed = [];
    this.events.on('completed', (e) => this.onCompleted?.(e.jobId, e.returnvalue));
    this.events.on('failed', (e) => this.failed.push(`${e.jobId}: ${e.failedReason}`));
  }

  async ready() {
    await Promise.all([this.queue.waitUntilReady(), this.events.waitUntilReady(), this.flow.waitUntilReady()]);
  }

  /** Jobs neither finished nor failed, per Redis. */
  async left() {
    const c = await this.queue.getJobCounts('wait', 'active', 'delayed', 'prioritized', 'waiting-children', 'paused');
    return Object.values(c).reduce((a, b) => a + b, 0);
  }

  /**
   * Resolves when the completions of all `ids` have been seen (returns { end, lost: 0 }), or when
   * Redis has nothing left but events are still missing a second later ({ end, lost }). `end` is
   * the time the last completion arrived (or Redis said the queue was drained).
   */
  track(ids, onValue) {
    const want = new Set(ids);
    let seen = 0;
    let end = 0;
    let resolveAll;
    const all = new Promise((r) => (resolveAll = r));
    this.onCompleted = (id, value) => {
      if (!want.delete(id)) return;
      seen++;
      onValue?.(id, value);
      if (want.size === 0) {
        end = performance.now();
        resolveAll();
      }
    };
    let added = false;
    const done = (async () => {
      let drainedAt = 0;
      for (;;) {
        const r = await Promise.race([all.then(() => 'all'), sleep(250).then(() => 'tick')]);
        if (r === 'all') return { end, lost: 0, seen };
        if (this.failed.length) throw new Error(`${this.name}: jobs failed: ${this.failed.slice(0, 3).join('; ')}`);
        if (!added) continue; // jobs still being added: Redis's counts say nothing yet
        if ((await this.left()) > 0) drainedAt = 0;
        else drainedAt ||= performance.now();
        if (drainedAt && performance.now() - drainedAt > 1000) return { end: drainedAt, lost: want.size, seen };
      }
    })();
    // call once every job has been added
    done.added = () => (added = true);
    return done;
  }

  async close() {
    this.onCompleted = null;
    await Promise.all([this.events.close(), this.flow.close()]);
    await this.queue.close();
  }
}

async function mapRun(side, tag, n, off) {
  const xs = range(off, off + n);
  const ids = xs.map((x, i) => `${tag}-${i}`);
  let sum = 0;
  const t0 = performance.now();
  const tracked = side.track(ids, (_id, v) => (sum += v));
  for (let i = 0; i < n; i += ADD_CHUNK) {
    const jobs = [];
    for (let j = i; j < Math.min(n, i + ADD_CHUNK); j++) jobs.push({ name: 'noop', data: { x: xs[j] }, opts: { jobId: ids[j] } });
    await side.queue.addBulk(jobs);
  }
  tracked.added();
  const { end, lost, seen } = await tracked;
  const dt = (end - t0) / 1000;
  const expect = (n * (2 * off + n - 1)) / 2;
  if (!lost && sum !== expect) throw new Error(`map: sum ${sum}, expected ${expect}`);
  return { dt, lost, seen };
}

async function main() {
  const S = sizes(args.short);
  const redis = await startRedis(log);
  const qname = `skein-bench-${process.pid}`;
  const qDefault = `${qname}-default-events`;
  const children = [];
  try {
    // The events stream must outlast the reader's lag over the largest run: every job writes
    // several events (added, waiting, active, completed, ...), so 10 per job of the largest run.
    const biggest = Math.max(...S.map, S.fanin.leaves * 2);
    const side = new Side(qname, redis.port, { streams: { events: { maxLen: 10 * biggest } } });
    const want = (w) => args.workload === null || args.workload === w;
    const sideDefault = args.short || args.concurrency !== 50 || !want('map') ? null : new Side(qDefault, redis.port, {});
    await side.ready();
    await sideDefault?.ready();
    const queues = sideDefault ? `${qname},${qDefault}` : qname;
    for (let w = 0; w < 2; w++) {
      const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--worker', '--redis-port', String(redis.port), '--queue', queues, '--concurrency', String(args.concurrency)], {
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      children.push(child);
      const { value } = await createInterface({ input: child.stdout })[Symbol.asyncIterator]().next();
      if (value?.trim() !== 'READY') throw new Error(`bullmq worker ${w} said ${JSON.stringify(value)}`);
    }
    log(`redis ${redis.port}, 2 worker processes x concurrency ${args.concurrency}`);

    let off = 0;
    let run = 0;
    for (const n of want('map') ? S.map : []) {
      for (let r = 0; r < args.repeat; r++) {
        const { dt, lost } = await mapRun(side, `m${run++}`, n, off);
        off += n;
        emit('map', { n }, round(n / dt), 'tasks/s', { seconds: round(dt, 4), lost });
        if (lost) log(`map ${n}: ${lost} completions never arrived`);
      }
    }

    for (let r = 0; r < (want('latency') ? args.repeat : 0); r++) {
      const times = [];
      const once = async (id, x) => {
        let got;
        const tracked = side.track([id], (_id, v) => (got = v));
        await side.queue.add('noop', { x }, { jobId: id });
        tracked.added();
        const { lost } = await tracked;
        if (lost) throw new Error(`latency: the completion of ${id} never arrived`);
        if (got !== x) throw new Error(`latency: got ${got}, expected ${x}`);
      };
      await once(`l${r}-warm`, -1);
      for (let i = 0; i < S.latency; i++) {
        const t0 = performance.now();
        await once(`l${r}-${i}`, i);
        times.push(performance.now() - t0);
      }
      const { p50, p99 } = percentiles(times);
      emit('latency-p50', { n: S.latency }, round(p50, 3), 'ms');
      emit('latency-p99', { n: S.latency }, round(p99, 3), 'ms');
    }

    const { leaves, group } = S.fanin;
    const ntasks = leaves + leaves / group + 1;
    for (let r = 0; r < (want('fanin') ? args.repeat : 0); r++) {
      const tag = `f${r}`;
      const base = r * leaves;
      const ids = [];
      const groups = [];
      for (let g = 0; g < leaves / group; g++) {
        const kids = [];
        for (let i = g * group; i < (g + 1) * group; i++) {
          const id = `${tag}-leaf-${i}`;
          ids.push(id);
          kids.push({ name: 'leaf', queueName: qname, data: { x: base + i }, opts: { jobId: id } });
        }
        const gid = `${tag}-group-${g}`;
        ids.push(gid);
        groups.push({ name: 'sum', queueName: qname, data: {}, opts: { jobId: gid }, children: kids });
      }
      const rootId = `${tag}-root`;
      ids.push(rootId);
      let total = null;
      const t0 = performance.now();
      const tracked = side.track(ids, (id, v) => {
        if (id === rootId) total = v;
      });
      await side.flow.add({ name: 'sum', queueName: qname, data: {}, opts: { jobId: rootId }, children: groups });
      tracked.added();
      const { end, lost } = await tracked;
      const dt = (end - t0) / 1000;
      const expect = (leaves * (leaves - 1)) / 2 + base * leaves;
      if (!lost && total !== expect) throw new Error(`fanin: got ${total}, expected ${expect}`);
      emit('fanin', { leaves, group, tasks: ntasks }, round(ntasks / dt), 'tasks/s', { seconds: round(dt, 4), lost });
    }

    if (sideDefault) {
      // The same map on a queue with BullMQ's default events stream length: how many completions
      // a QueueEvents reader misses there.
      const n = 100_000;
      const { dt, lost, seen } = await mapRun(sideDefault, 'd0', n, 0);
      emit('bullmq-lost', { n, events_max_len: 'default (~10,000)' }, lost, 'completions lost', { seen, seconds: round(dt, 4) });
      log(`default events stream: ${lost} of ${n} completions lost`);
    }

    await side.close();
    await sideDefault?.close();
  } finally {
    for (const c of children) c.stdin.end();
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)));
    await redis.stop();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`[${SYSTEM}] FAILED:`, err?.stack ?? err);
    process.exit(1);
  },
);
